/** Canonical-address rules: bits 63..(virtualBits-1) must all equal bit (virtualBits-1). */

export function isCanonical(va: bigint, virtualBits: number): boolean {
  if (va < 0n || va >= 1n << 64n) return false;
  const top = va >> BigInt(virtualBits - 1);
  return top === 0n || top === (1n << BigInt(65 - virtualBits)) - 1n;
}

/** Sign-extends a `virtualBits`-wide address to its 64-bit canonical form. */
export function canonicalize(va: bigint, virtualBits: number): bigint {
  const width = BigInt(virtualBits);
  const low = va & ((1n << width) - 1n);
  return (low >> (width - 1n)) === 1n ? low | (((1n << 64n) - 1n) ^ ((1n << width) - 1n)) : low;
}
