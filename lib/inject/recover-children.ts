/**
 * Children a dead session had forked (vfork) and was driving when its vmictl died. Each stands at
 * the session's return address with the session's call stack pointer, in its own copy of the
 * target's address space: left alone, it would run the target's code from there as soon as the VM
 * runs (a second copy of a container's main loop), and its vfork parent, the target, would wait in
 * clone() until it exits. So, before the target itself is recovered, each is made to exit: one
 * parked in user mode gets exit_group(127) written over its registers; one inside an injected
 * call is caught if it leaves it, and otherwise killed (SIGKILL from a root helper), held at its
 * return meanwhile so that it cannot run a single instruction of the target's code.
 */
import { TimeoutError } from '../errors';
import type { Kernel } from '../kernel/kernel';
import type { Vm } from '../vm';
import { findTask } from '../kernel/helpers/task';
import { mmRoot } from './cpu';
import { killFromRootHelper } from './child';
import { fromHex, type JournalEntry } from './journal';
import { findParkedAt, inInjectedCall, isInjectedHit, type InjectedPlaces } from './injected-places';
import type { BreakpointRunner, Hit } from './runner';
import { userRegisters } from './site';
import { SYSCALLS_X86_64 } from './syscalls';

/** How a child made to exit says so in its wait status. */
const EXIT_CODE = 127n;
const HELD_FOREVER = 2 ** 31;

export interface ChildrenContext {
  vm: Vm;
  kernel: Kernel;
  runner: BreakpointRunner;
}

/** Makes each journaled child that is still the session's exit; says what was done, one phrase each. */
export async function endJournaledChildren(ctx: ChildrenContext, e: JournalEntry, opts: { timeout?: number; dir?: string; signal?: AbortSignal }): Promise<string[]> {
  const done: string[] = [];
  // children of the same address (R, callSp) as the target, and no gadget: they come back by breakpoint
  const places: InjectedPlaces = { R: fromHex(e.returnAddress), callSp: fromHex(e.callSp) };
  for (const c of e.children ?? []) {
    const how = await endChild(ctx, c.pid, fromHex(c.task), places, opts);
    if (how) done.push(`forked child ${c.pid} ${how}`);
  }
  return done;
}

async function endChild(ctx: ChildrenContext, pid: number, task: bigint, places: InjectedPlaces, opts: { timeout?: number; dir?: string; signal?: AbortSignal }): Promise<string | null> {
  const { kernel, runner } = ctx;
  if ((await findTask(kernel, pid)) !== task) return null;
  const mm = await kernel.readU64(task + BigInt(kernel.profile.fieldOffset('task_struct', 'mm')));
  if (!kernel.isKernelPointer(mm)) return null;
  const root = await mmRoot(kernel, mm);
  const back = (h: Hit) => isInjectedHit(kernel, h, task, root, places);
  let parked = (await runner.takeHeld(back)) ?? (await findParkedAt(kernel, runner.gdb, task, places));
  if (!parked) {
    const regs = await userRegisters(kernel, task);
    // it runs its own program (execve went through) or was never one of ours
    if (!regs || !inInjectedCall(regs.u64('ip'), regs.u64('sp'), places)) return null;
    for (const at of [places.R, places.R - 2n]) await runner.insert(at);
    try {
      parked = await runner.runUntil(back, { timeout: Math.min(opts.timeout ?? 10_000, 5_000), signal: opts.signal, what: 'waiting for a forked child to leave an injected call' });
    } catch (err) {
      if (!(err instanceof TimeoutError)) throw err;
      const unhold = runner.hold({ accept: back, maxMs: HELD_FOREVER });
      try {
        await killFromRootHelper(ctx.vm, pid, { timeout: Math.max(opts.timeout ?? 10_000, 10_000), journal: opts.dir });
      } finally {
        unhold();
      }
      parked = await runner.takeHeld(back);
      if (!parked) return 'killed (SIGKILL) inside an injected call';
    }
  }
  // the `syscall` before R makes the call: exit_group, whatever else the registers hold
  const exit = new Map<string, bigint>([['rip', places.R - 2n], ['rax', BigInt(SYSCALLS_X86_64.exit_group)], ['rdi', EXIT_CODE], ['rsp', places.callSp]]);
  await runner.gdb.writeRegisters(exit, { thread: parked.thread, timeout: 10_000 });
  return `made to exit (${EXIT_CODE})`;
}
