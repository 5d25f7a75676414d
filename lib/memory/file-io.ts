/**
 * Positional reads and writes on a FileHandle that always transfer the whole span.
 *
 * Node 20's FileHandle.read() ignores a bigint position (it silently reads at the file's current
 * offset instead: found while reading /proc/<tid>/mem, where it shows as EIO at offset 0), so
 * positions are passed as numbers when they are safe integers and through the callback fs.read()
 * (which handles bigint) otherwise. Short transfers are retried until done or end of file.
 */
import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

function readOnce(fh: FileHandle, buf: Buffer, offset: number, length: number, position: bigint): Promise<number> {
  if (position <= BigInt(Number.MAX_SAFE_INTEGER)) {
    // A synchronous pread: guest RAM (/proc/<tid>/mem) and dumps answer in microseconds, while an
    // async read costs a trip through libuv's thread pool each, which dominated `ps` (thousands of
    // page reads per command).
    try {
      return Promise.resolve(fs.readSync(fh.fd, buf, offset, length, Number(position)));
    } catch (err) {
      return Promise.reject(err);
    }
  }
  return new Promise((resolve, reject) => {
    fs.read(fh.fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function writeOnce(fh: FileHandle, buf: Buffer, offset: number, length: number, position: bigint): Promise<number> {
  if (position <= BigInt(Number.MAX_SAFE_INTEGER)) {
    return fh.write(buf, offset, length, Number(position)).then((r) => r.bytesWritten);
  }
  // fs.write's typings take a number position; larger offsets cannot occur on files we write.
  return Promise.reject(new RangeError(`write position 0x${position.toString(16)} beyond 2^53`));
}

/**
 * Fills `length` bytes of a new buffer from `position`. Returns fewer bytes only at end of file;
 * the caller decides whether that is an error.
 */
export async function preadFull(fh: FileHandle, position: bigint, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = await readOnce(fh, buf, done, length - done, position + BigInt(done));
    if (n === 0) return buf.subarray(0, done);
    done += n;
  }
  return buf;
}

/** Host file positions up to which synchronous preads take a number position. */
export const MAX_SYNC_POSITION = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Fills `buf` from `position` with synchronous preads (guest RAM and dumps answer in microseconds);
 * returns the bytes read, fewer only at end of file. `position + buf.length` must be at most
 * MAX_SYNC_POSITION.
 */
export function readFullSync(fd: number, buf: Buffer, position: bigint): number {
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, buf.length - done, Number(position) + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** Writes all of `data` at `position`; throws if the file stops taking bytes. */
export async function pwriteFull(fh: FileHandle, position: bigint, data: Buffer): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const n = await writeOnce(fh, data, done, data.length - done, position + BigInt(done));
    if (n === 0) throw new Error(`short write at 0x${(position + BigInt(done)).toString(16)}`);
    done += n;
  }
}
