/**
 * Little-endian 64-bit reads into a bigint at a third of Buffer.readBigUInt64LE's cost: Node builds
 * that one from two 32-bit halves with several intermediate bigints, and a listing of a thousand
 * tasks reads tens of thousands of pointers (those bigints were the largest part of its garbage).
 */
const scratch8 = new Uint8Array(8);
const scratch64 = new BigUint64Array(scratch8.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The unsigned 64-bit little-endian value at `offset` of `buf`; RangeError outside it, as Buffer's. */
export function readU64LE(buf: Uint8Array, offset: number): bigint {
  if (!LITTLE_ENDIAN) return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).readBigUInt64LE(offset);
  if (!(offset >= 0 && offset + 8 <= buf.length) || !Number.isInteger(offset)) {
    throw new RangeError(`offset ${offset} is out of range for an 8-byte read of ${buf.length} bytes`);
  }
  scratch8[0] = buf[offset];
  scratch8[1] = buf[offset + 1];
  scratch8[2] = buf[offset + 2];
  scratch8[3] = buf[offset + 3];
  scratch8[4] = buf[offset + 4];
  scratch8[5] = buf[offset + 5];
  scratch8[6] = buf[offset + 6];
  scratch8[7] = buf[offset + 7];
  return scratch64[0];
}
