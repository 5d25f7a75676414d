/**
 * What keeps the other dead injections' targets harmless while `vmictl recover` runs the VM for
 * one of them. Such a target, or a vfork child its session was driving, holds injected registers:
 * let run past its return address R it would run its process's code with them. Stopping its vCPU
 * until its turn stalls a small VM (that vCPU's timers and run queue wait too), so instead each is
 * sent to sleep in the kernel: poll(NULL, 0, slice) made from the `syscall` before R, with the
 * call's stack pointer. It costs no vCPU, and comes back to R after the slice, where a breakpoint
 * catches it (whoever runs the VM then: an intercept, see runner.ts) and sends it back to sleep.
 * When its turn comes it is found inside that call, as inside any injected one.
 */
import type { Kernel } from '../kernel/kernel';
import { findTask } from '../kernel/helpers/task';
import { GdbBreakpointError } from '../transport/gdb';
import { mmRoot } from './cpu';
import { fromHex, type JournalEntry } from './journal';
import { findParkedAt, inInjectedCall, isInjectedHit, placesOf, type InjectedPlaces } from './injected-places';
import type { BreakpointRunner, Hit } from './runner';
import { userRegisters } from './site';
import { SYSCALLS_X86_64 } from './syscalls';
import { HOST_WAIT_SLICE_MS } from './host-wait';

/** A thread that stands in a dead injection: a journal's target or one of its children. */
interface Kept {
  journal: string;
  task: bigint;
  root: bigint;
  places: InjectedPlaces;
}

/** The registers that make a thread standing at `p` sleep one slice and come back to R. */
function sleepRegisters(p: InjectedPlaces): Map<string, bigint> {
  return new Map([
    ['rip', p.R - 2n],
    ['rsp', p.callSp],
    ['rax', BigInt(SYSCALLS_X86_64.poll)],
    ['rdi', 0n],
    ['rsi', 0n],
    ['rdx', BigInt(HOST_WAIT_SLICE_MS)],
  ]);
}

export class KeptAsleep {
  readonly #kernel: Kernel;
  readonly #runner: BreakpointRunner;
  readonly #kept: Kept[];
  #unregister: (() => void) | undefined;

  private constructor(kernel: Kernel, runner: BreakpointRunner, kept: Kept[]) {
    this.#kernel = kernel;
    this.#runner = runner;
    this.#kept = kept;
  }

  /**
   * With the VM stopped: every thread of `journals` that still stands in its injection is kept
   * (one parked on a vCPU is sent to sleep at once), with a breakpoint at each journal's R. Where
   * the breakpoints do not fit (KVM's four debug registers), nothing is kept: null, and why.
   */
  static async start(kernel: Kernel, runner: BreakpointRunner, journals: ReadonlyMap<string, JournalEntry>): Promise<{ kept: KeptAsleep } | { kept: null; reason: string }> {
    const kept: Kept[] = [];
    // found on a vCPU now: sent to sleep once the breakpoints are in
    const parkedNow: Array<{ k: Kept; at: Hit }> = [];
    for (const [journal, e] of journals) {
      const places = placesOf(e);
      // its children stand at R with the same stack pointer, in their own address spaces
      for (const who of [{ pid: e.target.pid, task: e.target.task }, ...(e.children ?? [])]) {
        const task = fromHex(who.task);
        if ((await findTask(kernel, who.pid)) !== task) continue;
        const mm = await kernel.readU64(task + BigInt(kernel.profile.fieldOffset('task_struct', 'mm')));
        if (!kernel.isKernelPointer(mm)) continue;
        const k: Kept = { journal, task, root: await mmRoot(kernel, mm), places };
        const parked = await findParkedAt(kernel, runner.gdb, task, places);
        if (parked) parkedNow.push({ k, at: parked });
        else {
          const regs = await userRegisters(kernel, task);
          if (!regs || !inInjectedCall(regs.u64('ip'), regs.u64('sp'), places)) continue;
        }
        kept.push(k);
      }
    }
    const asleep = new KeptAsleep(kernel, runner, kept);
    try {
      for (const k of kept) await runner.insert(k.places.R);
    } catch (err) {
      await runner.removeAll();
      if (err instanceof GdbBreakpointError) return { kept: null, reason: `the breakpoints that keep ${kept.length} thread(s) asleep do not fit (${err.message})` };
      throw err;
    }
    // before anything runs
    for (const { k, at } of parkedNow) await asleep.#sendToSleep(k, at);
    asleep.#unregister = runner.intercept({ take: (h) => asleep.#take(h) });
    return { kept: asleep };
  }

  /** How many threads it keeps. */
  get size(): number {
    return this.#kept.length;
  }

  async #take(h: Hit): Promise<boolean> {
    for (const k of this.#kept) {
      if (!(await isInjectedHit(this.#kernel, h, k.task, k.root, k.places))) continue;
      await this.#sendToSleep(k, h);
      return true;
    }
    return false;
  }

  async #sendToSleep(k: Kept, at: { thread: string }): Promise<void> {
    await this.#runner.gdb.writeRegisters(sleepRegisters(k.places), { thread: at.thread, timeout: 10_000 });
  }

  /** `journal`'s turn has come: its threads are no longer kept (they are found asleep, inside a call). */
  async release(journal: string): Promise<void> {
    for (let i = this.#kept.length - 1; i >= 0; i--) {
      if (this.#kept[i].journal !== journal) continue;
      const [k] = this.#kept.splice(i, 1);
      if (!this.#kept.some((o) => o.places.R === k.places.R)) await this.#runner.remove(k.places.R);
    }
  }

  /** Ends it: no thread is kept, and its breakpoints are removed. */
  async stop(): Promise<unknown[]> {
    this.#unregister?.();
    this.#unregister = undefined;
    this.#kept.length = 0;
    return this.#runner.removeAll();
  }
}
