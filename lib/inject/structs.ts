/**
 * The user-space structures that injected syscalls fill in, decoded from the bytes read back from
 * the target. Their layouts are the x86-64 user ABI (fixed, unlike kernel-internal structs), so
 * they are written down here rather than taken from the kernel profile. Guest data is untrusted:
 * every length is checked against the buffer, strings are cut at NUL and at their field size.
 */
import { ValidationError } from '../errors';
import { guestString } from '../util/escape';

/** struct new_utsname (include/uapi/linux/utsname.h): six char[65] fields. */
export const UTSNAME_FIELD_LENGTH = 65;
export const UTSNAME_FIELDS = ['sysname', 'nodename', 'release', 'version', 'machine', 'domainname'] as const;
export const UTSNAME_SIZE = UTSNAME_FIELD_LENGTH * UTSNAME_FIELDS.length;

export type Utsname = Record<(typeof UTSNAME_FIELDS)[number], string>;

/** A char[size] field: the bytes up to the first NUL (or all of them), decoded as UTF-8. */
export function fixedString(bytes: Uint8Array, offset: number, size: number): string {
  const end = Math.min(offset + size, bytes.length);
  let nul = offset;
  while (nul < end && bytes[nul] !== 0) nul++;
  return guestString(bytes.subarray(offset, nul));
}

export function parseUtsname(bytes: Uint8Array): Utsname {
  if (bytes.length < UTSNAME_SIZE) throw new ValidationError(`struct new_utsname needs ${UTSNAME_SIZE} bytes, got ${bytes.length}`);
  const out = {} as Utsname;
  UTSNAME_FIELDS.forEach((name, i) => {
    out[name] = fixedString(bytes, i * UTSNAME_FIELD_LENGTH, UTSNAME_FIELD_LENGTH);
  });
  return out;
}

/** d_type values (include/linux/fs_types.h, DT_*). */
export const DIRENT_TYPES: Readonly<Record<number, string>> = Object.freeze({
  0: 'unknown',
  1: 'fifo',
  2: 'char',
  4: 'dir',
  6: 'block',
  8: 'file',
  10: 'symlink',
  12: 'socket',
  14: 'whiteout',
});

export interface Dirent64 {
  ino: bigint;
  /** Position of the next entry (opaque cookie for lseek). */
  off: bigint;
  /** DT_* value. */
  type: number;
  /** `file`, `dir`, `symlink`… (`unknown` for anything else). */
  typeName: string;
  /** Guest-controlled: escape before printing. */
  name: string;
}

/** offsetof(struct linux_dirent64, d_name): d_ino (8), d_off (8), d_reclen (2), d_type (1). */
export const DIRENT64_NAME_OFFSET = 19;

/**
 * The entries in what getdents64 wrote: `length` bytes (its return value) of struct
 * linux_dirent64 records, each `d_reclen` long. A record that does not fit, or is shorter than its
 * header plus one NUL, is corrupt.
 */
export function parseDirents64(bytes: Uint8Array, length = bytes.length): Dirent64[] {
  if (!Number.isInteger(length) || length < 0 || length > bytes.length) {
    throw new ValidationError(`getdents64 returned ${length} bytes but the buffer holds ${bytes.length}`);
  }
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, length);
  const out: Dirent64[] = [];
  for (let pos = 0; pos < length;) {
    if (length - pos < DIRENT64_NAME_OFFSET + 1) throw new ValidationError(`truncated linux_dirent64 at offset ${pos}`);
    const reclen = buf.readUInt16LE(pos + 16);
    if (reclen < DIRENT64_NAME_OFFSET + 1 || pos + reclen > length) {
      throw new ValidationError(`linux_dirent64 at offset ${pos} has d_reclen ${reclen} (${length - pos} bytes left)`);
    }
    const type = buf[pos + 18];
    out.push({
      ino: buf.readBigUInt64LE(pos),
      off: buf.readBigInt64LE(pos + 8),
      type,
      typeName: DIRENT_TYPES[type] ?? 'unknown',
      name: fixedString(buf, pos + DIRENT64_NAME_OFFSET, reclen - DIRENT64_NAME_OFFSET),
    });
    pos += reclen;
  }
  return out;
}

/** Longest path the kernel accepts (PATH_MAX, NUL included). */
export const PATH_MAX = 4096;

/** A string as the kernel reads it: UTF-8 with a terminating NUL; a NUL inside is refused. */
export function cString(s: string, max = PATH_MAX): Buffer {
  if (s.includes('\0')) throw new RangeError(`a C string cannot contain NUL: ${JSON.stringify(s)}`);
  const b = Buffer.from(`${s}\0`, 'utf8');
  if (b.length > max) throw new RangeError(`string of ${b.length} bytes is longer than ${max}`);
  return b;
}
