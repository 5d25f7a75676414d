/**
 * An injection session: one thread of a guest process, caught in user mode right after one of its
 * own syscalls returned (at address R, after a `syscall` instruction at R − 2) — or at R − 2 on its
 * way to restart a syscall (see InjectionOptions.wake) — made to run system calls for vmictl, and
 * put back exactly as it was.
 *
 * Each call: rip ← R − 2, rax ← number, rdi/rsi/rdx/r10/r8/r9 ← arguments, rsp ← below the data
 * area; the VM runs until the breakpoint at R is hit by this same thread with that same stack
 * pointer (a signal handler running in between has another one), and rax is the result.
 *
 * Under TCG, when the target's code has a `syscall; ret` gadget G (lib/inject/gadget.ts), calls
 * come back through a read watchpoint instead: rip ← G, rsp ← a slot 8 bytes below the data area
 * holding R; the call's `ret` reads the slot (the watchpoint stops the VM right after it) and
 * lands at R with rsp just above the slot: the same place and stack pointer as with the breakpoint.
 * A breakpoint stop makes QEMU flush its whole translation cache; a watchpoint stop does not, so
 * the kernel's syscall path stays translated from one call to the next. In this mode the
 * breakpoint at R is only there while a vfork runs (the call and its child come back to R by
 * themselves): a watch hit whose `ret` lands on a breakpoint leaves QEMU a debug stop pending. Memory
 * arguments go in the stack below the red zone (only pages already present and writable, through
 * the process's own page tables), or, for larger ones, in an anonymous mapping made with an
 * injected mmap(MAP_POPULATE) and unmapped at the end. The registers that belong to the thread
 * (not the vCPU's CR3, KERNEL_GS_BASE, control registers: the thread may come back on another
 * vCPU) and the stack bytes are restored at the end, and on every failure path.
 */
import { whileHostWorks } from './host-wait';
import { AbortError, InjectionError, PageFaultError, TimeoutError, VmiError } from '../errors';
import type { Vm } from '../vm';
import type { Kernel } from '../kernel/kernel';
import type { AddressSpace } from '../memory/address-space';
import { GdbBreakpointError, GdbUnsupportedError, type GdbClient } from '../transport/gdb';
import { toSigned64 } from './errno';
import { SessionClosedError, SyscallTimeoutError, TargetGoneError, type InjectionState } from './errors';
import { watchSlotOf } from './gadget';
import { hex, Journal, type JournalEntry } from './journal';
import { ParkedThread, ParkedThreadMovedError, type PendingCall } from './parked-thread';
import type { BreakpointRunner, Hit } from './runner';
import { redirectKernelReturn } from './redirect';
import { Scratch, type Placement, type RawCall } from './scratch';
import { resolveSyscall, syscallName, SYSCALLS_X86_64 } from './syscalls';
import { checkResult, ThreadCalls } from './thread-calls';

/** Registers of the vCPU rather than of the thread: never written back from a saved state. */
export const VCPU_REGISTERS: ReadonlySet<string> = new Set(['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'k_gs_base']);
/** The x86-64 red zone: 128 bytes below rsp that leaf functions use without moving rsp. */
export const RED_ZONE = 128n;
/** Most stack (below the red zone) used for data, when that much is present. */
export const STACK_SCRATCH_MAX = 32 * 1024;
/** Least stack worth using; below that, everything goes to a mapping. */
const STACK_SCRATCH_MIN = 256;
/** Bytes kept below the data area in watchpoint mode: the slot, 16-byte alignment. */
const WATCH_RESERVE = 16n;


const PAGE = 4096n;
/** getrandom flags: never block, any quality (the bytes are only there to be overwritten). */
const GRND_NONBLOCK_INSECURE = 0x1n | 0x4n;

export interface TargetThread {
  /** struct task_struct * of the thread caught. */
  task: bigint;
  /** Host (init namespace) thread id and process id. */
  pid: number;
  tgid: number;
  /** Its pid in its own pid namespace (the last of its nspids). */
  nspid: number;
  comm: string;
  /** struct mm_struct * */
  mm: bigint;
  /** Physical address of its page table (mm->pgd). */
  root: bigint;
  /** The container it belongs to, when it was chosen by container. */
  container?: string;
}

export interface SessionOptions {
  /** Per-syscall bound in ms (default 10 000). */
  callTimeout?: number;
  signal?: AbortSignal;
  /** The journal directory; false for no journal. */
  journal?: string | false;
  /** Whether the VM ran before the injection (it is left running at the end if so). */
  wasRunning: boolean;
  /** Leave the VM stopped at the end (a helper session inside another one). */
  leaveStopped?: boolean;
}

export interface SessionStats {
  syscalls: number;
  /** Wall time spent in injected syscalls (register writes, run, catch), ms. */
  syscallMs: number;
  stepOvers: number;
  /** Time from the first resume to the thread being caught, ms. */
  acquireMs: number;
}

interface StackScratch {
  low: bigint;
  high: bigint;
  saved: Buffer;
}

export interface Internals {
  vm: Vm;
  kernel: Kernel;
  gdb: GdbClient;
  runner: BreakpointRunner;
  /** The target's address space (reads cached, writes coherent). */
  space: AddressSpace;
  /** The kernel's, with the same writes. */
  kernelSpace: AddressSpace;
}

export class InjectionSession extends ThreadCalls {
  readonly target: TargetThread;
  /** The syscall return address (R): injected syscalls run the `syscall` at R − 2 and come back here. */
  readonly returnAddress: bigint;
  /** Where the thread was caught: R (its syscall returned) or R − 2 (its syscall is being restarted). */
  readonly caughtAt: bigint;
  readonly stats: SessionStats;
  readonly #in: Internals;
  readonly #saved: ReadonlyMap<string, bigint>;
  readonly #opts: SessionOptions;
  readonly #callTimeout: number;
  /** The thread, parked between calls, and what drives it. */
  readonly #thread: ParkedThread;
  readonly #scratch: Scratch;
  #callSp: bigint;
  /** Set when the parked vCPU was found changed behind the engine's back: nothing more is written to it. */
  #ranBehind: string | undefined;
  #stack: StackScratch | undefined;
  /** The `syscall; ret` gadget and the slot its `ret` reads (watchpoint mode), if in use. */
  #watch: { gadget: bigint; slot: bigint } | undefined;
  /** Users of the breakpoint at R in watchpoint mode (a vfork in flight, the bench's floor). */
  #returnBreakpointUsers = 0;
  #journal: Journal | undefined;
  /** Children forked off the target and driven now (vfork), by pid: their task. */
  readonly #children = new Map<number, bigint>();
  #queue: Promise<unknown> = Promise.resolve();
  #state: 'open' | 'finishing' | 'closed' = 'open';
  #finishing: Promise<{ state: InjectionState; errors: unknown[] }> | undefined;
  #leftState: InjectionState | undefined;
  #onEnd: (() => void)[] = [];

  /** @internal: sessions are made by openInjection(). */
  constructor(internals: Internals, target: TargetThread, hit: Hit, returnAddress: bigint, opts: SessionOptions, acquireMs: number) {
    super();
    this.#in = internals;
    this.target = target;
    this.returnAddress = returnAddress;
    this.caughtAt = hit.rip;
    this.#saved = new Map(hit.regs);
    this.#thread = new ParkedThread(internals, target, { thread: hit.thread, regs: this.#saved }, returnAddress);
    this.#scratch = new Scratch(internals.space, (nr, args) => this.#call(nr, args), {
      onMapping: (m) => this.#journal?.update({ scratch: m && { address: hex(m.address), length: m.length } }),
    });
    this.#opts = opts;
    this.#callTimeout = opts.callTimeout ?? 10_000;
    this.#callSp = (this.savedRegister('rsp') - RED_ZONE) & ~15n;
    this.stats = { syscalls: 0, syscallMs: 0, stepOvers: 0, acquireMs };
  }

  /** @internal Runs `f` once the session is over. */
  onEnd(f: () => void): void {
    this.#onEnd.push(f);
  }

  /** A register as the thread had it when caught. */
  savedRegister(name: string): bigint {
    const v = this.#saved.get(name);
    if (v === undefined) throw new VmiError('ENOREG', `the gdbstub gave no register ${name}`);
    return v;
  }

  /**
   * rsp when the thread is back from an injected syscall: below the data area under the red zone
   * (and while the call runs, in breakpoint mode; 8 bytes lower, at the slot, in watchpoint mode).
   */
  get callSp(): bigint {
    return this.#callSp;
  }

  /** How injected calls come back: by the breakpoint at R, or by a read watchpoint (TCG). */
  get returnBy(): 'breakpoint' | 'watchpoint' {
    return this.#watch ? 'watchpoint' : 'breakpoint';
  }

  /** The `syscall; ret` gadget used in watchpoint mode. */
  get gadget(): bigint | undefined {
    return this.#watch?.gadget;
  }

  /** The watchpoints the engine has set and not yet removed (none once closed). */
  get watchpoints(): bigint[] {
    return this.#in.runner.watchpoints;
  }

  /** The vCPU (gdb thread) the target is stopped on. */
  get vcpu(): string {
    return this.#thread.vcpu;
  }

  get closed(): boolean {
    return this.#state !== 'open';
  }

  /** What the session left in the guest once it is over (undefined while open). */
  get leftState(): InjectionState | undefined {
    return this.#leftState;
  }

  /** The breakpoints the engine has inserted and not yet removed (none once closed). */
  get breakpoints(): bigint[] {
    return this.#in.runner.breakpoints;
  }

  get journalPath(): string | undefined {
    return this.#journal?.path;
  }

  /**
   * @internal Second step of opening: finds the stack area to use and writes the journal, before
   * any register is changed; with `gadget` (a `syscall; ret` in the target's code), sets up the
   * watchpoint mode when the stack area has room for its slot.
   *
   * The stack area (the unused pages below the thread's red zone) is used only in a process with
   * one thread: in a multi-threaded one the pages below a thread's stack pointer need not be its
   * stack at all (Go keeps goroutine stacks in its heap, next to other stacks and objects, with no
   * guard page), and its other threads run while the VM runs for an injected call. There every
   * buffer goes to the scratch mapping, and calls come back by breakpoint.
   */
  async prepare(opts: { gadget?: bigint; singleThreaded?: boolean } = {}): Promise<void> {
    const top = this.#callSp;
    let low = top;
    const space = this.#in.space;
    // walk down the pages below the red zone while they are present and writable
    for (let page = (top - 1n) & ~(PAGE - 1n); opts.singleThreaded === true && top - page <= BigInt(STACK_SCRATCH_MAX); page -= PAGE) {
      try {
        const t = await space.translate(page);
        if (!t.writable || !t.user) break;
      } catch (err) {
        if (err instanceof PageFaultError) break;
        throw err;
      }
      low = page;
    }
    if (top - low > BigInt(STACK_SCRATCH_MAX)) low = top - BigInt(STACK_SCRATCH_MAX);
    if (top - low >= BigInt(STACK_SCRATCH_MIN)) {
      const saved = await space.read(low, Number(top - low));
      this.#stack = { low, high: top, saved };
      this.#callSp = low;
      if (opts.gadget !== undefined) {
        // [low, low + 8) unused, the slot, then the data area from callSp (16-byte aligned)
        this.#callSp = low + WATCH_RESERVE;
        this.#watch = { gadget: opts.gadget, slot: watchSlotOf(this.#callSp) };
      }
      this.#scratch.useStack(this.#callSp, top);
    }
    if (this.#opts.journal !== false) {
      const entry: JournalEntry = {
        version: 1,
        createdAt: new Date().toISOString(),
        writer: process.pid,
        qmp: this.#in.vm.options.qmp,
        gdb: this.#in.vm.options.gdb,
        target: { task: hex(this.target.task), pid: this.target.pid, tgid: this.target.tgid, comm: this.target.comm },
        returnAddress: hex(this.returnAddress),
        callSp: hex(this.#callSp),
        vcpu: this.#thread.vcpu,
        registers: Object.fromEntries([...this.#saved].map(([k, v]) => [k, hex(v)])),
        restore: this.#restoreNames(),
        stack: this.#stack ? { address: hex(this.#stack.low), data: this.#stack.saved.toString('hex') } : undefined,
        gadget: this.#watch ? hex(this.#watch.gadget) : undefined,
      };
      this.#journal = Journal.create(entry, this.#opts.journal);
    }
    if (this.#watch) {
      const r = Buffer.alloc(8);
      r.writeBigUInt64LE(this.returnAddress);
      await space.write(this.#watch.slot, r);
      try {
        await this.#in.runner.watch(this.#watch.slot);
      } catch (err) {
        if (!(err instanceof GdbUnsupportedError || err instanceof GdbBreakpointError)) throw err;
        // a stub without read watchpoints: calls come back by the breakpoint (the slot is unused)
        this.#watch = undefined;
        this.#journal?.update({ gadget: undefined });
        return;
      }
      // a watch hit that lands on a breakpoint leaves QEMU a debug stop pending: the next resume
      // stops at once (with a flush); so R has no breakpoint of ours while calls come back by watch
      await this.#in.runner.remove(this.returnAddress);
    }
  }

  /**
   * @internal Runs `f` with the breakpoint at R inserted (watchpoint mode takes it away between
   * calls): a vfork, whose child starts at R, or the bench's floor, which is a breakpoint hit.
   */
  async withReturnBreakpoint<T>(f: () => Promise<T>): Promise<T> {
    await this.#takeReturnBreakpoint();
    try {
      return await f();
    } finally {
      await this.#dropReturnBreakpoint();
    }
  }

  async #takeReturnBreakpoint(): Promise<void> {
    if (this.#watch && this.#returnBreakpointUsers++ === 0) await this.#in.runner.insert(this.returnAddress);
  }

  async #dropReturnBreakpoint(): Promise<void> {
    // once the session is over, removeAll() has taken it away
    if (this.#watch && --this.#returnBreakpointUsers === 0 && this.#state !== 'closed') await this.#in.runner.remove(this.returnAddress);
  }

  #restoreNames(): string[] {
    return [...this.#saved.keys()].filter((n) => !VCPU_REGISTERS.has(n));
  }

  // ---- raw syscalls ----

  /**
   * Runs one syscall in the target and returns rax as a signed value (−4095…−1 is −errno). `nr` is
   * a number or a name from the x86-64 table; arguments are 64-bit (negative values as two's
   * complement). On any failure (timeout, abort, lost target) the target is restored first and
   * the session is over.
   */
  syscall(nr: number | string, ...args: bigint[]): Promise<bigint> {
    const n = resolveSyscall(nr);
    return this.#serial(() => this.#call(n, args));
  }

  /** Memory arguments go in the stack area or the scratch mapping, under the session lock. */
  protected withPlaced<T>(parts: readonly Placement[], work: (at: bigint[], call: RawCall, readBack: (address: bigint, length: number) => Promise<Buffer>) => Promise<T>): Promise<T> {
    return this.#serial(async () => {
      const at = await this.#scratch.place(parts);
      return work(at, (nr, args) => this.#call(nr, args), (address, length) => this.#scratch.readBack(address, length));
    });
  }

  /**
   * Waits for something on the host (stdin, a consumer of stdout) without keeping the VM stopped:
   * when `work` is not done at once, the thread sleeps in poll(NULL, 0, slice), its own harmless
   * blocking call, while the VM runs, and is caught again after each slice until `work` is done.
   * A sleeping thread costs no vCPU; nothing else of the guest notices. Returns `work`'s value.
   */
  awaitHost<T>(work: Promise<T> | T): Promise<T> {
    return whileHostWorks(work, (ms) => this.#serial(() => this.#call(SYSCALLS_X86_64.poll, [0n, 0n, ms])), {
      open: () => this.#state === 'open',
      // a filter (seccomp) that refuses poll: the thread cannot sleep, the VM waits stopped
      onRefused: (errno) => this.#in.vm.options.onNotice?.(`the target refuses poll (errno ${errno}): the VM stays stopped while vmictl waits on the host`),
    });
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work, work);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /**
   * One syscall, with the session lock held. `internal` calls (munmap while finishing) ignore the
   * abort signal and leave failure handling to the caller.
   */
  async #call(nr: number, args: readonly bigint[], internal = false, ignoreAbort = false): Promise<bigint> {
    const started = Date.now();
    const sp = await this.#issue(nr, args, internal, ignoreAbort);
    return this.#complete(nr, sp, started, internal, undefined, ignoreAbort);
  }

  /**
   * @internal A syscall a cleanup must make even once the caller's signal has aborted (reaping a
   * child killed because of that abort); otherwise like syscall().
   */
  cleanupCall(nr: number | string, ...args: bigint[]): Promise<bigint> {
    const n = resolveSyscall(nr);
    return this.#serial(() => this.#call(n, args, false, true));
  }

  /**
   * Points the parked thread at the gadget (or R − 2) with the call's registers; returns the stack
   * pointer it will be back with. `byBreakpoint`: the call comes back to R by itself (a vfork,
   * whose child starts at R too), even in watchpoint mode.
   */
  async #issue(nr: number, args: readonly bigint[], internal: boolean, ignoreAbort = false, byBreakpoint = false): Promise<bigint> {
    if (this.#state !== (internal ? 'finishing' : 'open')) throw new SessionClosedError();
    if (args.length > 6) throw new RangeError(`a syscall takes at most 6 arguments, not ${args.length}`);
    const signal = internal || ignoreAbort ? undefined : this.#opts.signal;
    if (signal?.aborted) {
      await this.#finishAfterFailure();
      throw new AbortError('syscall injection', { cause: signal.reason });
    }
    if (!this.#thread.parked) throw new InjectionError('the target thread is not stopped where the engine left it', 'unknown');
    const sp = this.#callSp;
    // with a breakpoint at R (someone's), the call comes back to it: see prepare()
    const w = byBreakpoint || this.#in.runner.breakpointAt(this.returnAddress) ? undefined : this.#watch;
    try {
      await this.#thread.issue(nr, args, w ? { rip: w.gadget, rsp: w.slot } : { rip: this.returnAddress - 2n, rsp: sp });
    } catch (err) {
      let failure = err;
      if (err instanceof ParkedThreadMovedError) {
        this.#ranBehind = err.changes;
        this.#in.vm.keepStopped();
        failure = new InjectionError(`vCPU ${err.vcpu}, where the target was parked, is not as vmictl left it (${err.changes}): the VM ran or its registers were written behind vmictl's back (another QMP or gdbstub client, virsh resume); nothing more is written to the target, and the VM is left stopped for 'vmictl recover'${this.#journal ? ` (journal ${this.#journal.path})` : ''}`, 'unknown', { cause: err });
      }
      // the thread has not run: put its registers back as they were (if the stub still answers)
      if (!internal) await this.#finishAfterFailure();
      throw failure;
    }
    return sp;
  }

  /** Runs the VM until the issued call returns (or takes `caught`, its return seen by someone else). */
  async #complete(nr: number, sp: bigint, started: number, internal: boolean, caught?: Hit, ignoreAbort = false): Promise<bigint> {
    const signal = internal || ignoreAbort ? undefined : this.#opts.signal;
    const name = syscallName(nr) ?? `syscall ${nr}`;
    let hit: Hit;
    try {
      hit = caught ?? (await this.#thread.waitReturn(`injected ${name}`, sp, { timeout: this.#callTimeout, signal }));
    } catch (err) {
      if (internal) throw err;
      let cause = err;
      if (!(err instanceof TargetGoneError) && this.#in.gdb.state !== 'closed') {
        // let the call in flight finish (an abort gives it as long as a call may take)
        const grace = err instanceof AbortError ? this.#callTimeout : Math.min(this.#callTimeout, 2000);
        await this.#thread.waitReturn(`injected ${name}`, sp, { timeout: grace, lookFirst: true }).then(
          (h) => this.#thread.park(h),
          (e) => { if (e instanceof TargetGoneError) cause = e; },
        );
      }
      const { state } = await this.#finishAfterFailure(cause instanceof TargetGoneError);
      if (cause instanceof TargetGoneError) throw new TargetGoneError(this.target.pid, state, cause.why);
      if (cause instanceof TimeoutError) throw new SyscallTimeoutError(name, this.#callTimeout, state);
      throw cause;
    }
    this.#thread.park(hit);
    this.stats.syscalls++;
    this.stats.syscallMs += Date.now() - started;
    this.stats.stepOvers = this.#in.runner.stats.stepOvers;
    return toSigned64(hit.regs.get('rax') ?? 0n);
  }

  /**
   * @internal Starts a syscall and returns while it runs (a vfork: the thread stays in the kernel
   * while its child is driven). Its return, when another runner meets it, is held on its vCPU
   * until wait() takes it; no other call of the session runs before wait() ends.
   */
  startCall(nr: number | string, args: readonly bigint[]): Promise<PendingCall> {
    const n = resolveSyscall(nr);
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const issued = this.#serial(async (): Promise<PendingCall> => {
      const started = Date.now();
      let sp: bigint;
      try {
        // the call and the child it forks come back to R
        await this.#takeReturnBreakpoint();
        sp = await this.#issue(n, args, false, false, true);
      } catch (err) {
        await this.#dropReturnBreakpoint().catch(() => undefined);
        release();
        throw err;
      }
      return this.#thread.pendingCall(sp, async (caught, o) => {
        try {
          return await this.#complete(n, sp, started, false, caught, o?.ignoreAbort === true);
        } finally {
          await this.#dropReturnBreakpoint().catch(() => undefined);
          release();
        }
      });
    });
    // later calls wait for the pending one to end
    this.#queue = this.#queue.then(() => gate);
    return issued;
  }

  /**
   * @internal After a fork the scratch pages (stack area, mapping) are copy-on-write, so not
   * writable through the page tables: the kernel writes them (getrandom), which gives the
   * process its own writable copies again. Their content is scratch (the stack is put back at the
   * end from the saved copy).
   */
  async remakeScratchWritable(opts: { ignoreAbort?: boolean } = {}): Promise<void> {
    // from callSp: the watchpoint slot below keeps R (the kernel's copy of the page has it too)
    for (const [address, length] of this.#scratch.areas()) {
      // getrandom may write less than asked (a pending signal): go on from there
      for (let done = 0; done < length;) {
        const args = [address + BigInt(done), BigInt(length - done), GRND_NONBLOCK_INSECURE];
        const n = Number(checkResult('getrandom', opts.ignoreAbort ? await this.cleanupCall('getrandom', ...args) : await this.syscall('getrandom', ...args)));
        if (n <= 0) throw new InjectionError(`getrandom wrote nothing at 0x${(address + BigInt(done)).toString(16)}`, 'unknown');
        done += n;
      }
    }
    this.#in.space.invalidate();
  }

  /** @internal The engine parts a child process driven from this session shares. */
  get engine(): Internals & { callTimeout: number; signal?: AbortSignal; journalChild: (child: { pid: number; task: bigint }, driven: boolean) => void } {
    return { ...this.#in, callTimeout: this.#callTimeout, signal: this.#opts.signal, journalChild: (c, driven) => this.#journalChild(c, driven) };
  }

  /** Keeps the journal's list of driven children (vfork) up to date, before a child runs anything. */
  #journalChild(child: { pid: number; task: bigint }, driven: boolean): void {
    if (driven) this.#children.set(child.pid, child.task);
    else if (!this.#children.delete(child.pid)) return;
    this.#journal?.update({ children: this.#children.size ? [...this.#children].map(([pid, task]) => ({ pid, task: hex(task) })) : undefined });
  }

  /**
   * @internal The thread was run by someone else on this engine (the bench's floor) and caught at
   * the return address again by `hit`: the session takes it from there (it may be on another vCPU).
   */
  adoptParked(hit: Hit): void {
    if (!this.#thread.parked || hit.rip !== this.returnAddress) throw new InjectionError('adoptParked: the thread must be parked at the return address', 'unknown');
    this.#thread.park(hit);
  }

  // ---- helpers ----

  /** close(fd) in the target; close() without an fd ends the session (restores the target). */
  close(fd?: number | bigint): Promise<void> {
    if (fd === undefined) return this.end();
    return this.closeFd(fd);
  }

  // ---- ending ----

  /** Restores the target exactly and lets the VM run. Idempotent. */
  async end(): Promise<void> {
    // after a failure the call that failed reported it already
    const byFailure = this.#finishing !== undefined;
    const { state, errors } = await this.#serial(() => this.#finish(false));
    if (errors.length === 0 || byFailure) return;
    const e = errors[0];
    if (e instanceof InjectionError) throw e;
    throw new InjectionError(`ending the injection: ${(e as Error)?.message ?? String(e)}`, state, { cause: e });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.end();
  }

  /** Finishes from inside the lock after a failure; what is left is reported by the caller. */
  async #finishAfterFailure(targetGone = false): Promise<{ state: InjectionState; errors: unknown[] }> {
    return this.#finish(targetGone);
  }

  #finish(targetGone: boolean): Promise<{ state: InjectionState; errors: unknown[] }> {
    this.#finishing ??= this.#doFinish(targetGone);
    return this.#finishing;
  }

  /**
   * Puts the target back and lets the VM run: unmaps the scratch mapping (one more injected
   * call), writes the thread's registers back and the stack bytes, removes the breakpoints, removes
   * the journal (kept when the target could not be restored), resumes the VM.
   */
  async #doFinish(targetGone: boolean): Promise<{ state: InjectionState; errors: unknown[] }> {
    this.#state = 'finishing';
    const errors: unknown[] = [];
    let state: InjectionState = 'restored';
    if (this.#in.gdb.state === 'closed') {
      // no way to touch the thread: the journal stays for `vmictl recover`, and the VM stays
      // stopped, for the thread must not run its own code with injected registers (QEMU would
      // stop it anyway at the next hit of the breakpoint it keeps)
      state = 'unknown';
      errors.push(new InjectionError(`the gdbstub connection is gone: the target could not be restored; the VM is left stopped for 'vmictl recover'${this.#journal ? ` (journal ${this.#journal.path})` : ''}`, 'unknown'));
      this.#in.vm.keepStopped();
      this.#state = 'closed';
      this.#leftState = state;
      for (const f of this.#onEnd.splice(0)) f();
      return { state, errors };
    }
    if (this.#ranBehind !== undefined) {
      // the thread went on from where it was parked: wherever it is, writing to it now is a guess
      state = 'unknown';
      errors.push(new InjectionError(`the target's vCPU changed behind vmictl's back (${this.#ranBehind})`, 'unknown'));
    } else if (targetGone) state = 'untouched';
    else {
      try {
        if (!this.#thread.parked) await this.#thread.findParked(this.#parkedAt());
        if (this.#thread.parked) {
          if (this.#scratch.mapping) await this.#scratch.unmap((nr, args) => this.#call(nr, args, true)).catch((e) => { errors.push(e); });
          await this.#restoreOnCpu();
        } else {
          // blocked inside an injected syscall: send it home when the call ends
          await redirectKernelReturn(this.#in.kernel, this.#in.kernelSpace, this.target.task, this.#saved, this.#watch ? [this.#callSp, this.#watch.slot] : [this.#callSp], this.returnAddress);
          state = 'in-syscall';
        }
        if (this.#stack) await this.#in.space.write(this.#stack.low, this.#stack.saved);
      } catch (err) {
        state = 'unknown';
        errors.push(err);
      }
    }
    errors.push(...(await this.#in.runner.removeAll()));
    if (state === 'restored' || state === 'untouched') {
      try {
        this.#journal?.remove();
      } catch (e) {
        errors.push(e);
      }
    } else if (state === 'in-syscall') {
      // kept, as errors.ts says: it names what is left in the target (the scratch mapping)
      try {
        this.#journal?.update({ redirectedAt: new Date().toISOString() });
      } catch (e) {
        errors.push(e);
      }
    }
    if (state === 'unknown') {
      // the thread may hold injected registers: it must not run its own code before `vmictl recover`
      this.#in.vm.keepStopped();
      errors.unshift(new InjectionError(`the target could not be restored (${(errors[0] as Error)?.message ?? 'unknown failure'}); the VM is left stopped for 'vmictl recover'${this.#journal ? ` (journal ${this.#journal.path})` : ''}`, 'unknown', { cause: errors[0] }));
    } else if (!this.#opts.leaveStopped) await resumeVm(this.#in.vm, this.#opts.wasRunning).catch((e) => errors.push(e));
    this.#state = 'closed';
    this.#leftState = state;
    for (const f of this.#onEnd.splice(0)) f();
    return { state, errors };
  }

  /** Where a call leaves the thread in user mode: R or R − 2, or the gadget's `syscall` or `ret`. */
  #parkedAt(): bigint[] {
    const at = [this.returnAddress, this.returnAddress - 2n];
    if (this.#watch) at.push(this.#watch.gadget, this.#watch.gadget + 2n);
    return at;
  }

  /** Writes the thread's saved registers back on the vCPU it is stopped on. */
  async #restoreOnCpu(): Promise<void> {
    // someone may have moved it (another user of the gdbstub): then look for it on every vCPU
    if (!(await this.#thread.stillHere()) && !(await this.#thread.findParked(this.#parkedAt()))) {
      throw new InjectionError(`the target is on no vCPU in user mode: its registers could not be restored`, 'unknown');
    }
    const values = new Map<string, bigint>();
    for (const n of this.#restoreNames()) values.set(n, this.#saved.get(n)!);
    await this.#thread.writeBack(values);
  }
}

/** Lets the VM run again after an injection (if it ran before, whoever had stopped it since). */
export function resumeVm(vm: Vm, wasRunning: boolean): Promise<void> {
  return wasRunning ? vm.resumeWhoeverStopped() : vm.resume();
}
