/**
 * Per-CPU variables: a CPU's copy of `name` lies at its per-CPU base (__per_cpu_offset[cpu], GS.base
 * on x86-64) plus a displacement that depends on how the kernel linked its per-CPU section:
 *
 * - zero-based (x86-64 up to 6.14): the symbol is the variable's offset in the per-CPU area, a
 *   small number that KASLR does not move;
 * - linked at the section's kernel address (x86-64 since the zero-based section was dropped, 7.x
 *   here): the symbol is an ordinary, slid kernel address in [__per_cpu_start, __per_cpu_end), and
 *   the base is the area minus __per_cpu_start, so that base + address (mod 2^64) is the copy;
 * - no per-CPU section (!SMP): the symbol is the one and only copy.
 *
 * Told apart by where the symbol lies, not by version.
 */
import type { Kernel } from '../kernel';
import { START_KERNEL_MAP } from '../kaslr';

export interface PerCpuSlot {
  /** Added (mod 2^64) to a CPU's per-CPU base; the address itself when `absolute`. */
  offset: bigint;
  /** The variable has one copy at `offset` (no per-CPU areas). */
  absolute: boolean;
}

/** Where per-CPU variable `name` (plus `extra` bytes into it) lies; see the file comment. */
export function perCpuSlot(kernel: Kernel, name: string, extra = 0n): PerCpuSlot {
  const p = kernel.profile;
  const link = p.symbol(name);
  if (link < START_KERNEL_MAP) return { offset: link + extra, absolute: false };
  const inSection = p.hasSymbol('__per_cpu_start') && p.hasSymbol('__per_cpu_end')
    && link >= p.symbol('__per_cpu_start') && link < p.symbol('__per_cpu_end');
  return { offset: kernel.symbol(name) + extra, absolute: !inSection };
}

/** The address of a CPU's copy, given that CPU's per-CPU base. */
export function perCpuAddress(slot: PerCpuSlot, base: bigint): bigint {
  return slot.absolute ? slot.offset : BigInt.asUintN(64, base + slot.offset);
}
