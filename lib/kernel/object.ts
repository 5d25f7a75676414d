/**
 * A typed kernel object: a struct read once from guest memory, whose fields are decoded from the
 * bytes already read (drgn's Object, without a round trip per field). Field paths are those of
 * Profile.field(): `'pid'`, `'thread_pid'`, `'numbers[1].nr'`, through anonymous members.
 */
import { MissingSymbolError, ValidationError } from '../errors';
import type { FieldLayout, Profile } from './profile';
import { readU64LE } from '../util/bytes';

export class KObject {
  constructor(
    readonly profile: Profile,
    readonly type: string,
    readonly address: bigint,
    /** The bytes of the struct from its start (possibly only a prefix covering the fields read); read-only, possibly a view of the page cache. */
    readonly bytes: Buffer,
    /**
     * When only parts of `bytes` were read (Kernel.peekSpans), those parts as [start, end) byte
     * offsets; a field outside them is refused like one beyond the bytes read.
     */
    readonly spans?: ReadonlyArray<readonly [number, number]>,
  ) {}

  field(path: string): FieldLayout {
    return this.profile.field(this.type, path);
  }

  /** Address of a member inside this object (for embedded list_heads and the like). */
  addressOf(path: string): bigint {
    return this.address + BigInt(this.field(path).offset);
  }

  #at(path: string, size: number): number {
    const offset = this.field(path).offset;
    if (offset + size > this.bytes.length || (this.spans !== undefined && !within(this.spans, offset, offset + size))) {
      throw new MissingSymbolError(`${this.type}.${path}`, `${this.type}.${path} lies outside the ${this.bytes.length} bytes read`);
    }
    return offset;
  }

  u8(path: string): number { return this.bytes.readUInt8(this.#at(path, 1)); }
  u16(path: string): number { return this.bytes.readUInt16LE(this.#at(path, 2)); }
  u32(path: string): number { return this.bytes.readUInt32LE(this.#at(path, 4)); }
  i32(path: string): number { return this.bytes.readInt32LE(this.#at(path, 4)); }
  u64(path: string): bigint { return readU64LE(this.bytes, this.#at(path, 8)); }
  i64(path: string): bigint { return this.bytes.readBigInt64LE(this.#at(path, 8)); }
  ptr(path: string): bigint { return this.u64(path); }

  /** An unsigned integer field of any width (1, 2, 4 or 8 bytes) as its type says, as a bigint. */
  uint(path: string): bigint {
    const f = this.field(path);
    switch (f.size) {
      case 1: return BigInt(this.u8(path));
      case 2: return BigInt(this.u16(path));
      case 4: return BigInt(this.u32(path));
      case 8: return this.u64(path);
      default: throw new ValidationError(`${this.type}.${path} is ${f.size} bytes, not an integer`);
    }
  }

  /** A char array field as a string, up to its NUL (or its size). */
  chars(path: string): string {
    const f = this.field(path);
    const start = this.#at(path, f.size);
    const raw = this.bytes.subarray(start, start + f.size);
    const nul = raw.indexOf(0);
    return raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8');
  }

  /** The raw bytes of a field (a copy: `bytes` may be a view of the page cache). */
  raw(path: string): Buffer {
    const f = this.field(path);
    const start = this.#at(path, f.size);
    return Buffer.from(this.bytes.subarray(start, start + f.size));
  }
}

/** Whether [start, end) lies inside one of `spans` (a plain loop: this runs for every field read). */
function within(spans: ReadonlyArray<readonly [number, number]>, start: number, end: number): boolean {
  for (let i = 0; i < spans.length; i++) {
    const s = spans[i];
    if (start >= s[0] && end <= s[1]) return true;
  }
  return false;
}
