/**
 * Turning a CR3 value into the physical address of the top-level table.
 *
 * - Bits 11:0 hold the PCID (CR4.PCIDE = 1) or the PWT/PCD cache bits: never address bits.
 * - Bit 63 (and LAM's 62:61) are write-time hints/modes, outside the address bits anyway.
 * - With KPTI, Linux runs user mode on a second top-level table right after the kernel's one (the
 *   PGD is allocated as 8 KiB, order 1, whenever page-table isolation is built in) and selects it by
 *   setting bit 12 (PTI_USER_PGTABLE_BIT). The user copy maps almost no kernel memory, so for
 *   introspection we walk the kernel copy, which maps user memory too: bit 12 is cleared by default.
 *   A kernel built without PTI allocates 4 KiB PGDs where bit 12 is a real address bit: pass
 *   `keepKptiBit` for such guests.
 */
import { physicalAddressMask } from './entry';

/** Bit 12 of CR3 selects the KPTI user page table. */
export const CR3_KPTI_USER_BIT = 1n << 12n;
export const CR3_PCID_MASK = 0xfffn;

export interface DecodedCr3 {
  /** Physical address of the top-level table that will be walked. */
  root: bigint;
  /** Low 12 bits as found (PCID, or PWT/PCD flags without PCIDs). */
  pcid: number;
  /** Whether CR3 pointed at the KPTI user half (bit 12 set). */
  kptiUser: boolean;
}

export interface Cr3Options {
  /** MAXPHYADDR of the vCPU; 52 (the architectural maximum) when unknown. */
  physicalBits?: number;
  /** Keep bit 12 as an address bit (kernels without page-table isolation). */
  keepKptiBit?: boolean;
}

export function decodeCr3(cr3: bigint, opts: Cr3Options = {}): DecodedCr3 {
  const value = BigInt.asUintN(64, cr3);
  const kptiUser = (value & CR3_KPTI_USER_BIT) !== 0n;
  let root = value & physicalAddressMask(opts.physicalBits ?? 52);
  if (!opts.keepKptiBit) root &= ~CR3_KPTI_USER_BIT;
  return { root, pcid: Number(value & CR3_PCID_MASK), kptiUser };
}
