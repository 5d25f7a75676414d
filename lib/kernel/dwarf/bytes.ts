/**
 * Little-endian readers over a Buffer for the DWARF and ELF parsers. 64-bit values come back as
 * bigint (addresses); `u64n` gives a number for fields known to stay below 2^53 (section offsets
 * and sizes), and throws when that assumption is broken rather than silently rounding.
 */
import { ValidationError } from '../../errors';

export function u64(buf: Buffer, off: number): bigint {
  return buf.readBigUInt64LE(off);
}

export function u64n(buf: Buffer, off: number): number {
  const lo = buf.readUInt32LE(off);
  const hi = buf.readUInt32LE(off + 4);
  if (hi >= 0x200000) throw new ValidationError(`64-bit value at offset ${off} does not fit a double`);
  return hi * 0x100000000 + lo;
}

/** Reads an unsigned LEB128; `pos[0]` is advanced. Values past 2^53 are clamped by the caller's checks. */
export function uleb(buf: Buffer, pos: number[]): number {
  let p = pos[0];
  let b = buf[p++];
  if (b < 0x80) {
    pos[0] = p;
    return b;
  }
  let result = b & 0x7f;
  let mul = 128;
  for (;;) {
    b = buf[p++];
    if (b === undefined) throw new ValidationError('LEB128 runs past the end of its section');
    result += (b & 0x7f) * mul;
    if (b < 0x80) break;
    mul *= 128;
  }
  pos[0] = p;
  return result;
}

/** Reads a signed LEB128 as a bigint (enumerator values may use the full 64 bits). */
export function slebBig(buf: Buffer, pos: number[]): bigint {
  let p = pos[0];
  let result = 0n;
  let shift = 0n;
  let b: number;
  do {
    b = buf[p++];
    if (b === undefined) throw new ValidationError('LEB128 runs past the end of its section');
    result |= BigInt(b & 0x7f) << shift;
    shift += 7n;
  } while (b & 0x80);
  if (b & 0x40) result -= 1n << shift;
  pos[0] = p;
  return result;
}

/** Reads an unsigned LEB128 as a bigint. */
export function ulebBig(buf: Buffer, pos: number[]): bigint {
  let p = pos[0];
  let result = 0n;
  let shift = 0n;
  let b: number;
  do {
    b = buf[p++];
    if (b === undefined) throw new ValidationError('LEB128 runs past the end of its section');
    result |= BigInt(b & 0x7f) << shift;
    shift += 7n;
  } while (b & 0x80);
  pos[0] = p;
  return result;
}

/** Signed LEB128 as a number (for values known to be small, like bounds and offsets). */
export function sleb(buf: Buffer, pos: number[]): number {
  return Number(slebBig(buf, pos));
}
