/**
 * The one engine that drives a guest thread through injected syscalls: the thread is parked in
 * user mode on a stopped vCPU, a call is written over that vCPU's registers, the VM runs until the
 * same thread comes back with the call's stack pointer, and it is parked there again. Sessions
 * (session.ts) and the children they fork (child.ts) are both this engine, with their own rules
 * around it (a journal and restoring for a session, exit or exec for a child).
 */
import { InjectionError, TimeoutError } from '../errors';
import type { Kernel } from '../kernel/kernel';
import type { GdbClient } from '../transport/gdb';
import { taskGone } from '../kernel/helpers/task';
import { currentTask, findOnVcpus, inUserMode, isThreadAt, writeRegistersOver, type Registers } from './cpu';
import { TargetGoneError } from './errors';
import type { BreakpointRunner, Hit } from './runner';

/** Argument registers of the syscall ABI, in order. */
export const ARGUMENT_REGISTERS = ['rdi', 'rsi', 'rdx', 'r10', 'r8', 'r9'] as const;
/** What a parked vCPU must still hold before the next call is written over it: it ran if these moved. */
const PARKED_CHECK = ['rip', 'rsp', 'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'eflags', 'cs', 'cr3'] as const;
/** How often a long wait stops the VM to check that the thread still exists (ms). */
const LIVENESS_INTERVAL = 1000;
/** A hold that lasts until its owner takes it. */
const HELD_FOREVER = 2 ** 31;

/** What every driven thread shares: the kernel, the stub and the runner of its stop points. */
export interface ThreadEngine {
  kernel: Kernel;
  gdb: GdbClient;
  runner: BreakpointRunner;
}

/** The thread driven: its task, host pid, mm, and the physical root of its page table. */
export interface DrivenTarget {
  task: bigint;
  pid: number;
  mm: bigint;
  root: bigint;
}

/** Where a call starts: the instruction that makes it and the stack pointer it starts with. */
export interface CallEntry {
  rip: bigint;
  rsp: bigint;
}

/** A syscall started and left running, whose return is held until wait() takes it. */
export interface PendingCall {
  /** Whether a hit is the thread coming back from this call. */
  isReturn(hit: Hit): Promise<boolean>;
  /** Hands over the return, met by another runner's wait (the VM is stopped there). */
  take(hit: Hit): void;
  /**
   * Waits for the return (taken, held, or yet to come), parks the thread there; rax, signed.
   * `ignoreAbort`: the caller's abort signal is not heeded (a cleanup after that abort).
   */
  wait(opts?: { ignoreAbort?: boolean }): Promise<bigint>;
}

/** The parked vCPU is not as the engine left it: the VM ran, or its registers were written, behind its back. */
export class ParkedThreadMovedError extends InjectionError {
  readonly vcpu: string;
  /** The registers that moved, as "name now, not before". */
  readonly changes: string;
  constructor(vcpu: string, changes: string) {
    super(`vCPU ${vcpu}, where the thread was parked, is not as vmictl left it (${changes})`, 'unknown');
    this.vcpu = vcpu;
    this.changes = changes;
  }
}

export interface WaitOptions {
  timeout: number;
  signal?: AbortSignal;
  /** Look on every vCPU for the thread already back before the first run (after a wait cut short). */
  lookFirst?: boolean;
  /** Another hit the wait ends on (a vfork parent coming back when its child execs). */
  also?: (hit: Hit) => Promise<boolean>;
}

export class ParkedThread {
  readonly target: DrivenTarget;
  /** Where calls come back to (R, after a `syscall` instruction at R − 2). */
  readonly returnAddress: bigint;
  readonly #engine: ThreadEngine;
  #vcpu: string;
  /** Every register of #vcpu as last read (at the last catch): the base of the next G packet. */
  #regs: Registers;
  /** The thread is known to be stopped in user mode on #vcpu. */
  #parked = true;

  constructor(engine: ThreadEngine, target: DrivenTarget, hit: { thread: string; regs: Registers }, returnAddress: bigint) {
    this.#engine = engine;
    this.target = target;
    this.returnAddress = returnAddress;
    this.#vcpu = hit.thread;
    this.#regs = hit.regs;
  }

  /** The vCPU (gdb thread) the thread is, or was last, parked on. */
  get vcpu(): string {
    return this.#vcpu;
  }

  get parked(): boolean {
    return this.#parked;
  }

  /**
   * Writes `nr(args)` over the parked vCPU, to run from `entry` the next time the VM runs. The
   * vCPU is checked first: a register block written from what the engine saw last would land on
   * whatever that vCPU runs now if another QMP or gdbstub client ran it (one `g` per call).
   */
  async issue(nr: number, args: readonly bigint[], entry: CallEntry): Promise<void> {
    if (args.length > 6) throw new RangeError(`a syscall takes at most 6 arguments, not ${args.length}`);
    if (!this.#parked) throw new InjectionError('the target thread is not stopped where the engine left it', 'unknown');
    await this.#checkUnmoved();
    const regs = new Map<string, bigint>([['rip', entry.rip], ['rax', BigInt(nr)], ['rsp', entry.rsp]]);
    ARGUMENT_REGISTERS.forEach((name, i) => regs.set(name, BigInt.asUintN(64, args[i] ?? 0n)));
    this.#regs = await writeRegistersOver(this.#engine.gdb, this.#vcpu, this.#regs, regs);
    this.#parked = false;
  }

  async #checkUnmoved(): Promise<void> {
    const now = await this.#engine.gdb.readRegisters({ thread: this.#vcpu, timeout: 10_000 });
    const changed = PARKED_CHECK.filter((n) => now.has(n) && this.#regs.has(n) && now.get(n) !== this.#regs.get(n));
    if (changed.length === 0) return;
    const hex = (v: bigint | undefined) => `0x${(v ?? 0n).toString(16)}`;
    const shown = changed.slice(0, 3).map((n) => `${n} ${hex(now.get(n))}, not ${hex(this.#regs.get(n))}`).join('; ');
    throw new ParkedThreadMovedError(this.#vcpu, `${shown}${changed.length > 3 ? `; ${changed.length - 3} more` : ''}`);
  }

  /** The thread is stopped at `hit` (back from a call, or found by someone else): it is parked there. */
  park(hit: { thread: string; regs: Registers }): void {
    this.#vcpu = hit.thread;
    this.#regs = hit.regs;
    this.#parked = true;
  }

  /** Whether a hit is this thread back at R in user mode with stack pointer `sp`. */
  isReturn(hit: Hit, sp: bigint): Promise<boolean> {
    return isThreadAt(this.#engine.kernel, hit, this.target, this.returnAddress, sp);
  }

  /**
   * Runs the VM until the thread comes back with `sp` (or `also` takes a hit). Every
   * LIVENESS_INTERVAL the VM is stopped to check that the thread still exists (it may be killed
   * inside the guest). Throws TimeoutError at the deadline, TargetGoneError when it is gone.
   */
  async waitReturn(what: string, sp: bigint, opts: WaitOptions): Promise<Hit> {
    const deadline = Date.now() + opts.timeout;
    const accept = opts.also
      ? async (h: Hit) => (await this.isReturn(h, sp)) || (await opts.also!(h))
      : (h: Hit) => this.isReturn(h, sp);
    for (let round = 0; ; round++) {
      if (opts.lookFirst || round > 0) {
        // after a wait cut short the VM is stopped, maybe with the thread already back: a stop
        // QEMU reported as the interrupt's (it came in the same instant) never comes again for a
        // watchpoint, and resuming would let the thread run on with injected registers
        const back = await this.#backAlready(sp);
        if (back) return back;
        const gone = round > 0 ? await taskGone(this.#engine.kernel, this.target) : null;
        if (gone) throw new TargetGoneError(this.target.pid, 'untouched', gone);
      }
      const slice = Math.min(LIVENESS_INTERVAL, deadline - Date.now());
      if (slice <= 0) throw new TimeoutError(what, opts.timeout);
      try {
        return await this.#engine.runner.runUntil(accept, { timeout: slice, signal: opts.signal, what });
      } catch (err) {
        if (!(err instanceof TimeoutError)) throw err;
      }
    }
  }

  /** The thread stopped on some vCPU where a call leaves it (at R, user mode, with `sp`), if it is. */
  async #backAlready(sp: bigint): Promise<Hit | null> {
    const gdb = this.#engine.gdb;
    const stop = gdb.lastStop;
    if (gdb.state !== 'stopped' || !stop) return null;
    const rip = (regs: Registers) => regs.get('rip') ?? 0n;
    // a held hit is handed out by runUntil() itself
    const found = await findOnVcpus(gdb, (regs) => isThreadAt(this.#engine.kernel, { rip: rip(regs), regs }, this.target, this.returnAddress, sp), (thread) => this.#engine.runner.isHeld(thread));
    return found && { ...found, rip: rip(found.regs), stop };
  }

  /**
   * After a failed wait: parks the thread if it is stopped in user mode on some vCPU at one of
   * `at`; whether it was found.
   */
  async findParked(at: readonly bigint[]): Promise<boolean> {
    this.#parked = false;
    const found = await findOnVcpus(this.#engine.gdb, async (regs) => {
      const rip = regs.get('rip');
      return inUserMode(regs) && rip !== undefined && at.includes(rip) && (await currentTask(this.#engine.kernel, regs)) === this.target.task;
    });
    if (found) this.park(found);
    return found !== null;
  }

  /**
   * A call issued with stack pointer `sp` and left running: while it runs, its return, if another
   * runner's wait meets it, is held on its vCPU; `complete` finishes it from the hit taken (or by
   * waiting) once wait() is called.
   */
  pendingCall(sp: bigint, complete: (caught: Hit | undefined, opts?: { ignoreAbort?: boolean }) => Promise<bigint>): PendingCall {
    const isReturn = (h: Hit) => this.isReturn(h, sp);
    const unhold = this.#engine.runner.hold({ accept: isReturn, maxMs: HELD_FOREVER });
    let caught: Hit | undefined;
    let done: Promise<bigint> | undefined;
    return {
      isReturn,
      take: (h) => { caught = h; },
      wait: (o) => {
        done ??= (async () => {
          unhold();
          return complete(caught, o);
        })();
        return done;
      },
    };
  }

  /** Writes `values` on the vCPU the thread is parked on (restoring it at the end). */
  async writeBack(values: Registers): Promise<void> {
    await this.#engine.gdb.writeRegisters(values, { thread: this.#vcpu, timeout: 10_000 });
    this.#parked = false;
  }

  /** Whether the parked vCPU still runs this thread, in user mode (someone may have moved it). */
  async stillHere(): Promise<boolean> {
    const regs = await this.#engine.gdb.readRegisters({ thread: this.#vcpu, timeout: 10_000 });
    return inUserMode(regs) && (await currentTask(this.#engine.kernel, regs)) === this.target.task;
  }
}
