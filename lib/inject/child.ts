/**
 * Child processes of a hijacked thread: the thread (an InjectionSession, or a child driven here)
 * runs clone(CLONE_VFORK | SIGCHLD), without CLONE_VM, so the child gets a copy of the address
 * space. The child comes back to user mode at the same return address R, with rax = 0 and the
 * same stack pointer, but in another address space (CR3) and as another task: it is caught there
 * and driven on its own (setns, chroot, dup3, execve, exit_group…), like a session.
 *
 * Why vfork: the caller stays inside the kernel until the child exits or execs, so it never runs
 * its own code with injected registers while the VM runs for the child, and no vCPU has to be held
 * for it. Its return, if another wait meets it first, is held on its vCPU until it is taken.
 *
 * Memory: after the fork every private page is copy-on-write in both processes, so not writable
 * through the page tables; the child puts its buffers in a mapping of its own (mmap MAP_POPULATE),
 * and the caller makes its scratch pages its own again (remakeScratchWritable). A child's child
 * (CLONE_PARENT for a grandchild reaped by the first caller) inherits that mapping: what it needs
 * there (execve's strings) is written before the clone.
 *
 * No child is left behind: if driving it fails while it is stopped, it is made to exit_group; if it
 * fails while the child is inside a syscall that does not end (a timeout, or an abort, in a
 * blocking read), the child is killed (SIGKILL) from a root-namespace helper process — its vfork
 * parent cannot run anything until the child is gone. The caller reaps it (wait4) or leaves that
 * to the code that asked for it (see forkChild()); after an abort, vfork() reaps it itself.
 */
import { whileHostWorks } from './host-wait';
import { AbortError, InjectionError, TimeoutError } from '../errors';
import type { Kernel } from '../kernel/kernel';
import type { AddressSpace } from '../memory/address-space';
import type { GdbClient } from '../transport/gdb';
import type { Vm } from '../vm';
import { rootHelperTarget } from './root-helper';
import { cr3Root, currentTask, inUserMode, mmRoot } from './cpu';
import { errnoOf, toSigned64 } from './errno';
import { SyscallError, SyscallTimeoutError, TargetGoneError } from './errors';
import { spaceAt } from './guest-memory';
import { ParkedThread, type PendingCall } from './parked-thread';
import type { BreakpointRunner, Hit } from './runner';
import { openInjection } from './open';
import { Scratch, type Placement, type RawCall } from './scratch';
import { cString } from './structs';
import { resolveSyscall, syscallName, SYSCALLS_X86_64 } from './syscalls';
import { checkResult as check, ThreadCalls, type SyscallArgument } from './thread-calls';

export const CLONE_VFORK = 0x4000n;
/** The new process gets the caller's parent: a grandchild that the first caller reaps itself. */
export const CLONE_PARENT = 0x8000n;
const SIGCHLD = 17n;

/** What a child shares with the session it comes from. */
export interface ChildEngine {
  kernel: Kernel;
  gdb: GdbClient;
  runner: BreakpointRunner;
  /** Any address space of the engine: its physical memory (coherent writes) is used. */
  space: AddressSpace;
  callTimeout: number;
  signal?: AbortSignal;
  /** The VM, for a helper injection that kills a child stuck in a syscall. */
  vm?: Vm;
  /**
   * Told of each child while it is driven (`driven`) and once it is gone or runs its own program:
   * the session's journal keeps the ones in between, for `vmictl recover` to make them exit.
   */
  journalChild?: (child: { pid: number; task: bigint }, driven: boolean) => void;
}

/** A thread that can run clone for a child: an InjectionSession or a ChildProcess. */
export interface Forker {
  readonly returnAddress: bigint;
  readonly callSp: bigint;
  readonly target: { task: bigint; pid: number; root: bigint };
  startCall(nr: number | string, args: readonly bigint[]): Promise<PendingCall>;
  /** A syscall made even after the caller's abort (reaping a killed child), where the forker has one. */
  cleanupCall?(nr: number | string, ...args: bigint[]): Promise<bigint>;
  /** Its scratch pages made its own again after a fork (see InjectionSession.remakeScratchWritable). */
  remakeScratchWritable?(opts: { ignoreAbort?: boolean }): Promise<void>;
}

export type ChildState = 'parked' | 'running' | 'exited' | 'execed' | 'lost';

export class ChildProcess extends ThreadCalls implements Forker {
  readonly target: { task: bigint; pid: number; root: bigint; mm: bigint };
  readonly returnAddress: bigint;
  readonly callSp: bigint;
  readonly #engine: ChildEngine;
  readonly #space: AddressSpace;
  readonly #thread: ParkedThread;
  /** The child's own mapping: after the fork its stack is copy-on-write, shared with the caller. */
  readonly #scratch: Scratch;
  #state: ChildState = 'parked';
  /** Syscalls run in this child. */
  syscalls = 0;

  /** @internal: children are made by vfork(). */
  constructor(engine: ChildEngine, hit: Hit, target: { task: bigint; pid: number; root: bigint; mm: bigint }, returnAddress: bigint, callSp: bigint) {
    super();
    this.#engine = engine;
    this.target = target;
    this.returnAddress = returnAddress;
    this.callSp = callSp;
    this.#space = spaceAt(engine.kernel, engine.space.physical, target.root, `child pid ${target.pid}`);
    this.#thread = new ParkedThread(engine, target, hit, returnAddress);
    this.#scratch = new Scratch(this.#space, (nr, args) => this.syscall(nr, ...args));
  }

  get pid(): number {
    return this.target.pid;
  }

  get state(): ChildState {
    return this.#state;
  }

  get closed(): boolean {
    return this.#state !== 'parked';
  }

  /** The child's address space (reads; writes only to its own mapping). */
  get space(): AddressSpace {
    return this.#space;
  }

  /**
   * Waits for host work without keeping the VM stopped: the child sleeps in poll() meanwhile
   * (lib/inject/host-wait.ts).
   */
  awaitHost<T>(work: Promise<T> | T): Promise<T> {
    return whileHostWorks(work, (ms) => this.syscall('poll', 0n, 0n, ms), { open: () => this.#state === 'parked' });
  }

  // ---- raw syscalls ----

  /** Runs one syscall in the child; rax, signed (−errno on error). */
  async syscall(nr: number | string, ...args: bigint[]): Promise<bigint> {
    const n = resolveSyscall(nr);
    const sp = await this.#issue(n, args);
    return this.#complete(n, sp);
  }

  /** Memory arguments go in the child's own mapping; a child runs one call at a time. */
  protected async withPlaced<T>(parts: readonly Placement[], work: (at: bigint[], call: RawCall, readBack: (address: bigint, length: number) => Promise<Buffer>) => Promise<T>): Promise<T> {
    const at = await this.#scratch.place(parts);
    return work(at, (nr, args) => this.syscall(nr, ...args), (address, length) => this.#scratch.readBack(address, length));
  }

  /**
   * Writes buffers (or reserves `number` bytes) in the child's own mapping, 16-byte aligned, and
   * returns their addresses. The mapping is made (or grown) by an injected mmap. Each placement
   * starts at the mapping's base: what an earlier one placed is only good until the next.
   */
  place(parts: readonly (Buffer | number)[]): Promise<bigint[]> {
    return this.#scratch.place(parts.map((p) => (typeof p === 'number' ? { size: p } : { size: p.length, data: p })));
  }

  /**
   * Unmaps the child's own mapping, which a fork of its own left copy-on-write (not writable
   * through its page tables): the next placement maps a fresh one.
   */
  dropMapping(): Promise<void> {
    return this.#scratch.unmap();
  }

  /**
   * execve with its strings already in the child's memory (placed before it was forked, see
   * placeExecve()). On success the child runs the new program and its vfork parent comes back:
   * `vforkParent` (the caller's pending clone) is handed that return. A failure is thrown as a
   * SyscallError with the child still parked (the caller ends it).
   */
  async execveAt(addrs: ExecveAddresses, vforkParent: PendingCall): Promise<void> {
    const nr = SYSCALLS_X86_64.execve;
    const sp = await this.#issue(nr, [addrs.path, addrs.argv, addrs.envp]);
    let parentBack = false;
    const hit = await this.#wait('execve', sp, async (h) => {
      if (await vforkParent.isReturn(h)) return (parentBack = true);
      return false;
    });
    if (parentBack) {
      vforkParent.take(hit);
      this.#state = 'execed';
      return;
    }
    this.#park(hit);
    check('execve', toSigned64(hit.regs.get('rax') ?? 0n), addrs.describe);
  }

  /**
   * Places execve's argv and envp (pointer arrays and strings) in the child's mapping once, with
   * one program path per entry of `paths` (tried in turn by the caller); one placement, so that
   * the addresses stay valid together. `extra` buffers go along (what the caller's last calls
   * before execve need: a fork's child can then use them without a placement of its own); their
   * addresses are in each result's `extra`.
   */
  async placeExecve(paths: readonly string[], argv: readonly string[], env: readonly string[], extra: readonly Buffer[] = []): Promise<ExecveAddresses[]> {
    const strings = [...paths, ...argv, ...env, ...extra].map((x) => (Buffer.isBuffer(x) ? x : cString(x)));
    const arrays = [Buffer.alloc(8 * (argv.length + 1)), Buffer.alloc(8 * (env.length + 1))];
    // reserve first, then fill in the pointers and write everything
    const addrs = await this.place([...strings.map((s) => s.length), ...arrays.map((a) => a.length)]);
    const at = (i: number) => addrs[i];
    argv.forEach((_, i) => arrays[0].writeBigUInt64LE(at(paths.length + i), 8 * i));
    env.forEach((_, i) => arrays[1].writeBigUInt64LE(at(paths.length + argv.length + i), 8 * i));
    const all = [...strings, ...arrays];
    for (let i = 0; i < all.length; i++) await this.#space.write(addrs[i], all[i]);
    const argvAt = addrs[strings.length];
    const envpAt = addrs[strings.length + 1];
    const extraAt = extra.map((_, i) => at(paths.length + argv.length + env.length + i));
    return paths.map((p, i) => ({ path: at(i), argv: argvAt, envp: envpAt, describe: JSON.stringify(p), extra: extraAt }));
  }

  /**
   * exit_group(code): the registers are set, and the child exits the next time the VM runs (it
   * is not waited for: it never comes back).
   */
  async exit(code: number): Promise<void> {
    await this.#issue(SYSCALLS_X86_64.exit_group, [BigInt(code)]);
    this.#state = 'exited';
  }

  /** @internal The child was killed while inside a syscall: it will not come back. */
  killed(): void {
    this.#state = 'exited';
  }

  /** @internal Starts a syscall and returns while it runs (see InjectionSession.startCall). */
  async startCall(nr: number | string, args: readonly bigint[]): Promise<PendingCall> {
    const n = resolveSyscall(nr);
    const sp = await this.#issue(n, args);
    return this.#thread.pendingCall(sp, (caught) => this.#complete(n, sp, caught));
  }

  // ---- the mechanics: the engine's, with a child's states ----

  async #issue(nr: number, args: readonly bigint[]): Promise<bigint> {
    if (this.#state !== 'parked') throw new InjectionError(`child ${this.pid} is ${this.#state}: it cannot run a syscall`, 'unknown');
    if (args.length > 6) throw new RangeError(`a syscall takes at most 6 arguments, not ${args.length}`);
    if (this.#engine.signal?.aborted) throw new AbortError('syscall injection in a child', { cause: this.#engine.signal.reason });
    await this.#thread.issue(nr, args, { rip: this.returnAddress - 2n, rsp: this.callSp });
    this.#state = 'running';
    return this.callSp;
  }

  async #complete(nr: number, sp: bigint, caught?: Hit): Promise<bigint> {
    const hit = caught ?? (await this.#wait(syscallName(nr) ?? `syscall ${nr}`, sp));
    this.#park(hit);
    this.syscalls++;
    return toSigned64(hit.regs.get('rax') ?? 0n);
  }

  #park(hit: Hit): void {
    this.#thread.park(hit);
    this.#state = 'parked';
  }

  /** Runs the VM until the child is back from the call (or `also` takes a hit), checking it lives. */
  async #wait(what: string, sp: bigint, also?: (h: Hit) => Promise<boolean>): Promise<Hit> {
    const timeout = this.#engine.callTimeout;
    try {
      return await this.#thread.waitReturn(`${what} in child ${this.pid}`, sp, { timeout, signal: this.#engine.signal, also });
    } catch (err) {
      if (err instanceof TargetGoneError) {
        this.#state = 'exited';
        throw err;
      }
      this.#state = 'lost';
      if (err instanceof TimeoutError) throw new SyscallTimeoutError(`${what} (in child ${this.pid})`, timeout, 'unknown');
      throw err;
    }
  }
}

export interface ExecveAddresses {
  path: bigint;
  argv: bigint;
  envp: bigint;
  describe: string;
  /** Where placeExecve's `extra` buffers are. */
  extra: bigint[];
}

export interface VforkOptions {
  /** Extra clone flags (CLONE_PARENT). */
  flags?: bigint;
  /** Told the child's host pid as soon as it is caught. */
  onChild?: (pid: number) => void;
  /**
   * Told the child's pid as the caller's pid namespace numbers it (what wait4 in the caller takes)
   * once the caller is back, on success and on failure (to reap the child on every path).
   */
  onForked?: (pid: number) => void;
}

/**
 * Forks a child off `caller` (clone with CLONE_VFORK | SIGCHLD, no CLONE_VM), catches it at its
 * first user instruction and hands it to `work`, which drives it and must end with the child
 * exited (child.exit()) or running a new program (child.execveAt(addrs, callerCall)). If `work` fails, or returns
 * with the child still stopped, the child is made to exit (127 on failure). Then the caller's
 * clone comes back and its result, the child's pid, is returned (the caller is parked again).
 *
 * The child is not reaped here: it is the caller's (or, with CLONE_PARENT, its parent's) child;
 * reap it with wait4 (see reapChild()).
 */
export async function vfork<T>(caller: Forker, engine: ChildEngine, work: (child: ChildProcess, callerCall: PendingCall) => Promise<T>, opts: VforkOptions = {}): Promise<{ pid: number; value: T }> {
  const kernel = engine.kernel;
  const p = kernel.profile;
  const flags = CLONE_VFORK | SIGCHLD | (opts.flags ?? 0n);
  const parentOff = BigInt(p.fieldOffset('task_struct', 'real_parent'));
  const expectedParent = flags & CLONE_PARENT ? await kernel.readU64(caller.target.task + parentOff) : caller.target.task;
  const pending = await caller.startCall('clone', [flags, 0n, 0n, 0n, 0n]);
  let child: ChildProcess | undefined;
  let value: T | undefined;
  let failure: unknown;
  let failed = false;
  try {
    let found: { task: bigint; pid: number; root: bigint; mm: bigint } | undefined;
    // the child comes back where the caller would, with rax = 0, in a new address space
    const isChild = async (h: Hit): Promise<boolean> => {
      const r = h.regs;
      if (h.rip !== caller.returnAddress || r.get('rsp') !== caller.callSp || r.get('rax') !== 0n || !inUserMode(r)) return false;
      const root = cr3Root(r.get('cr3') ?? 0n);
      if (root === caller.target.root) return false;
      const task = await currentTask(kernel, r);
      if (task === caller.target.task || (await kernel.readU64(task + parentOff)) !== expectedParent) return false;
      const mm = await kernel.readU64(task + BigInt(p.fieldOffset('task_struct', 'mm')));
      if (!kernel.isKernelPointer(mm) || (await mmRoot(kernel, mm)) !== root) return false;
      const pid = (await kernel.space.read(task + BigInt(p.fieldOffset('task_struct', 'pid')), 4)).readInt32LE(0);
      found = { task, pid, root, mm };
      return true;
    };
    let callerBack = false;
    const hit = await engine.runner.runUntil(async (h) => {
      if (await pending.isReturn(h)) return (callerBack = true);
      return isChild(h);
    }, { timeout: engine.callTimeout, signal: engine.signal, what: 'catching the forked child' });
    if (callerBack) pending.take(hit);
    else {
      child = new ChildProcess(engine, hit, found!, caller.returnAddress, caller.callSp);
      engine.journalChild?.(child.target, true);
      opts.onChild?.(child.pid);
      value = await work(child, pending);
    }
  } catch (err) {
    failure = err;
    failed = true;
  }
  if (child && child.state === 'parked') {
    // never leave a forked child stopped in the caller's code: it exits instead
    await child.exit(failed ? 127 : 0).catch((e: unknown) => { if (!failed) { failure = e; failed = true; } });
  }
  let killed = false;
  if (child && (child.state === 'running' || child.state === 'lost')) {
    // inside a syscall that did not end: only a signal from elsewhere gets it out (the caller
    // waits in vfork until it is gone)
    try {
      await killStuckChild(engine, child);
      killed = true;
    } catch (err) {
      if (!failed) {
        failure = err;
        failed = true;
      } else (failure as Error & { cleanup?: unknown }).cleanup = err;
    }
  }
  const aborted = engine.signal?.aborted === true;
  let r: bigint;
  try {
    // a cleanup after an abort still waits for the caller to be back (parked, not redirected):
    // the child, killed or made to exit, is its zombie until reaped below
    r = await pending.wait({ ignoreAbort: aborted });
  } catch (err) {
    throw failed ? failure : err;
  }
  // the vfork caller is back: the child has exited or runs its own program
  if (child) engine.journalChild?.(child.target, false);
  if (r > 0n) {
    if (aborted && caller.cleanupCall) {
      // the caller's code would not reap it any more (its signal is aborted): reap it here
      try {
        for (let i = 0; i < MAX_EINTR; i++) {
          if (errnoOf(await caller.cleanupCall('wait4', r, 0n, 0n, 0n)) !== EINTR) break;
        }
        // and its stack area, copy-on-write since the fork, is written back at the end
        await caller.remakeScratchWritable?.({ ignoreAbort: true });
      } catch (err) {
        (failure as Error & { cleanup?: unknown }).cleanup = err;
      }
    } else opts.onForked?.(Number(r));
  }
  if (failed) throw failure;
  if (errnoOf(r)) throw new SyscallError('clone', errnoOf(r), '(vfork)');
  if (!child) throw new InjectionError(`the forked child ${r} ended before it could be caught`, 'restored');
  return { pid: Number(r), value: value as T };
}

const SIGKILL = 9n;

/**
 * SIGKILL to a child stuck inside a syscall, sent by kill() injected into a root helper
 * (the VM is left stopped for the caller's wait). Not bound to the caller's signal: it is the
 * cleanup after that signal.
 */
async function killStuckChild(engine: ChildEngine, child: ChildProcess): Promise<void> {
  if (!engine.vm) throw new InjectionError(`child ${child.pid} is stuck in a syscall and no helper can be had to kill it`, 'unknown');
  await killFromRootHelper(engine.vm, child.pid, { timeout: Math.max(10_000, engine.callTimeout) });
  child.killed();
}

/**
 * SIGKILL to host pid `pid`, by kill() injected into a root helper; the VM is left stopped. For a
 * process inside a syscall that does not end, where nothing else gets it out.
 */
export async function killFromRootHelper(vm: Vm, pid: number, opts: { timeout: number; journal?: string }): Promise<void> {
  const helper = await openInjection(vm, await rootHelperTarget(vm), { leaveStopped: true, maxBreakpoints: Number.POSITIVE_INFINITY, timeout: opts.timeout, callTimeout: 10_000, journal: opts.journal });
  try {
    check('kill', await helper.syscall('kill', BigInt(pid), SIGKILL), `(pid ${pid})`);
  } finally {
    await helper.end();
  }
}

const EINTR = 4;
/** How many times a wait interrupted by the caller's signals is made again. */
const MAX_EINTR = 100;

/** wait4(pid) in `caller` with a status buffer; the wait status (see exitStatus()). */
export async function reapChild(caller: { syscallWith(nr: number | string, args: readonly SyscallArgument[]): Promise<{ result: bigint; out: Buffer[] }> }, pid: number, options = 0n): Promise<{ pid: number; status: number }> {
  // the caller's own signals (a shell's SIGCHLD) cut a wait short: wait again, a bounded number of times
  for (let attempt = 1; ; attempt++) {
    const { result, out } = await caller.syscallWith('wait4', [BigInt(pid), { out: 4 }, options, 0n]);
    if (errnoOf(result) === EINTR && attempt < MAX_EINTR) continue;
    const r = check('wait4', result, String(pid));
    return { pid: Number(r), status: out[0].readInt32LE(0) };
  }
}

/** A wait status as a shell reports it: the exit code, or 128 + the signal that killed it. */
export function exitStatus(status: number): number {
  const sig = status & 0x7f;
  if (sig === 0) return (status >> 8) & 0xff;
  return 128 + sig;
}

