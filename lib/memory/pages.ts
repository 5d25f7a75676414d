/** 4 KiB page arithmetic shared by the cache and the address spaces (bigint addresses). */
export const PAGE_SHIFT = 12n;
export const PAGE_SIZE = 4096;
export const PAGE_SIZE_N = 4096n;
export const PAGE_MASK = ~(PAGE_SIZE_N - 1n);

export function pageBase(address: bigint): bigint {
  return address & PAGE_MASK;
}

export function pageOffset(address: bigint): number {
  return Number(address & (PAGE_SIZE_N - 1n));
}

/** Bytes from `address` to the end of its page, capped at `length`. */
export function bytesInPage(address: bigint, length: number): number {
  return Math.min(length, PAGE_SIZE - pageOffset(address));
}
