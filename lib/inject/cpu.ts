/**
 * Who a stopped vCPU is running, from its registers: the address space (CR3, whose PCID bits and
 * KPTI user bit are masked off, against the physical address of mm->pgd) and the exact task (the
 * per-CPU `current_task`, read at the CPU's per-CPU base: GS.base in kernel mode, KERNEL_GS_BASE
 * in user mode, where `swapgs` has put the user's GS base in front).
 */
import { CommandError, ValidationError } from '../errors';
import type { CallOptions } from '../util/deadline';
import { decodeCr3 } from '../memory/x86-64/cr3';
import type { Kernel } from '../kernel/kernel';
import { perCpuAddress, perCpuSlot, type PerCpuSlot } from '../kernel/helpers/percpu';
import type { GdbClient } from '../transport/gdb';

export type Registers = ReadonlyMap<string, bigint>;

/** Privilege level 3: the vCPU is in user mode. */
export function inUserMode(regs: Registers): boolean {
  const cs = regs.get('cs');
  return cs !== undefined && (cs & 3n) === 3n;
}

/** The top-level page table CR3 points at (kernel half under KPTI), without PCID. */
export function cr3Root(cr3: bigint): bigint {
  return decodeCr3(cr3).root;
}

/** Physical address of the process's page table root (mm->pgd). */
export async function mmRoot(kernel: Kernel, mm: bigint, opts: CallOptions = {}): Promise<bigint> {
  const pgd = await kernel.readU64(mm + BigInt(kernel.profile.fieldOffset('mm_struct', 'pgd')), opts);
  if (!kernel.isKernelPointer(pgd)) throw new ValidationError(`bad mm->pgd 0x${pgd.toString(16)}`, mm);
  return cr3Root((await kernel.space.translate(pgd, opts)).physical);
}

/** Where the `current_task` pointer lies (lib/kernel/helpers/percpu.ts). */
export function currentTaskSlot(kernel: Kernel): PerCpuSlot {
  const cached = kernel.cache.get('inject.currentTaskSlot') as PerCpuSlot | undefined;
  if (cached) return cached;
  const p = kernel.profile;
  let slot: PerCpuSlot;
  if (p.hasSymbol('current_task')) {
    slot = perCpuSlot(kernel, 'current_task');
  } else if (p.hasSymbol('pcpu_hot')) {
    // 6.2 moved current_task into struct pcpu_hot
    slot = perCpuSlot(kernel, 'pcpu_hot', BigInt(p.fieldOffset('pcpu_hot', 'current_task')));
  } else {
    throw new ValidationError('the profile has neither current_task nor pcpu_hot: cannot tell which task a vCPU runs');
  }
  kernel.cache.set('inject.currentTaskSlot', slot);
  return slot;
}

/**
 * Physical addresses of `current_task` slots by virtual address. The per-CPU areas are mapped once
 * at boot and never move, so the translation outlives the caches dropped each time the VM runs:
 * after a stop, finding the current task is one 8-byte read.
 */
const SLOT_PHYSICAL = new WeakMap<Kernel, Map<bigint, bigint>>();

/** The task (struct task_struct *) the stopped vCPU whose registers these are is running. */
export async function currentTask(kernel: Kernel, regs: Registers, opts: CallOptions = {}): Promise<bigint> {
  const slot = currentTaskSlot(kernel);
  let at = slot.offset;
  if (!slot.absolute) {
    const base = inUserMode(regs) ? regs.get('k_gs_base') : regs.get('gs_base');
    if (base === undefined || !kernel.isKernelPointer(base)) {
      throw new ValidationError(`the vCPU's per-CPU base is not a kernel address (${base === undefined ? 'missing' : `0x${base.toString(16)}`})`);
    }
    at = perCpuAddress(slot, base);
  }
  let slots = SLOT_PHYSICAL.get(kernel);
  if (!slots) SLOT_PHYSICAL.set(kernel, (slots = new Map()));
  let physical = slots.get(at);
  if (physical === undefined || (at & 7n) !== 0n) {
    physical = (await kernel.space.translate(at, opts)).physical;
    if (slots.size < 4096) slots.set(at, physical);
  }
  if ((at & 7n) !== 0n) return kernel.readU64(at, opts);
  return (await kernel.physical.read(physical, 8, opts)).readBigUInt64LE(0);
}

/**
 * Writes registers of a vCPU that has not run since `base` was read from it: one `G` packet built
 * from `base` with `changes` applied (one round trip less than the client's read-modify-write);
 * when `base` lacks a register of the layout, the client's own write. Returns the registers now set.
 */
export async function writeRegistersOver(gdb: GdbClient, vcpu: string, base: Registers, changes: Registers): Promise<Map<string, bigint>> {
  const layout = gdb.registerLayout;
  if (layout.registers.some((r) => !base.has(r.name))) {
    await gdb.writeRegisters(changes, { thread: vcpu, timeout: 10_000 });
  } else {
    const block = Buffer.alloc(layout.size);
    for (const r of layout.registers) block.set(layout.encodeValue(r, changes.get(r.name) ?? base.get(r.name)!), r.offset);
    await gdb.selectThread(vcpu, 'g', { timeout: 10_000 });
    const reply = await gdb.command(`G${block.toString('hex')}`, { timeout: 10_000 });
    if (reply !== 'OK') throw new CommandError('G', reply, `writing the registers of vCPU ${vcpu}: ${reply}`);
  }
  return new Map([...base, ...changes]);
}

/**
 * The first vCPU whose registers `match` takes (each read once with `g`), skipping those `skip`
 * names; null when none does. For finding a thread stopped somewhere, not for a stop's own vCPU.
 */
export async function findOnVcpus(gdb: GdbClient, match: (regs: Map<string, bigint>) => Promise<boolean>, skip?: (thread: string) => boolean): Promise<{ thread: string; regs: Map<string, bigint> } | null> {
  for (const thread of await gdb.threads({ timeout: 10_000 })) {
    if (skip?.(thread)) continue;
    const regs = await gdb.readRegisters({ thread, timeout: 10_000 });
    if (await match(regs)) return { thread, regs };
  }
  return null;
}

/** A thread vmictl drives: its task, and the physical root of its page table. */
export interface DrivenThread {
  task: bigint;
  root: bigint;
}

/** Whether a stop is `thread` in user mode at `rip` with stack pointer `sp` (back from an injected call). */
export async function isThreadAt(kernel: Kernel, hit: { rip: bigint; regs: Registers }, thread: DrivenThread, rip: bigint, sp: bigint): Promise<boolean> {
  const r = hit.regs;
  if (hit.rip !== rip || r.get('rsp') !== sp || !inUserMode(r)) return false;
  if (cr3Root(r.get('cr3') ?? 0n) !== thread.root) return false;
  return (await currentTask(kernel, r)) === thread.task;
}
