/**
 * Where a dead injection's target stands when it is still in the injection: in user mode at its
 * return address R or at R − 2 with the call's stack pointer, or (watchpoint mode) at the gadget's
 * `syscall` or `ret` with the slot's address. `vmictl recover` finds targets and their forked
 * children by these places.
 */
import type { Kernel } from '../kernel/kernel';
import type { GdbClient } from '../transport/gdb';
import { cr3Root, currentTask, findOnVcpus, inUserMode } from './cpu';
import { watchSlotOf } from './gadget';
import { fromHex, type JournalEntry } from './journal';
import type { Hit } from './runner';

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

