/**
 * Hex and little-endian helpers for the gdb remote protocol, which carries memory and register
 * contents as hex digit pairs and register values in target byte order (little-endian on x86).
 */
import { ProtocolError } from '../../errors';

const HEX_CHARS = /^[0-9a-fA-F]*$/;

/** Decodes an even-length hex string strictly; anything else is a ProtocolError naming `what`. */
export function decodeHex(hex: string | Buffer, what: string): Buffer {
  const text = typeof hex === 'string' ? hex : hex.toString('latin1');
  const out = Buffer.from(text, 'hex');
  // Buffer.from(…, 'hex') silently stops at the first bad digit: a length check catches that.
  if (out.length * 2 !== text.length) throw new ProtocolError(`${what}: not a hex string`, text);
  return out;
}

export function encodeHex(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('hex');
}

/** Parses an unsigned hex number (no prefix) into a bigint. */
export function parseHexBigInt(text: string, what: string): bigint {
  if (text.length === 0 || text.length > 32 || !HEX_CHARS.test(text)) {
    throw new ProtocolError(`${what}: not a hex number`, text);
  }
  return BigInt(`0x${text}`);
}

/** Parses an unsigned hex number that fits a JS number. */
export function parseHexNumber(text: string, what: string): number {
  if (text.length === 0 || text.length > 13 || !HEX_CHARS.test(text)) {
    throw new ProtocolError(`${what}: not a hex number`, text);
  }
  return Number.parseInt(text, 16);
}

/** Reads `bytes` as an unsigned little-endian integer of any width. */
export function readUIntLE(bytes: Uint8Array): bigint {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]);
  return value;
}

/** Writes `value` as an unsigned little-endian integer of `size` bytes (two's complement if negative). */
export function writeUIntLE(value: bigint, size: number): Buffer {
  const out = Buffer.alloc(size);
  let v = BigInt.asUintN(size * 8, value);
  for (let i = 0; i < size; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** Formats an address for a packet: lowercase hex, no prefix. */
export function hexAddress(address: bigint): string {
  return address.toString(16);
}
