/**
 * What keeps the other journals' targets in place while `vmictl recover` runs the VM for one of
 * them. Recovering a target that is inside an injected call means running the VM until the call
 * ends; meanwhile another dead injection's target, parked with injected registers or coming back
 * from its own injected call, would run its process's code with them (in watchpoint mode its
 * return address has no breakpoint at all). So, for as long as recovery runs, every such target
 * has stop points where an injection leaves it (R, R − 2, the gadget's `syscall` and `ret`), and a
 * hold that keeps its vCPU stopped when it gets there, until its own recovery takes it.
 */
import type { Kernel } from '../kernel/kernel';
import { findTask } from '../kernel/helpers/task';
import { GdbBreakpointError, type GdbClient } from '../transport/gdb';
import { cr3Root, currentTask, findOnVcpus, inUserMode, mmRoot } from './cpu';
import { watchSlotOf } from './gadget';
import { fromHex, type JournalEntry } from './journal';
import type { BreakpointRunner, Hit } from './runner';
import { userRegisters } from './site';

/** A hold that lasts until recovery ends. */
const HELD_FOREVER = 2 ** 31;

/** Where a dead injection's target may stand in user mode: its return address, call stack pointer and gadget. */
export interface InjectedPlaces {
  R: bigint;
  callSp: bigint;
  gadget?: bigint;
}

/**
 * Whether user registers (ip, sp) are those of a thread in an injected call, or about to make one
 * or just back: at R − 2 or R with callSp, or (watchpoint mode) at the gadget's `syscall` or `ret`
 * with the slot's address.
 */
export function inInjectedCall(ip: bigint | undefined, sp: bigint | undefined, p: InjectedPlaces): boolean {
  if ((ip === p.R || ip === p.R - 2n) && sp === p.callSp) return true;
  return p.gadget !== undefined && (ip === p.gadget || ip === p.gadget + 2n) && sp === watchSlotOf(p.callSp);
}

/** A hit of `task` (page table `root`) in user mode where an injected call leaves it. */
export async function isInjectedHit(kernel: Kernel, h: Hit, task: bigint, root: bigint, p: InjectedPlaces): Promise<boolean> {
  if (!inUserMode(h.regs) || !inInjectedCall(h.rip, h.regs.get('rsp'), p) || cr3Root(h.regs.get('cr3') ?? 0n) !== root) return false;
  return (await currentTask(kernel, h.regs)) === task;
}

/** `task` stopped in user mode on a vCPU at one of its injected places, as a hit; null when it is not. */
export async function findParkedAt(kernel: Kernel, gdb: GdbClient, task: bigint, p: InjectedPlaces): Promise<Hit | null> {
  const found = await findOnVcpus(gdb, async (regs) => inUserMode(regs) && inInjectedCall(regs.get('rip'), regs.get('rsp'), p) && (await currentTask(kernel, regs)) === task);
  if (!found) return null;
  return { ...found, rip: found.regs.get('rip')!, stop: gdb.lastStop ?? { kind: 'T', swbreak: false, hwbreak: false, registersByNumber: new Map(), registers: new Map(), fields: new Map(), raw: '' } };
}

/** A journal's places, read from it. */
export function placesOf(e: JournalEntry): InjectedPlaces {
  return { R: fromHex(e.returnAddress), callSp: fromHex(e.callSp), gadget: e.gadget === undefined ? undefined : fromHex(e.gadget) };
}

/** The stop points that catch a thread at every place of `p`. */
function stopPointsOf(p: InjectedPlaces): bigint[] {
  return p.gadget === undefined ? [p.R, p.R - 2n] : [p.R, p.R - 2n, p.gadget, p.gadget + 2n];
}

interface Guarded {
  journal: string;
  task: bigint;
  root: bigint;
  places: InjectedPlaces;
}

export class RecoverGuard {
  readonly #kernel: Kernel;
  readonly #runner: BreakpointRunner;
  readonly #targets: Map<string, Guarded>;
  #unhold: (() => void) | undefined;

  private constructor(kernel: Kernel, runner: BreakpointRunner, targets: Map<string, Guarded>) {
    this.#kernel = kernel;
    this.#runner = runner;
    this.#targets = targets;
  }

  /**
   * Guards the targets of `journals` that still stand in an injection (parked in user mode, or
   * inside an injected call); the others need nothing. Where the stop points do not all fit (KVM's
   * four debug registers), no guard is made: null, and the reason.
   */
  static async start(kernel: Kernel, runner: BreakpointRunner, journals: ReadonlyMap<string, JournalEntry>): Promise<{ guard: RecoverGuard } | { guard: null; reason: string }> {
    const targets = new Map<string, Guarded>();
    for (const [journal, e] of journals) {
      const task = fromHex(e.target.task);
      if ((await findTask(kernel, e.target.pid)) !== task) continue;
      const mm = await kernel.readU64(task + BigInt(kernel.profile.fieldOffset('task_struct', 'mm')));
      if (!kernel.isKernelPointer(mm)) continue;
      const root = await mmRoot(kernel, mm);
      const places = placesOf(e);
      const parked = await findParkedAt(kernel, runner.gdb, task, places);
      if (!parked) {
        const regs = await userRegisters(kernel, task);
        if (!regs || !inInjectedCall(regs.u64('ip'), regs.u64('sp'), places)) continue;
      }
      targets.set(journal, { journal, task, root, places });
    }
    // the children its session was driving (vfork) stand where it does, in their own address space
    for (const [journal, e] of journals) {
      const places: InjectedPlaces = { R: fromHex(e.returnAddress), callSp: fromHex(e.callSp) };
      for (const c of e.children ?? []) {
        const task = fromHex(c.task);
        if ((await findTask(kernel, c.pid)) !== task) continue;
        const mm = await kernel.readU64(task + BigInt(kernel.profile.fieldOffset('task_struct', 'mm')));
        if (!kernel.isKernelPointer(mm)) continue;
        targets.set(`${journal}#${c.pid}`, { journal, task, root: await mmRoot(kernel, mm), places });
      }
    }
    const guard = new RecoverGuard(kernel, runner, targets);
    try {
      for (const t of targets.values()) for (const at of stopPointsOf(t.places)) await runner.insert(at);
    } catch (err) {
      await runner.removeAll();
      if (err instanceof GdbBreakpointError) return { guard: null, reason: `the stop points to hold ${targets.size} targets at once do not fit (${err.message})` };
      throw err;
    }
    guard.#unhold = runner.hold({ accept: (h) => guard.#accepts(h), maxMs: HELD_FOREVER });
    return { guard };
  }

  /** How many targets it guards. */
  get size(): number {
    return this.#targets.size;
  }

  async #accepts(h: Hit): Promise<boolean> {
    for (const t of this.#targets.values()) if (await isInjectedHit(this.#kernel, h, t.task, t.root, t.places)) return true;
    return false;
  }

  /** The journal's target (and the children of its session) are dealt with: their hits are no longer held. */
  finished(journal: string): void {
    for (const [key, t] of this.#targets) if (t.journal === journal) this.#targets.delete(key);
  }

  /**
   * Ends the guard: its stop points are removed. With `release`, vCPUs still held are let go (every
   * target was dealt with); without, they stay stopped (a recovery failed, and the VM stays stopped).
   */
  async stop(release: boolean): Promise<unknown[]> {
    this.#unhold?.();
    this.#unhold = undefined;
    const errors: unknown[] = [];
    if (release) await this.#runner.releaseHeld().catch((e) => errors.push(e));
    errors.push(...(await this.#runner.removeAll()));
    return errors;
  }
}
