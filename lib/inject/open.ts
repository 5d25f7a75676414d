/**
 * Opening an injection: choose the target processes (a container's, or one by host pid), find
 * where each of their threads will come back from the syscall it is in (site.ts), put a hardware
 * breakpoint on at most a couple of those return addresses, and run the VM until one of the
 * target's own threads hits one. Other processes that run the same code (a static busybox has the
 * same addresses everywhere) are stepped over untouched.
 */
import { TimeoutError, VmiError } from '../errors';
import type { Vm } from '../vm';
import type { Kernel } from '../kernel/kernel';
import { resolveContainer } from '../containers/resolve';
import { tasksOf, type Container, type ProcessInfo, type TaskInfo } from '../containers/model';
import { cr3Root, currentTask, mmRoot } from './cpu';
import { AcquireTimeoutError, InjectionError, NoInjectableThreadError, StaleInjectionError, type TriedProcess } from './errors';
import { staleJournals } from './stale';
import { lockVm } from './lock';
import { rootHelperTarget } from './root-helper';
import { fanOutSignal } from '../util/fan-out';
import { findSyscallRet } from './gadget';
import { BreakpointRunner, READ_WATCHPOINT, WATCH_LENGTH, type Hit } from './runner';
import { AcquisitionJournal, type StopPoint } from './acquisition-journal';
import { resumeVm, InjectionSession, type TargetThread } from './session';
import { AT_FDCWD } from './thread-calls';
import { isSite, NOT_IN_SYSCALL, SYSCALL_INSN, syscallSite, type NoSite, type SyscallSite } from './site';
import { SYSCALLS_X86_64 } from './syscalls';
import type { AddressSpace } from '../memory/address-space';
import type { PhysicalMemory } from '../memory/physical';
import { InjectionMemory, spaceAt } from './guest-memory';

export type InjectionTargetSpec =
  /** Any process of the container (id, name, hostname, prefix, or `pid:N`, as resolveContainer takes). */
  | { container: string }
  /** The process with this host pid (or the process of the thread with this tid). */
  | { pid: number }
  /** A process already looked up (from vm.listContainers()). */
  | { process: ProcessInfo; container?: string }
  /**
   * Any of these processes (the likeliest to come back from a syscall soon first), named `label`;
   * `cgroup` is theirs, for `wake: 'freeze'`.
   */
  | { processes: ProcessInfo[]; label: string; cgroup?: string };

export interface InjectionOptions {
  /** How long to wait for a thread of the target to come back from a syscall, ms (default 10 000). */
  timeout?: number;
  /** How long one injected syscall may take, ms (default 10 000). */
  callTimeout?: number;
  signal?: AbortSignal;
  /**
   * Most hardware breakpoints used at once (default 2): at most the debug registers KVM has free
   * (4 in all, shared with any session this one runs inside), or 16 under TCG.
   */
  maxBreakpoints?: number;
  /** Journal directory; false for none (default: $XDG_RUNTIME_DIR/vmictl or /tmp/vmictl-<uid>). */
  journal?: string | false;
  /**
   * What to do when no thread of the target comes back from its syscall by itself (a server
   * blocked in accept): `never` (default: time out), or `freeze`: freeze and thaw the target's
   * cgroup (v2) through an injection into a root-namespace process, which makes its blocked
   * syscalls restart transparently, and catch a thread on its way back to the `syscall`
   * instruction. The only trace is the freeze itself (cgroup.events shows it for a moment).
   */
  wake?: 'never' | 'freeze';
  /** Told each time `wake: 'freeze'` has frozen the target's cgroup (the thaw follows at once). */
  onWake?: (cgroup: string) => void;
  /**
   * Called with the VM stopped before a thread is caught (e.g. lib/integrity's protectFor): its
   * `release()` runs when the session has ended.
   */
  protect?: (vm: Vm) => Promise<{ release(): Promise<void> }>;
  /** @internal End the session without resuming the VM (a helper session inside another). */
  leaveStopped?: boolean;
  /**
   * How injected calls are caught on their way back: `auto` (default) uses a read watchpoint
   * under TCG when the target's code has a `syscall; ret` (no translation-cache flush per call),
   * the breakpoint at R otherwise; `breakpoint` always the breakpoint (under KVM it always is).
   */
  returnBy?: 'auto' | 'breakpoint';
}

/** How long one round of waiting lasts before the sites are looked up again (processes move on). */
const ROUND_MS = 2000;
/** A shorter first round when some process was running in user mode (it will be in a syscall soon). */
const SHORT_ROUND_MS = 200;

/** After a thaw, the restarted syscalls come at once: a short round, then another thaw. */
const WOKEN_ROUND_MS = 1500;
/** Most freeze/thaw cycles per acquisition. */
const MAX_WAKES = 4;
/** How long a vCPU caught at a restarted syscall is kept stopped while the thaw finishes. */
const HOLD_MS = 1500;
/**
 * How long the thaw after a failed acquisition may take (ms): the VM runs while a helper is
 * waited for, and a container left frozen is the one harm this must not do.
 */
const THAW_CLEANUP_MS = 120_000;
/** Breakpoints one injection may use under TCG (QEMU has no limit; each is a stop point to check). */
const TCG_BREAKPOINTS = 16;
/** KVM's debug registers (DR0–DR3): every breakpoint and watchpoint of the connection takes one. */
const KVM_DEBUG_REGISTERS = 4;
/** maxBreakpoints for a helper: as many as the accelerator has free. */
const ALL_FREE = Number.POSITIVE_INFINITY;

/** The breakpoints an injection may still use: under KVM the free debug registers, under TCG a fixed number. */
async function breakpointBudget(vm: Vm, runner: BreakpointRunner): Promise<number> {
  return (await vm.accelerator()) === 'kvm' ? KVM_DEBUG_REGISTERS - runner.pointsInUse() : TCG_BREAKPOINTS;
}
const O_WRONLY_CLOEXEC = 0o1 | 0o2000000;

/** Syscalls that usually wait for something that may never come (children, signals). */
const LONG_WAITS = new Set(['wait4', 'waitid', 'pause', 'rt_sigsuspend', 'rt_sigtimedwait'].map((n) => SYSCALLS_X86_64[n]));
/** Syscalls that usually come back by themselves (they are given a timeout). */
const TIMED_WAITS = new Set(['poll', 'ppoll', 'select', 'pselect6', 'epoll_wait', 'epoll_pwait', 'epoll_pwait2', 'nanosleep', 'clock_nanosleep'].map((n) => SYSCALLS_X86_64[n]));

/** Lower is likelier to return soon: 0 timed waits, 1 anything else, 2 long waits (the best site counts). */
function score(sites: readonly SyscallSite[]): number {
  return Math.min(...sites.map((s) => (TIMED_WAITS.has(Number(s.nr)) ? 0 : LONG_WAITS.has(Number(s.nr)) ? 2 : 1)));
}

interface Candidate {
  process: ProcessInfo;
  mm: bigint;
  root: bigint;
  space: AddressSpace;
  sites: SyscallSite[];
  /** The chosen return addresses at which this process has a `syscall` instruction. */
  allowed: Set<bigint>;
  tasks: Map<bigint, TaskInfo>;
  /** Why a process with no site is still a candidate (it will be in a syscall soon). */
  pending?: string;
}

/** The processes a spec names, with a label for messages. */
async function targetProcesses(vm: Vm, target: InjectionTargetSpec, signal?: AbortSignal): Promise<{ processes: ProcessInfo[]; label: string; container?: string; cgroup?: string }> {
  if ('processes' in target) return { processes: target.processes, label: target.label, cgroup: target.cgroup };
  if ('process' in target) return { processes: [target.process], label: `process ${target.process.pid}`, container: target.container, cgroup: target.process.cgroup };
  const list = await vm.listContainers({ signal });
  const all: Container[] = [...list.containers, list.host];
  if ('container' in target) {
    const c = resolveContainer(all, target.container);
    const label = c.name ?? (c.hostname || c.id);
    return { processes: c.processes, label: `container ${JSON.stringify(label)}`, container: c.id === 'host' ? undefined : label, cgroup: c.id === 'host' ? undefined : c.cgroup };
  }
  const pid = target.pid;
  if (!Number.isInteger(pid) || pid <= 0) throw new VmiError('EUSAGE', `not a pid: ${pid}`);
  for (const c of all) {
    for (const p of c.processes) {
      if (p.pid === pid || tasksOf(p).some((t) => t.pid === pid)) {
        return { processes: [p], label: `process ${p.pid}`, container: c.id === 'host' ? undefined : c.name ?? (c.hostname || c.id), cgroup: c.id === 'host' ? undefined : p.cgroup };
      }
    }
  }
  throw new VmiError('ENOPROCESS', `no process with host pid ${pid}`);
}

/** Finds each process's syscall sites and chooses the return addresses to watch. */
interface Plan {
  candidates: Candidate[];
  watch: bigint[];
  /** Which watched addresses are return addresses (the others are `syscall` instructions). */
  returns: Set<bigint>;
  tried: TriedProcess[];
  /** Processes skipped only for now (running in user mode). */
  transient: number;
}

/**
 * `restart`: also watch the `syscall` instructions themselves (R − 2), where a thread whose
 * blocked syscall is being restarted comes back to user mode; one site then takes two breakpoints.
 */
async function plan(kernel: Kernel, memory: PhysicalMemory, processes: ProcessInfo[], maxBreakpoints: number, restart = false, rotation = 0): Promise<Plan> {
  const tried: TriedProcess[] = [];
  const found: Candidate[] = [];
  const running: Candidate[] = [];
  let transient = 0;
  const mmOffset = BigInt(kernel.profile.fieldOffset('task_struct', 'mm'));
  for (const p of processes) {
    if (p.kernelThread) continue;
    const mm = await kernel.readU64(p.address + mmOffset).catch(() => 0n);
    if (!kernel.isKernelPointer(mm)) {
      tried.push({ pid: p.pid, comm: p.comm, skipped: 'no address space (exiting?)' });
      continue;
    }
    const root = await mmRoot(kernel, mm);
    const space = spaceAt(kernel, memory, root, `pid ${p.pid}`);
    const sites: SyscallSite[] = [];
    const reasons: string[] = [];
    let pending: string | undefined;
    const tasks = new Map<bigint, TaskInfo>();
    for (const t of tasksOf(p)) {
      tasks.set(t.address, t);
      const s = await syscallSite(kernel, t.address, space).catch((e: Error) => ({ task: t.address, reason: e.message }) as NoSite);
      if (isSite(s)) sites.push(s);
      else {
        reasons.push(s.reason);
        if (s.reason === NOT_IN_SYSCALL || s.transient) pending ??= s.reason;
      }
    }
    if (sites.length === 0) {
      // running in user mode right now (or on its way there): it will be in a syscall again soon,
      // maybe at a watched address
      if (pending !== undefined) {
        transient++;
        running.push({ process: p, mm, root, space, sites, allowed: new Set(), tasks, pending });
      } else tried.push({ pid: p.pid, comm: p.comm, skipped: reasons[0] ?? 'no thread' });
      continue;
    }
    found.push({ process: p, mm, root, space, sites, allowed: new Set(), tasks });
  }
  // watch the return addresses of the likeliest processes first (those in a syscall with a
  // timeout, then any, then those waiting for children or signals); each round takes the next ones
  const ranked = [...found].sort((a, b) => score(a.sites) - score(b.sites));
  const order: bigint[] = [];
  for (const c of ranked) {
    for (const s of [...c.sites].sort((x, y) => score([x]) - score([y]))) if (!order.includes(s.returnAddress)) order.push(s.returnAddress);
  }
  const per = restart ? Math.max(1, Math.floor(Math.max(2, maxBreakpoints) / 2)) : maxBreakpoints;
  const watch: bigint[] = [];
  for (let i = 0; i < Math.min(per, order.length); i++) {
    const r = order[(rotation * per + i) % order.length];
    if (restart) watch.push(r - 2n, r);
    else watch.push(r);
  }
  const returns = restart ? watch.filter((_, i) => i % 2 === 1) : watch;
  for (const c of [...found, ...running]) {
    for (const r of returns) {
      let ok = c.sites.some((s) => s.returnAddress === r);
      if (!ok) ok = (await c.space.read(r - 2n, 2).catch(() => null))?.equals(SYSCALL_INSN) ?? false;
      if (ok) {
        c.allowed.add(r);
        if (restart) c.allowed.add(r - 2n);
      }
    }
    if (c.allowed.size > 0) tried.push({ pid: c.process.pid, comm: c.process.comm });
    else tried.push({ pid: c.process.pid, comm: c.process.comm, skipped: c.sites.length ? 'more return addresses than breakpoints' : c.pending ?? NOT_IN_SYSCALL });
  }
  return { candidates: [...found, ...running].filter((c) => c.allowed.size > 0), watch, returns: new Set(returns), tried, transient };
}

/**
 * Catches a thread of the target and returns a session holding it (the VM stopped). The caller
 * must end it (`await s.close()`, or `await using`), which restores the thread and resumes the VM.
 */
export async function openInjection(vm: Vm, target: InjectionTargetSpec, opts: InjectionOptions = {}): Promise<InjectionSession> {
  if (!vm.live || !vm.runState) throw new VmiError('EUSAGE', 'syscall injection needs a live VM (QMP and the gdbstub), not a dump');
  const timeout = opts.timeout ?? 10_000;
  const journalDir = opts.journal === false ? undefined : opts.journal;
  const unlock = lockVm(vm.options.qmp ?? '');
  // a helper session inside another one (and recover's) runs over journals that are being dealt with
  const stale = opts.leaveStopped ? [] : staleJournals(vm, journalDir);
  if (stale.length > 0) {
    unlock();
    throw new StaleInjectionError(stale);
  }
  const fanned = fanOutSignal(opts.signal);
  const signal = fanned.signal;
  let wasRunning: boolean;
  try {
    wasRunning = await vm.runState.running();
    await vm.pause();
  } catch (err) {
    fanned.release();
    unlock();
    throw err;
  }
  let runner: BreakpointRunner | undefined;
  // set while the target's cgroup is frozen by us: every way out of here thaws it
  let frozen: string | undefined;
  // what this acquisition leaves in QEMU and the guest, written before it is done, for recover
  let acquisition: AcquisitionJournal | undefined;
  const record = (planned: readonly bigint[] = []) => acquisition?.update({ points: runner ? stopPointsOf(runner, planned) : [], frozen });
  const guard = await (opts.protect ?? vm.options.protect)?.(vm);
  try {
    if (opts.journal !== false) acquisition = AcquisitionJournal.create(vm.options, journalDir);
    const kernel = await vm.kernel();
    const memory = await vm.memory();
    const gdb = await vm.gdb();
    runner = new BreakpointRunner(gdb, () => {
      memory.invalidate();
      kernel.invalidate();
    });
    const maxBreakpoints = Math.max(1, Math.min(Math.floor(opts.maxBreakpoints ?? 2), await breakpointBudget(vm, runner)));
    const { processes, label, container, cgroup } = await targetProcesses(vm, target, signal);
    const guest = new InjectionMemory(memory, gdb);
    const started = Date.now();
    const deadline = started + timeout;
    const tried = new Map<number, TriedProcess>();
    let chosen: { c: Candidate; task: TaskInfo } | undefined;
    let hit: Hit | undefined;
    let watch: bigint[] = [];
    let returns = new Set<bigint>();
    let woken = false;
    let wakes = 0;
    let wakeFailure: InjectionError | undefined;
    const timedOut = () => {
      const e = new AcquireTimeoutError([...tried.values()], timeout);
      if (wakeFailure) e.message += `; waking it by a freeze of its cgroup failed: ${wakeFailure.message}`;
      return e;
    };
    // Rounds: find where each process will come back, watch that, and look again after a while
    // (a process running in user mode now, or one whose syscall never ends, may do better later).
    for (let round = 0; !hit; round++) {
      const p = await plan(kernel, guest, processes, maxBreakpoints, woken, woken ? 0 : round);
      for (const x of p.tried) if (!tried.has(x.pid) || !x.skipped) tried.set(x.pid, x);
      if (p.candidates.length === 0 && p.transient === 0) throw new NoInjectableThreadError(label, p.tried);
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw timedOut();
      const slice = Math.min(remaining, woken ? WOKEN_ROUND_MS : round === 0 && p.transient > 0 ? SHORT_ROUND_MS : ROUND_MS);
      const byRoot = new Map(p.candidates.map((c) => [c.root, c]));
      watch = p.watch;
      returns = p.returns;
      record(watch);
      for (const r of watch) await runner.insert(r);
      const accept = async (h: Hit): Promise<boolean> => {
        const c = byRoot.get(cr3Root(h.regs.get('cr3') ?? 0n));
        if (!c || !c.allowed.has(h.rip)) return false;
        const t = c.tasks.get(await currentTask(kernel, h.regs));
        if (!t) return false;
        chosen = { c, task: t };
        return true;
      };
      if (woken) {
        // the thaw restarts the frozen syscalls at once: catch them while the helper still runs;
        // counted as frozen from the freeze's write on, until the thaw is written
        const unhold = runner.hold({ accept, maxMs: HOLD_MS });
        try {
          await wakeCgroup(vm, cgroup!, { timeout: Math.max(1000, deadline - Date.now()), signal, journal: opts.journal, onFreezing: () => { frozen = cgroup; record(); }, onFrozen: () => opts.onWake?.(cgroup!) });
          frozen = undefined;
          record();
        } catch (err) {
          // a helper lost on the way (it exited, a call of its timed out) is not the target's
          // failure: thaw what it may have frozen and try again in the next round, a few times
          if (signal.aborted || !(err instanceof InjectionError) || err.state === 'unknown' || wakes >= MAX_WAKES) throw err;
          if (frozen) {
            await thawCgroup(vm, frozen, { timeout: THAW_CLEANUP_MS, signal: new AbortController().signal, journal: opts.journal });
            frozen = undefined;
            record();
          }
          wakeFailure = err;
        } finally {
          unhold();
        }
      }
      try {
        hit = await runner.runUntil(accept, { timeout: slice, signal, what: `catching a thread of ${label}` });
      } catch (err) {
        if (!(err instanceof TimeoutError)) throw err;
        await runner.releaseHeld();
        await runner.removeAll();
        record();
        if (Date.now() >= deadline) throw timedOut();
        // nobody came back by itself: the next round watches the syscall instructions and wakes
        // the cgroup (freeze and thaw), a few times at most
        woken = opts.wake === 'freeze' && !!cgroup && cgroup !== '/' && p.candidates.length > 0 && wakes < MAX_WAKES && deadline - Date.now() > 1000;
        if (woken) wakes++;
      }
    }
    const acquireMs = Date.now() - started;
    // caught at the syscall instruction (a restart): its return address is right after it
    const returnAddress = returns.has(hit.rip) ? hit.rip : hit.rip + 2n;
    record([returnAddress]);
    await runner.insert(returnAddress);
    for (const r of watch) if (r !== returnAddress) await runner.remove(r);
    const { c, task } = chosen!;
    const thread: TargetThread = {
      task: task.address,
      pid: task.pid,
      tgid: c.process.tgid,
      nspid: task.nspids[task.nspids.length - 1] ?? task.pid,
      comm: task.comm,
      mm: c.mm,
      root: c.root,
      container,
    };
    const session = new InjectionSession({ vm, kernel, gdb, runner, space: c.space, kernelSpace: spaceAt(kernel, guest, kernel.kaslr.pageTableRoot, 'kernel') }, thread, hit, returnAddress, {
      callTimeout: opts.callTimeout,
      signal,
      journal: opts.journal,
      wasRunning,
      leaveStopped: opts.leaveStopped,
    }, acquireMs);
    let gadget: bigint | undefined;
    if ((opts.returnBy ?? 'auto') === 'auto' && (await vm.accelerator()) === 'tcg') {
      // through the CR3 the thread had in user mode: under KPTI the kernel's half of its page
      // table marks every user page NX, its user half says what user mode may execute
      const userView = spaceAt(kernel, guest, hit.regs.get('cr3') ?? c.root, `pid ${thread.pid} (user view)`);
      gadget = await findSyscallRet(userView, returnAddress, { signal });
    }
    await session.prepare({ gadget, singleThreaded: tasksOf(c.process).length === 1 });
    // the session's journal has taken over: its return address, and the rest is gone
    acquisition?.remove();
    session.onEnd(() => {
      fanned.release();
      unlock();
    });
    if (guard) {
      const end = session.end.bind(session);
      session.end = async () => { try { await end(); } finally { await guard.release(); } };
    }
    return session;
  } catch (err) {
    // nothing of the target was changed yet: remove the breakpoints, thaw what we froze (not
    // bound to the caller's signal: it is the cleanup after it) and let the VM go
    fanned.release();
    await runner?.releaseHeld().catch(() => undefined);
    await runner?.removeAll();
    if (frozen) {
      const cause = err;
      await thawCgroup(vm, frozen, { timeout: THAW_CLEANUP_MS, signal: new AbortController().signal, journal: opts.journal }).catch((e: Error) => {
        // the journal keeps the cgroup for recover; a point that could not be removed too
        try { record(); } catch { /* the error below says it all */ }
        throw new VmiError('EINJECT', `${(cause as Error).message}; and cgroup ${frozen} that vmictl froze to wake its threads could not be thawed (${e.message}): run 'vmictl recover', or write 0 to its cgroup.freeze inside the guest`, { cause });
      });
      frozen = undefined;
    }
    if (runner && runner.breakpoints.length + runner.watchpoints.length > 0) record();
    else acquisition?.remove();
    if (!opts.leaveStopped) await resumeVm(vm, wasRunning).catch(() => undefined);
    await guard?.release().catch(() => undefined);
    unlock();
    throw err;
  }
}

/** The stop points a runner has in QEMU, and those it is about to insert. */
function stopPointsOf(runner: BreakpointRunner, planned: readonly bigint[]): StopPoint[] {
  const breakpoints = new Set([...runner.breakpoints, ...planned]);
  return [
    ...[...breakpoints].map((a) => ({ type: 1 as const, address: a.toString(16), length: 1 })),
    ...runner.watchpoints.map((a) => ({ type: READ_WATCHPOINT as 3, address: a.toString(16), length: WATCH_LENGTH })),
  ];
}

/** Writes `text` to a file through a helper session (openat, write, close). */
export async function writeFileIn(s: InjectionSession, path: string, text: string): Promise<void> {
  const fd = await s.openat(AT_FDCWD, path, O_WRONLY_CLOEXEC);
  try {
    await s.write(fd, Buffer.from(text));
  } finally {
    // a write that failed ended the session: its error is the one to report
    if (!s.closed) await s.closeFd(fd);
  }
}

/** The directory of a (v2) cgroup under the hierarchy's mount point, refusing `..` and odd paths. */
export function cgroupDir(cgroup: string, mount = '/sys/fs/cgroup'): string {
  if (!/^(\/[^/\0]+)+$/.test(cgroup) || cgroup.split('/').includes('..')) throw new VmiError('EINVAL', `not a cgroup path: ${JSON.stringify(cgroup)}`);
  return `${mount === '/' ? '' : mount}${cgroup}`;
}

/**
 * Waits (bounded) until cgroup.events of `dir` says `frozen 1` (or `frozen 0` when `frozen` is
 * false); each injected call lets the VM run a little, so the cgroup's tasks move meanwhile.
 */
export async function waitCgroupFrozen(helper: InjectionSession, dir: string, frozen = true, tries = 50): Promise<boolean> {
  const want = new RegExp(`^frozen ${frozen ? 1 : 0}$`, 'm');
  for (let i = 0; i < tries; i++) if (want.test((await helper.readFile(`${dir}/cgroup.events`, 4096)).toString('latin1'))) return true;
  return false;
}

export interface HelperOptions {
  timeout: number;
  signal: AbortSignal;
  journal?: string | false;
}

/**
 * Wakes the tasks of a cgroup (v2) blocked in interruptible syscalls, from one root helper
 * (root-helper.ts): freeze, wait until cgroup.events says frozen, thaw. The freeze makes each
 * blocked syscall return -ERESTARTSYS and the task park in the freezer; on thaw, with no signal
 * to deliver, it restarts its syscall: back in user mode at the `syscall` instruction, where the
 * caller, holding breakpoints there, catches it. One helper for both writes: on a quiet guest
 * catching a helper is the slow part, and none is needed between freeze and thaw. The VM is left
 * stopped. Returns whether the whole cgroup froze (if not, the tasks that did were woken anyway).
 */
export async function wakeCgroup(vm: Vm, cgroup: string, opts: HelperOptions & { onFreezing?: () => void; onFrozen?: () => void }): Promise<boolean> {
  const file = `${cgroupDir(cgroup)}/cgroup.freeze`;
  const helper = await openInjection(vm, await rootHelperTarget(vm, undefined, opts), { ...opts, leaveStopped: true, maxBreakpoints: ALL_FREE });
  try {
    opts.onFreezing?.();
    await writeFileIn(helper, file, '1');
    let frozen = false;
    try {
      frozen = await waitCgroupFrozen(helper, cgroupDir(cgroup));
      opts.onFrozen?.();
    } finally {
      // a thaw that cannot be written here (the helper lost, an abort) is the caller's to do
      // again; the first error is the one to report
      if (!helper.closed) await writeFileIn(helper, file, '0');
    }
    return frozen;
  } finally {
    await helper.end();
  }
}

/** Thaws a cgroup (writes 0 to its cgroup.freeze) from a root helper; the VM is left stopped. */
export async function thawCgroup(vm: Vm, cgroup: string, opts: HelperOptions): Promise<void> {
  const helper = await openInjection(vm, await rootHelperTarget(vm, undefined, opts), { ...opts, leaveStopped: true, maxBreakpoints: ALL_FREE });
  try {
    await writeFileIn(helper, `${cgroupDir(cgroup)}/cgroup.freeze`, '0');
  } finally {
    await helper.end();
  }
}
