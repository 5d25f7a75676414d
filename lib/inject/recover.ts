/**
 * `vmictl recover`: finishes injections whose vmictl died (killed, crashed, lost its terminal),
 * from their journals. For each journal of this VM, with the VM stopped:
 *
 * - target gone (no task with that pid at that address): nothing to restore;
 * - target stopped in user mode on a vCPU at R or R − 2 with the injection's stack pointer: it is
 *   in the middle of the injection: unmap the scratch mapping, write its registers and stack back;
 * - target in the kernel with pt_regs.ip = R (or R − 2) and pt_regs.sp = the injection's stack
 *   pointer: it is inside an injected syscall: catch it when it returns (breakpoint at R), then as
 *   above; if it does not return in time (pause(), a read nobody writes), freeze and thaw its
 *   cgroup, which ends the call and brings the thread back to the `syscall` instruction to restart
 *   it, and catch it there; only where that cannot be done (the root cgroup), rewrite its pt_regs
 *   so it goes home by itself when the call ends;
 * - anything else: the target was restored already (vmictl died after that): nothing to do.
 *
 * In every case the breakpoint at R is removed (QEMU keeps breakpoints after a gdb client goes,
 * and stops the VM when one is hit with nobody attached), the journal deleted and the VM resumed.
 * An acquisition's journal (acquisition-journal.ts) gets its stop points removed before anything
 * runs the VM, and the cgroup it froze thawed once every injected thread is back.
 */
import { existsSync } from 'node:fs';
import { processAlive } from './stale';
import { lockVm } from './lock';
import { TimeoutError, VmiError } from '../errors';
import type { Vm } from '../vm';
import type { Kernel } from '../kernel/kernel';
import type { AddressSpace } from '../memory/address-space';
import { findTask } from '../kernel/helpers/task';
import { cr3Root, currentTask, findOnVcpus, inUserMode, mmRoot } from './cpu';
import { errnoOf } from './errno';
import { InjectionMemory, spaceAt } from './guest-memory';
import { fromHex, Journal, listJournals, type JournalEntry } from './journal';
import { AcquisitionJournal, listAcquisitions } from './acquisition-journal';
import { BreakpointRunner, READ_WATCHPOINT, WATCH_LENGTH, type Hit } from './runner';
import { watchSlotOf } from './gadget';
import { endJournaledChildren } from './recover-children';
import { findParkedAt, inInjectedCall, isInjectedHit, placesOf } from './injected-places';
import { ARGUMENT_REGISTERS } from './parked-thread';
import { redirectKernelReturn } from './redirect';
import { KeptAsleep } from './recover-asleep';
import { userRegisters } from './site';
import { thawCgroup, wakeCgroup } from './open';
import { tasksOf } from '../containers/model';
import { SYSCALLS_X86_64 } from './syscalls';

export interface RecoverOptions {
  /** How long to wait for a target inside an injected syscall to come back, ms (default 10 000). */
  timeout?: number;
  signal?: AbortSignal;
  /** Journal directory (default: the engine's). */
  dir?: string;
  /** Also take journals whose writer is still alive, or that name another VM. */
  force?: boolean;
  /**
   * Run the VM even when a journal could not be recovered. By default it is left stopped then:
   * that journal's target may hold injected registers, and would run its own code with them.
   */
  resumeAfterFailure?: boolean;
}

/** Said of a failed recovery that leaves the VM stopped. */
export const LEFT_STOPPED = "the VM is left stopped, since the target may hold injected registers: once the cause is fixed run 'vmictl recover' again, or 'vmictl recover --resume' to run the VM anyway";

export type RecoverAction = 'restored' | 'target-gone' | 'already-restored' | 'redirected' | 'cleared' | 'skipped' | 'failed';

export interface RecoverOutcome {
  journal: string;
  pid: number;
  comm: string;
  action: RecoverAction;
  detail: string;
}

interface Ctx {
  vm: Vm;
  kernel: Kernel;
  runner: BreakpointRunner;
  guest: InjectionMemory;
}

/** Recovers every journal of this VM (those whose writer is gone, unless `force`). */
export async function recoverAll(vm: Vm, opts: RecoverOptions = {}): Promise<RecoverOutcome[]> {
  const unlock = lockVm(vm.options.qmp ?? '');
  try {
    return await recoverEach(vm, opts);
  } finally {
    unlock();
  }
}

/** Whether a journal by `writer` for `qmp` is this run's to take (its writer gone, this VM's). */
function skipReason(vm: Vm, writer: number, qmp: string | undefined, opts: RecoverOptions): string | undefined {
  if (opts.force) return undefined;
  if (writer !== process.pid && processAlive(writer)) return `its vmictl (pid ${writer}) is still running`;
  if (qmp && vm.options.qmp && qmp !== vm.options.qmp) return `it is for another VM (${qmp})`;
  return undefined;
}

async function recoverEach(vm: Vm, opts: RecoverOptions): Promise<RecoverOutcome[]> {
  const out: RecoverOutcome[] = [];
  // first the dead acquisitions' stop points: while recovery runs the VM they would stop it, and
  // a runner that does not know them would take their hits for foreign stops
  const acquisitions: Array<{ a: AcquisitionJournal; points: number }> = [];
  for (const path of listAcquisitions(opts.dir)) {
    let a: AcquisitionJournal;
    try {
      a = AcquisitionJournal.open(path);
    } catch (err) {
      out.push({ journal: path, pid: 0, comm: '', action: 'failed', detail: `${(err as Error).message}; ${LEFT_STOPPED}` });
      if (opts.resumeAfterFailure) continue;
      await vm.pause();
      vm.keepStopped();
      return out;
    }
    const skip = skipReason(vm, a.entry.writer, a.entry.qmp, opts);
    if (skip) {
      out.push({ journal: path, pid: 0, comm: '', action: 'skipped', detail: skip });
      continue;
    }
    acquisitions.push({ a, points: await removeStopPoints(vm, a) });
  }
  // every journal is read first, then each is recovered in turn
  const todo = new Map<string, JournalEntry>();
  for (const path of listJournals(opts.dir)) {
    let entry: JournalEntry;
    try {
      entry = Journal.open(path).entry;
    } catch (err) {
      // whose target it names is not known: it may be stopped with injected registers
      out.push({ journal: path, pid: 0, comm: '', action: 'failed', detail: `${(err as Error).message}; ${LEFT_STOPPED}` });
      if (opts.resumeAfterFailure) continue;
      await vm.pause();
      vm.keepStopped();
      return out;
    }
    const skip = skipReason(vm, entry.writer, entry.qmp, opts);
    if (skip) out.push({ journal: path, pid: entry.target.pid, comm: entry.target.comm, action: 'skipped', detail: skip });
    else todo.set(path, entry);
  }
  if (todo.size > 0) {
    // every dead point goes first: a runner that does not know them takes their hits for foreign stops
    await vm.pause();
    for (const e of todo.values()) await removeDeadPoints(vm, e);
  }
  // while the VM runs for one journal, the others' threads sleep (recover-asleep.ts)
  const { asleep, unkept } = await keepAsleep(vm, todo);
  try {
    for (const path of todo.keys()) {
      await asleep?.release(path);
      const o = await recoverOne(vm, path, opts, true);
      out.push(unkept ? { ...o, detail: `${o.detail}; ${unkept}` } : o);
      if (o.action === 'failed' && !opts.resumeAfterFailure) return out;
    }
  } finally {
    await asleep?.stop();
  }
  // then the cgroups they froze: thawed by a helper, with every injected thread back home
  for (const { a, points } of acquisitions) out.push(await finishAcquisition(vm, a, points, opts));
  // the guest is meant to run again (a dead vmictl leaves it stopped)
  await vm.resumeWhoeverStopped();
  return out;
}

/** With several journals, their threads kept asleep by turns; else null, with why they are not (said in each outcome). */
async function keepAsleep(vm: Vm, todo: ReadonlyMap<string, JournalEntry>): Promise<{ asleep: KeptAsleep | null; unkept?: string }> {
  if (todo.size < 2) return { asleep: null };
  const kernel = await vm.kernel();
  const memory = await vm.memory();
  const runner = new BreakpointRunner(await vm.gdb(), () => {
    memory.invalidate();
    kernel.invalidate();
  });
  const r = await KeptAsleep.start(kernel, runner, todo);
  if (r.kept) return { asleep: r.kept };
  return { asleep: null, unkept: `the other journals' threads were not kept asleep meanwhile: ${r.reason}` };
}

/** The stop points a dead injection left in QEMU (under KVM a second one at the same address fails). */
async function removeDeadPoints(vm: Vm, e: JournalEntry): Promise<void> {
  const gdb = await vm.gdb();
  await gdb.removeBreakpoint(1, fromHex(e.returnAddress), 1, { timeout: 10_000 }).catch(() => undefined);
  if (e.gadget !== undefined) await gdb.removeBreakpoint(READ_WATCHPOINT, watchSlotOf(fromHex(e.callSp)), WATCH_LENGTH, { timeout: 10_000 }).catch(() => undefined);
}

/** Removes an acquisition journal's stop points from QEMU (one that is not there is no error); returns how many it had. */
async function removeStopPoints(vm: Vm, a: AcquisitionJournal): Promise<number> {
  const points = a.entry.points;
  if (points.length === 0) return 0;
  await vm.pause();
  const gdb = await vm.gdb();
  for (const p of points) await gdb.removeBreakpoint(p.type, fromHex(p.address), p.length, { timeout: 10_000 }).catch(() => undefined);
  a.update({ points: [] });
  return points.length;
}

/** Thaws what a dead acquisition froze, and deletes its journal (kept when the thaw fails). */
async function finishAcquisition(vm: Vm, a: AcquisitionJournal, points: number, opts: RecoverOptions): Promise<RecoverOutcome> {
  const who = { journal: a.path, pid: 0, comm: '' };
  const cgroup = a.entry.frozen;
  if (cgroup) {
    try {
      await thawCgroup(vm, cgroup, { timeout: Math.max(opts.timeout ?? 10_000, 20_000), signal: opts.signal ?? new AbortController().signal, journal: opts.dir });
    } catch (err) {
      return { ...who, action: 'failed', detail: `cgroup ${cgroup}, frozen by the dead vmictl to wake its target, could not be thawed: ${(err as Error).message}; run 'vmictl recover' again, or write 0 to its cgroup.freeze inside the guest` };
    }
    a.update({ frozen: undefined });
  }
  a.remove();
  return { ...who, action: 'cleared', detail: `an acquisition cut short: ${points} stop point(s) removed from QEMU${cgroup ? `, cgroup ${cgroup} thawed` : ''}` };
}

/** Finishes one acquisition journal (`vmictl recover FILE` with an acquire-*.json). */
export async function recoverAcquisition(vm: Vm, path: string, opts: RecoverOptions = {}): Promise<RecoverOutcome> {
  if (!vm.live || !vm.qmp) throw new VmiError('EUSAGE', 'recovery needs a live VM');
  const unlock = lockVm(vm.options.qmp ?? '');
  try {
    const a = AcquisitionJournal.open(path);
    const o = await finishAcquisition(vm, a, await removeStopPoints(vm, a), opts);
    await vm.resumeWhoeverStopped();
    return o;
  } finally {
    unlock();
  }
}

/** Recovers one injection from its journal file. */
export async function recoverInjection(vm: Vm, path: string, opts: RecoverOptions = {}): Promise<RecoverOutcome> {
  if (!vm.live || !vm.qmp) throw new VmiError('EUSAGE', 'recovery needs a live VM');
  const unlock = lockVm(vm.options.qmp ?? '');
  try {
    return await recoverOne(vm, path, opts, false);
  } finally {
    unlock();
  }
}

/**
 * `ofSeveral`: recoverAll's turn for this journal: the dead points are gone already, and the VM
 * is not resumed after it (the next journal's turn comes first).
 */
async function recoverOne(vm: Vm, path: string, opts: RecoverOptions, ofSeveral: boolean): Promise<RecoverOutcome> {
  if (!existsSync(path)) throw new VmiError('EJOURNAL', `no journal ${path}`);
  const journal = Journal.open(path);
  const e = journal.entry;
  const who = { journal: path, pid: e.target.pid, comm: e.target.comm };
  await vm.pause();
  const kernel = await vm.kernel();
  const memory = await vm.memory();
  const gdb = await vm.gdb();
  const runner = new BreakpointRunner(gdb, () => {
    memory.invalidate();
    kernel.invalidate();
  });
  const ctx: Ctx = { vm, kernel, runner, guest: new InjectionMemory(memory, gdb) };
  if (!ofSeveral) await removeDeadPoints(vm, e);
  let outcome: RecoverOutcome;
  try {
    outcome = { ...who, ...(await recoverTarget(ctx, e, opts)) };
  } catch (err) {
    outcome = { ...who, action: 'failed', detail: (err as Error).message };
  }
  await runner.removeAll();
  if (outcome.action !== 'failed') journal.remove();
  else if (!opts.resumeAfterFailure) {
    await vm.pause();
    vm.keepStopped();
    return { ...outcome, detail: `${outcome.detail}; ${LEFT_STOPPED}` };
  }
  if (!ofSeveral) await vm.resumeWhoeverStopped();
  return outcome;
}

async function recoverTarget(ctx: Ctx, e: JournalEntry, opts: RecoverOptions): Promise<{ action: RecoverAction; detail: string }> {
  // its vfork children first: while one is there, the target waits in clone() for it
  const children = (await endJournaledChildren(ctx, e, opts)).map((s) => `; ${s}`).join('');
  const r = await recoverThread(ctx, e, opts);
  return { ...r, detail: r.detail + children };
}

async function recoverThread(ctx: Ctx, e: JournalEntry, opts: RecoverOptions): Promise<{ action: RecoverAction; detail: string }> {
  const { kernel, runner } = ctx;
  // what will be put back, checked before anything is done to the target
  const values = new Map<string, bigint>();
  for (const n of e.restore) {
    const v = e.registers[n];
    if (typeof v !== 'string' || !/^[0-9a-f]{1,128}$/i.test(v)) throw new VmiError('EJOURNAL', `the journal has no saved value of ${n} to put back`);
    values.set(n, fromHex(v));
  }
  const task = fromHex(e.target.task);
  const R = fromHex(e.returnAddress);
  const callSp = fromHex(e.callSp);
  if ((await findTask(kernel, e.target.pid)) !== task) return { action: 'target-gone', detail: 'the target process exited' };
  const mm = await kernel.readU64(task + BigInt(kernel.profile.fieldOffset('task_struct', 'mm')));
  if (!kernel.isKernelPointer(mm)) return { action: 'target-gone', detail: 'the target has no address space any more' };
  const root = await mmRoot(kernel, mm);
  const space = spaceAt(kernel, ctx.guest, root, `pid ${e.target.pid}`);

  const places = placesOf(e);
  const gadget = places.gadget;
  const back = (h: Hit) => isInjectedHit(kernel, h, task, root, places);
  // held for it by an earlier wait, or parked where the dead vmictl left it
  let parked = (await runner.takeHeld(back)) ?? (await findParkedAt(kernel, runner.gdb, task, places));
  if (!parked) {
    const regs = await userRegisters(kernel, task);
    if (!regs || !inInjectedCall(regs.u64('ip'), regs.u64('sp'), places)) {
      const how = e.redirectedAt ? `vmictl sent it home from a blocked injected syscall at ${e.redirectedAt}` : 'it was restored before vmictl ended';
      return { action: 'already-restored', detail: `the target is not in an injection (${how})${leftMapping(e)}` };
    }
    // inside an injected syscall: catch it on its way back (at R), or on its way to restart the
    // call (at the `syscall` instruction: R − 2, or the gadget)
    for (const at of gadget === undefined ? [R, R - 2n] : [R, R - 2n, gadget]) await runner.insert(at);
    const timeout = opts.timeout ?? 10_000;
    try {
      parked = await runner.runUntil(back, { timeout, signal: opts.signal, what: 'waiting for the target to leave an injected syscall' });
    } catch (err) {
      if (!(err instanceof TimeoutError)) throw err;
      parked = await wakeBlocked(ctx, e.target.pid, back, timeout, opts);
    }
    if (!parked) {
      const saved = new Map(Object.entries(e.registers).map(([k, v]) => [k, fromHex(v)] as const));
      await redirectKernelReturn(kernel, spaceAt(kernel, ctx.guest, kernel.kaslr.pageTableRoot, 'kernel'), task, saved, gadget === undefined ? [callSp] : [callSp, watchSlotOf(callSp)], R);
      return { action: 'redirected', detail: `the target is blocked in an injected syscall: it will go back to its own code when the call ends (with that call's result in rax)${leftMapping(e)}` };
    }
  }
  // munmap the scratch mapping with one more injected call, then put everything back
  let detail = 'registers and stack restored';
  if (e.scratch) {
    const r = await injectOnce(ctx, parked, task, root, R, callSp, SYSCALLS_X86_64.munmap, [fromHex(e.scratch.address), BigInt(e.scratch.length)], opts);
    parked = r.hit;
    if (errnoOf(r.rax)) detail += `; munmap of the scratch mapping failed (errno ${errnoOf(r.rax)})`;
    else detail += '; scratch mapping unmapped';
  }
  if (e.stack) parked = await ownStackArea(ctx, parked, space, task, root, R, callSp, fromHex(e.stack.address), e.stack.data.length / 2, opts);
  await runner.gdb.writeRegisters(values, { thread: parked.thread, timeout: 10_000 });
  if (e.stack) await space.write(fromHex(e.stack.address), Buffer.from(e.stack.data, 'hex'));
  return { action: 'restored', detail };
}

/** getrandom flags: never block, any quality (the bytes are only there to be overwritten). */
const GRND_NONBLOCK_INSECURE = 0x1n | 0x4n;

/**
 * A target that forked (vfork, for exec) has its stack pages copy-on-write: not writable through
 * its page tables, and a write to the physical page would land in a page another process may
 * share. The kernel makes them the target's own again when it writes them (getrandom, injected);
 * the saved bytes are written over after.
 */
async function ownStackArea(ctx: Ctx, parked: Hit, space: AddressSpace, task: bigint, root: bigint, R: bigint, callSp: bigint, address: bigint, length: number, opts: RecoverOptions): Promise<Hit> {
  let shared = false;
  for (let page = address & ~0xfffn; page < address + BigInt(length); page += 0x1000n) shared ||= !(await space.translate(page)).writable;
  if (!shared) return parked;
  for (let done = 0; done < length;) {
    const r = await injectOnce(ctx, parked, task, root, R, callSp, SYSCALLS_X86_64.getrandom, [address + BigInt(done), BigInt(length - done), GRND_NONBLOCK_INSECURE], opts);
    parked = r.hit;
    if (r.rax <= 0n) throw new VmiError('EJOURNAL', `the target's stack at 0x${(address + BigInt(done)).toString(16)} cannot be made its own again (getrandom: ${r.rax})`);
    done += Number(r.rax);
  }
  space.invalidate();
  return parked;
}

/** What a redirected target keeps: the scratch mapping (no thread of vmictl's is there to munmap it). */
function leftMapping(e: JournalEntry): string {
  return e.scratch ? `; its scratch mapping (${e.scratch.length} bytes at 0x${e.scratch.address}) is left in the process` : '';
}

/** How long a thread woken by a thaw may take to reach user mode while the helper still runs (ms). */
const THAW_HOLD_MS = 1500;

/**
 * Gets a thread out of an injected call that does not end by itself (pause, a read nobody
 * writes): freezing its cgroup ends the call (-ERESTART*), and on thaw, with no signal to
 * deliver, the thread comes back to user mode at the `syscall` instruction to restart it, where
 * it is caught. A thread in the root cgroup (which cannot be frozen) is left where it is (null).
 */
async function wakeBlocked(ctx: Ctx, pid: number, back: (h: Hit) => Promise<boolean>, timeout: number, opts: RecoverOptions): Promise<Hit | null> {
  const list = await ctx.vm.listContainers({ signal: opts.signal });
  const p = [...list.containers, list.host].flatMap((c) => c.processes).find((x) => x.pid === pid || tasksOf(x).some((t) => t.pid === pid));
  const cgroup = p?.cgroup;
  if (!cgroup || cgroup === '/') return null;
  const helper = { timeout: Math.max(timeout, 10_000), signal: opts.signal ?? new AbortController().signal, journal: opts.dir };
  const unhold = ctx.runner.hold({ accept: back, maxMs: THAW_HOLD_MS });
  try {
    await wakeCgroup(ctx.vm, cgroup, helper);
  } catch (err) {
    // never leave the container frozen: one more thaw, from a new helper, not bound to the signal
    await thawCgroup(ctx.vm, cgroup, { ...helper, signal: new AbortController().signal }).catch(() => undefined);
    throw err;
  } finally {
    unhold();
  }
  try {
    return await ctx.runner.runUntil(back, { timeout, signal: opts.signal, what: 'waiting for the woken target to restart its injected syscall' });
  } catch (err) {
    if (!(err instanceof TimeoutError)) throw err;
    return null;
  }
}

async function isReturn(ctx: Ctx, h: Hit, task: bigint, root: bigint, R: bigint, callSp: bigint): Promise<boolean> {
  if (h.rip !== R || h.regs.get('rsp') !== callSp || cr3Root(h.regs.get('cr3') ?? 0n) !== root) return false;
  return (await currentTask(ctx.kernel, h.regs)) === task;
}

async function injectOnce(ctx: Ctx, at: Hit, task: bigint, root: bigint, R: bigint, callSp: bigint, nr: number, args: bigint[], opts: RecoverOptions): Promise<{ hit: Hit; rax: bigint }> {
  const regs = new Map<string, bigint>([['rip', R - 2n], ['rax', BigInt(nr)], ['rsp', callSp]]);
  ARGUMENT_REGISTERS.forEach((n, i) => regs.set(n, BigInt.asUintN(64, args[i] ?? 0n)));
  await ctx.runner.gdb.writeRegisters(regs, { thread: at.thread, timeout: 10_000 });
  await ctx.runner.insert(R);
  const hit = await ctx.runner.runUntil((h) => isReturn(ctx, h, task, root, R, callSp), { timeout: opts.timeout ?? 10_000, what: 'injected munmap' });
  return { hit, rax: BigInt.asIntN(64, hit.regs.get('rax') ?? 0n) };
}
