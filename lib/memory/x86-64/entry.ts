/**
 * Bits of an x86-64 paging-structure entry (SDM vol. 3, 4.5). Only what translation needs and what
 * callers want reported; accessed/dirty/global and protection keys are left alone.
 */
export const PTE_PRESENT = 1n << 0n;
export const PTE_WRITABLE = 1n << 1n;
export const PTE_USER = 1n << 2n;
/** PS at levels 3 and 2 (large page); at level 1 the same bit is PAT. */
export const PTE_PAGE_SIZE = 1n << 7n;
export const PTE_NX = 1n << 63n;

/** Bits 51:12 can hold a physical address; MAXPHYADDR narrows that further. */
export function physicalAddressMask(physicalBits: number): bigint {
  if (!Number.isInteger(physicalBits) || physicalBits < 32 || physicalBits > 52) {
    throw new RangeError(`physical address width ${physicalBits} not in 32..52`);
  }
  return ((1n << BigInt(physicalBits)) - 1n) & ~0xfffn;
}

/** Address bits 51:12 regardless of MAXPHYADDR: set bits above MAXPHYADDR are reserved. */
export const ARCH_ADDRESS_BITS = ((1n << 52n) - 1n) & ~0xfffn;
