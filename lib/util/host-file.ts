/**
 * Durable writes of host files: write() may take less than it was given (a full disk, a signal),
 * and a new or renamed name is only on disk once its directory is synced.
 */
import { closeSync, constants, fsyncSync, openSync, writeSync } from 'node:fs';

/** write(2) as node:fs gives it: returns the bytes taken. */
export type WriteFn = (fd: number, data: Buffer, offset: number, length: number) => number;

/** Writes all of `data` to `fd`, looping on short writes; a write that takes nothing is an error. */
export function writeFully(fd: number, data: Buffer, write: WriteFn = writeSync): void {
  for (let at = 0; at < data.length;) {
    const n = write(fd, data, at, data.length - at);
    if (!(n > 0)) throw Object.assign(new Error(`write() took ${n} of ${data.length - at} bytes`), { code: 'EIO', syscall: 'write' });
    at += n;
  }
}

/** fsync of a directory: makes the creation, rename or removal of a name in it durable. */
export function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
