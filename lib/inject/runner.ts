/**
 * Running the VM until a breakpoint of ours is hit by the thread we want. Breakpoints are hardware
 * ones (Z1: under KVM only 4 debug registers exist, so the engine never uses more than a couple;
 * under TCG they are invisible to the guest). A user-space breakpoint in a static binary is hit by
 * every process running the same code, so each hit is shown to `accept`; one it refuses is stepped
 * over — breakpoint removed, that vCPU alone single-stepped, breakpoint back — and the VM resumed.
 *
 * Several runners may share one gdbstub (an injection that uses a helper injection in another
 * process): the breakpoints are counted per address for the whole connection, every runner knows
 * every breakpoint, and a runner may *hold* hits that another one wants: the vCPU is left stopped
 * (the others are resumed with vCont) until its owner takes the hit, or for at most `maxMs`; or it
 * may *intercept* them: whoever runs the VM hands such a hit to the intercept, which sends that
 * thread somewhere safe by rewriting its registers, and the VM runs on with no vCPU kept stopped.
 *
 * Each runner keeps the record of the breakpoints it inserted, so that it can always remove every
 * one, and tests can check that none is left.
 *
 * A runner may also set read watchpoints (Z3, 8 bytes): under TCG a watchpoint stop is reported
 * after the instruction that read, and, unlike a breakpoint stop, does not make QEMU (up to 10.2)
 * flush its whole translation cache (gdb_vm_state_change), which a guest then pays for by
 * translating again every piece of code it runs. A watch hit nobody takes is not stepped over:
 * the instruction is done already, so the VM is simply resumed.
 */
import { AbortError, TimeoutError } from '../errors';
import type { GdbClient, StopReply } from '../transport/gdb';
import { inUserMode } from './cpu';

export interface Hit {
  /** The gdb thread (vCPU) that stopped. */
  thread: string;
  /** Every register of that vCPU (the `g` packet). */
  regs: Map<string, bigint>;
  rip: bigint;
  stop: StopReply;
  /** The address of the watchpoint of ours that made the stop (the reading instruction is done). */
  watch?: bigint;
}

export interface RunOptions {
  /** Milliseconds before a TimeoutError (the VM is stopped again first). */
  timeout: number;
  signal?: AbortSignal;
  /** Names the wait in errors. */
  what: string;
}

export interface RunnerStats {
  /** Stops seen (every hit, ours or not, and other stops). */
  stops: number;
  /** Hits by other threads stepped over. */
  stepOvers: number;
  /** Stops that were not at a breakpoint of the engine. */
  otherStops: number;
  /** Hits kept for another runner. */
  held: number;
  /** Hits an intercept dealt with in place. */
  intercepted: number;
  /** Watch hits QEMU did not report (another vCPU's stop came in the same instant), found by looking. */
  unreported: number;
}

/** Hits a runner keeps for someone else while it runs: see BreakpointRunner.hold(). */
export interface Hold {
  accept(hit: Hit): Promise<boolean>;
  /** How long a held vCPU stays stopped before it is let go (stepped over). */
  maxMs: number;
}

/**
 * Hits dealt with in place while anyone runs the VM: see BreakpointRunner.intercept(). `take` is
 * given a hit with its vCPU stopped; it rewrites that thread's registers and says true, or leaves
 * them and says false (not its own).
 */
export interface Intercept {
  take(hit: Hit): Promise<boolean>;
}

interface Held {
  hit: Hit;
  since: number;
  maxMs: number;
  /** The hold it is held for. */
  hold: Hold;
}

/** What runners on one gdbstub connection share. */
interface Shared {
  /** Breakpoint address → how many runners inserted it. */
  breakpoints: Map<bigint, number>;
  /** Read-watchpoint address (8 bytes) → how many runners inserted it. */
  watchpoints: Map<bigint, number>;
  /** A watch stop taken by halt() instead of by a wait: offered to the next runUntil(). */
  missed?: StopReply;
  holds: Set<Hold>;
  intercepts: Set<Intercept>;
  /** vCPU → the hit it is held on. */
  held: Map<string, Held>;
  threads?: string[];
  /**
   * Whether a single step leaves a breakpoint at the pc alone (TCG: "singlestep overrides
   * breakpoints", check_for_breakpoints since QEMU 6.1) or stops there with no progress (KVM's debug
   * registers): learnt at the first step-over; when true, step-overs need no z/Z.
   */
  stepPassesBreakpoint?: boolean;
}

const SHARED = new WeakMap<GdbClient, Shared>();

function shared(gdb: GdbClient): Shared {
  let s = SHARED.get(gdb);
  if (!s) {
    s = { breakpoints: new Map(), watchpoints: new Map(), holds: new Set(), intercepts: new Set(), held: new Map() };
    SHARED.set(gdb, s);
  }
  return s;
}

/** Bound on one single-step or interrupt round trip. */
const CONTROL_TIMEOUT = 10_000;
/** gdb's Z3 (read watchpoint) and the length of the ones the engine sets. */
export const READ_WATCHPOINT = 3;
export const WATCH_LENGTH = 8;

/**
 * One kind of stop point (hardware breakpoint, read watchpoint): its Z type and length, how many
 * runners of the connection inserted each address, and which ones this runner did.
 */
interface Points {
  type: 1 | 3;
  length: number;
  counts: Map<bigint, number>;
  mine: Set<bigint>;
}

export class BreakpointRunner {
  readonly #gdb: GdbClient;
  readonly #afterStop: () => void;
  readonly #shared: Shared;
  readonly #breakpoints: Points;
  readonly #watchpoints: Points;
  readonly stats: RunnerStats = { stops: 0, stepOvers: 0, otherStops: 0, held: 0, intercepted: 0, unreported: 0 };
  /** Every hold registered through this runner (its hits stay held after it is unregistered). */
  readonly #ownHolds = new Set<Hold>();

  /** `afterStop` runs after every stop, before registers or memory are looked at (cache invalidation). */
  constructor(gdb: GdbClient, afterStop: () => void) {
    this.#gdb = gdb;
    this.#afterStop = afterStop;
    this.#shared = shared(gdb);
    this.#breakpoints = { type: 1, length: 1, counts: this.#shared.breakpoints, mine: new Set() };
    this.#watchpoints = { type: READ_WATCHPOINT, length: WATCH_LENGTH, counts: this.#shared.watchpoints, mine: new Set() };
  }

  /** How many stop points (breakpoints and watchpoints) every runner of the connection has inserted. */
  pointsInUse(): number {
    return this.#shared.breakpoints.size + this.#shared.watchpoints.size;
  }

  get gdb(): GdbClient {
    return this.#gdb;
  }

  /** The addresses of the breakpoints this runner has inserted and not removed. */
  get breakpoints(): bigint[] {
    return [...this.#breakpoints.mine];
  }

  /** The addresses of the read watchpoints this runner has inserted and not removed. */
  get watchpoints(): bigint[] {
    return [...this.#watchpoints.mine];
  }

  /** Whether a vCPU is held (stopped on a hit kept for some runner, which takes it from there). */
  isHeld(thread: string): boolean {
    return this.#shared.held.has(thread);
  }

  /** Whether any runner on this connection has a breakpoint at `address`. */
  breakpointAt(address: bigint): boolean {
    return this.#shared.breakpoints.has(address);
  }

  /** Sets a read watchpoint on the 8 bytes at `address` (TCG: any number; KVM: a debug register). */
  watch(address: bigint): Promise<void> {
    return this.#add(this.#watchpoints, address);
  }

  unwatch(address: bigint): Promise<void> {
    return this.#drop(this.#watchpoints, address);
  }

  insert(address: bigint): Promise<void> {
    return this.#add(this.#breakpoints, address);
  }

  remove(address: bigint): Promise<void> {
    return this.#drop(this.#breakpoints, address);
  }

  /** Inserts the point in QEMU unless another runner has (counted per address for the connection). */
  async #add(p: Points, address: bigint): Promise<void> {
    if (p.mine.has(address)) return;
    const n = p.counts.get(address) ?? 0;
    if (n === 0) await this.#gdb.insertBreakpoint(p.type, address, p.length, { timeout: CONTROL_TIMEOUT });
    p.counts.set(address, n + 1);
    p.mine.add(address);
  }

  /** Removes it from QEMU when this runner was the last one to use it. */
  async #drop(p: Points, address: bigint): Promise<void> {
    if (!p.mine.has(address)) return;
    const n = p.counts.get(address) ?? 1;
    if (n <= 1) {
      await this.#gdb.removeBreakpoint(p.type, address, p.length, { timeout: CONTROL_TIMEOUT });
      p.counts.delete(address);
    } else p.counts.set(address, n - 1);
    p.mine.delete(address);
  }

  /** Removes every breakpoint and watchpoint; returns the errors instead of stopping at the first. */
  async removeAll(): Promise<unknown[]> {
    const errors: unknown[] = [];
    for (const p of [this.#breakpoints, this.#watchpoints]) {
      for (const a of [...p.mine]) {
        try {
          await this.#drop(p, a);
        } catch (err) {
          errors.push(err);
        }
      }
    }
    return errors;
  }

  /**
   * While this is registered, any runner on the same connection that meets a hit `hold.accept`
   * takes keeps that vCPU stopped instead of stepping it over; the owner picks it up with
   * runUntil() (held hits are offered to `accept` first). Returns the function that unregisters
   * (hits held already stay held until taken, released, or expired).
   */
  hold(hold: Hold): () => void {
    this.#shared.holds.add(hold);
    this.#ownHolds.add(hold);
    return () => this.#shared.holds.delete(hold);
  }

  /**
   * While this is registered, any runner on the same connection that meets a hit it does not
   * want offers it to `i` (after the holds); one `i` takes has new registers, and is resumed with
   * the others (stepped over a breakpoint at its new pc first). Returns the function that
   * unregisters.
   */
  intercept(i: Intercept): () => void {
    this.#shared.intercepts.add(i);
    return () => this.#shared.intercepts.delete(i);
  }

  /** A hit held for someone (see hold()) that `accept` takes, no longer held; null when none is. */
  async takeHeld(accept: (hit: Hit) => Promise<boolean>): Promise<Hit | null> {
    for (const [thread, h] of [...this.#shared.held]) {
      if (await accept(h.hit)) {
        this.#shared.held.delete(thread);
        return h.hit;
      }
    }
    return null;
  }

  /** Lets every vCPU held for this runner's holds go (stepped over its breakpoint). */
  async releaseHeld(): Promise<void> {
    for (const [thread, h] of [...this.#shared.held]) {
      // another runner's holds are its own to end: a vfork parent's return, held until its caller takes it
      if (!this.#ownHolds.has(h.hold)) continue;
      this.#shared.held.delete(thread);
      await this.stepOver(thread, h.hit.rip);
    }
  }

  /** Stops the VM if it runs (after a timeout or abort while waiting). */
  async halt(): Promise<void> {
    if (this.#gdb.state === 'running') {
      const stop = await this.#gdb.interrupt({ timeout: CONTROL_TIMEOUT });
      this.#afterStop();
      // the VM may have stopped by itself just before the interrupt, and that stop is the one
      // read here: a breakpoint is hit again on the next resume, a watchpoint (its instruction
      // done) never is, and its thread would run on with injected registers
      if (stop.watch) this.#shared.missed = stop;
    }
  }

  /**
   * Resumes the VM until `accept` takes a hit; returns it with the VM stopped. Hits it refuses are
   * stepped over (or held, for another runner). On timeout or abort the VM is stopped again and
   * the TimeoutError/AbortError thrown; `accept` may throw to end the wait too (the VM is stopped).
   */
  async runUntil(accept: (hit: Hit) => Promise<boolean>, opts: RunOptions): Promise<Hit> {
    const deadline = Date.now() + opts.timeout;
    // a hit held for us while someone else ran the VM
    const held = await this.takeHeld(accept);
    if (held) return held;
    const missed = this.#shared.missed;
    this.#shared.missed = undefined;
    if (missed) {
      // registers read now: the vCPU has not run since, unless someone wrote them (then no match)
      const hit = await this.#hitOf(missed);
      if (hit) {
        if (await accept(hit)) return hit;
        await this.#setAside(hit);
      }
    }
    for (;;) {
      if (opts.signal?.aborted) throw new AbortError(opts.what, { cause: opts.signal.reason });
      await this.#expireHolds();
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new TimeoutError(opts.what, opts.timeout);
      let wait = remaining;
      for (const h of this.#shared.held.values()) wait = Math.min(wait, Math.max(1, h.since + h.maxMs - Date.now()));
      let stop: StopReply;
      try {
        await this.#resume();
        stop = await this.#gdb.waitForStop({ timeout: wait, signal: opts.signal });
      } catch (err) {
        await this.halt().catch(() => undefined);
        if (err instanceof TimeoutError && err.operation === 'wait for stop') {
          if (wait < remaining) continue; // a hold expires: let it go and carry on
          throw new TimeoutError(opts.what, opts.timeout);
        }
        if (err instanceof AbortError) throw new AbortError(opts.what, { cause: opts.signal?.reason });
        throw err;
      }
      this.#afterStop();
      this.stats.stops++;
      const hit = await this.#hitOf(stop);
      if (hit && (await accept(hit))) return hit;
      const asideHit = hit ? await this.#setAside(hit) : false;
      // another vCPU may have come back from a watchpoint-mode call in the same instant: QEMU
      // reports one stop, and that watch stop never comes again
      const unreported = await this.#unreportedWatchHit(stop, hit?.thread ?? stop.thread);
      if (unreported) {
        if (await accept(unreported)) return unreported;
        await this.#setAside(unreported);
      }
      if (!hit) {
        this.stats.otherStops++;
        continue;
      }
      if (asideHit) continue;
      if (hit.watch !== undefined) continue;
      const step = await this.stepOver(hit.thread, hit.rip);
      // the instruction stepped may be the `ret` of a watchpoint-mode call (a gadget's `syscall;
      // ret` is also some other wrapper's return address, with someone's breakpoint on it): the
      // watch hit it made is this step's stop, and resuming would let its thread run on
      const landed = await this.#landedHit(hit.thread, step);
      if (landed) {
        if (await accept(landed)) return landed;
        await this.#setAside(landed);
      }
    }
  }

  /**
   * A vCPU, other than the one `stop` names, stopped just after a watchpoint-mode call's `ret`
   * (user mode, its stack pointer just above one of the watched slots), as a hit; else null. When
   * two vCPUs stop in the same instant QEMU reports one stop: a breakpoint hit left unreported is
   * hit again on resume, but a watch hit is done, and its thread would run on with the call's
   * stack pointer (a `ret` then pops the call's data).
   */
  async #unreportedWatchHit(stop: StopReply, reported: string | undefined): Promise<Hit | null> {
    if (this.#shared.watchpoints.size === 0) return null;
    this.#shared.threads ??= await this.#gdb.threads({ timeout: CONTROL_TIMEOUT });
    for (const thread of this.#shared.threads) {
      if (thread === reported || this.#shared.held.has(thread)) continue;
      const regs = await this.#gdb.readRegisters({ thread, timeout: CONTROL_TIMEOUT });
      if (!inUserMode(regs)) continue;
      const slot = (regs.get('rsp') ?? 0n) - 8n;
      if (!this.#shared.watchpoints.has(slot)) continue;
      this.stats.unreported++;
      return { thread, regs, rip: regs.get('rip') ?? 0n, stop, watch: slot };
    }
    return null;
  }

  /** Where a step-over left its vCPU, as a hit, while watchpoint-mode calls may be in flight; else null. */
  async #landedHit(thread: string, step: StopReply | undefined): Promise<Hit | null> {
    if (this.#shared.watchpoints.size === 0 || !step) return null;
    const regs = await this.#gdb.readRegisters({ thread, timeout: CONTROL_TIMEOUT });
    if (!inUserMode(regs)) return null;
    const at = step.watch?.address;
    const watch = at === undefined ? undefined : [...this.#shared.watchpoints.keys()].find((w) => at >= w && at < w + BigInt(WATCH_LENGTH));
    return { thread, regs, rip: regs.get('rip') ?? 0n, stop: step, watch };
  }

  /** Resumes every vCPU but the held ones. */
  async #resume(): Promise<void> {
    const held = this.#shared.held;
    if (held.size === 0) return this.#gdb.continue({ timeout: CONTROL_TIMEOUT });
    this.#shared.threads ??= await this.#gdb.threads({ timeout: CONTROL_TIMEOUT });
    const run = this.#shared.threads.filter((t) => !held.has(t));
    if (run.length === 0) {
      // nothing left to run: let one held vCPU go, the one whose hold was to end soonest (a
      // wait's short hold before a hold that keeps a thread from running with injected registers)
      const [thread, h] = [...held].sort((a, b) => a[1].since + a[1].maxMs - (b[1].since + b[1].maxMs))[0];
      held.delete(thread);
      await this.stepOver(thread, h.hit.rip);
      return this.#resume();
    }
    await this.#gdb.vCont(run.map((thread) => ({ action: 'c' as const, thread })), { timeout: CONTROL_TIMEOUT });
  }

  /** Holds the hit for another runner, or has an intercept deal with it; false when neither wants it. */
  async #setAside(hit: Hit): Promise<boolean> {
    return (await this.#holdFor(hit)) || (await this.#interceptFor(hit));
  }

  async #interceptFor(hit: Hit): Promise<boolean> {
    for (const i of this.#shared.intercepts) {
      if (!(await i.take(hit))) continue;
      this.stats.intercepted++;
      this.#afterStop();
      // resumed where a breakpoint is, the vCPU would stop there again at once
      const rip = await this.#gdb.readRegister('rip', { thread: hit.thread, timeout: CONTROL_TIMEOUT });
      if (this.#shared.breakpoints.has(rip)) await this.stepOver(hit.thread, rip);
      return true;
    }
    return false;
  }

  async #holdFor(hit: Hit): Promise<boolean> {
    for (const h of this.#shared.holds) {
      if (await h.accept(hit)) {
        this.#shared.held.set(hit.thread, { hit, since: Date.now(), maxMs: h.maxMs, hold: h });
        this.stats.held++;
        return true;
      }
    }
    return false;
  }

  async #expireHolds(): Promise<void> {
    const now = Date.now();
    for (const [thread, h] of [...this.#shared.held]) {
      if (now - h.since < h.maxMs) continue;
      this.#shared.held.delete(thread);
      await this.stepOver(thread, h.hit.rip);
    }
  }

  /**
   * The stop as a hit on one of the engine's breakpoints in user mode, or on one of its
   * watchpoints (in any mode: `accept` decides), or null for any other stop.
   */
  async #hitOf(stop: StopReply): Promise<Hit | null> {
    if (stop.kind === 'W' || stop.kind === 'X') throw new AbortError(`the VM ended (${stop.raw})`);
    if (stop.watch && stop.thread) {
      const at = stop.watch.address;
      const watch = [...this.#shared.watchpoints.keys()].find((w) => at >= w && at < w + BigInt(WATCH_LENGTH));
      if (watch === undefined || this.#shared.held.has(stop.thread)) return null;
      const regs = await this.#gdb.readRegisters({ thread: stop.thread, timeout: CONTROL_TIMEOUT });
      return { thread: stop.thread, regs, rip: regs.get('rip') ?? 0n, stop, watch };
    }
    const threads = stop.thread ? [stop.thread] : await this.#gdb.threads({ timeout: CONTROL_TIMEOUT });
    for (const thread of threads) {
      if (this.#shared.held.has(thread)) continue;
      const regs = await this.#gdb.readRegisters({ thread, timeout: CONTROL_TIMEOUT });
      const rip = regs.get('rip');
      if (rip !== undefined && this.#shared.breakpoints.has(rip) && inUserMode(regs)) return { thread, regs, rip, stop };
    }
    return null;
  }

  /**
   * Moves a vCPU stopped on a breakpoint at `address` past it: single-steps only that vCPU, with
   * the breakpoint removed (whichever runner owns it) and put back around the step unless a step
   * is known to pass it (TCG). The first step-over finds out: a step with the breakpoint in place,
   * then the pc read; if it did not move, the step is made again without the breakpoint.
   */
  async stepOver(thread: string, address: bigint): Promise<StopReply> {
    const had = this.#shared.breakpoints.has(address);
    if (had && this.#shared.stepPassesBreakpoint !== false) {
      let stop: StopReply;
      try {
        stop = await this.#gdb.step(thread, { timeout: CONTROL_TIMEOUT });
      } finally {
        this.#afterStop();
      }
      if (this.#shared.stepPassesBreakpoint === undefined) {
        const rip = await this.#gdb.readRegister('rip', { thread, timeout: CONTROL_TIMEOUT });
        this.#shared.stepPassesBreakpoint = rip !== address;
      }
      if (this.#shared.stepPassesBreakpoint) {
        this.stats.stepOvers++;
        return stop;
      }
    }
    if (had) await this.#gdb.removeBreakpoint(1, address, 1, { timeout: CONTROL_TIMEOUT });
    try {
      const stop = await this.#gdb.step(thread, { timeout: CONTROL_TIMEOUT });
      this.stats.stepOvers++;
      return stop;
    } finally {
      this.#afterStop();
      if (had) await this.#gdb.insertBreakpoint(1, address, 1, { timeout: CONTROL_TIMEOUT });
    }
  }
}
