/**
 * Writing into a container, by a process of the container under an fd of a directory of its root:
 * a file all or nothing (temporary name, fchmod, fsync, rename, as `docker cp` replaces an existing
 * one), a directory made or merged into, its owner given with -a. Ownership is changed by the
 * container's own process, so only as far as that process may (an unprivileged one: EPERM).
 */
import { randomBytes } from 'node:crypto';
import { VmiError } from '../errors';
import type { CopyOptions, CopyReport } from './copy-common';
import { OperationError } from './errors';
import { GuestFs, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_RDONLY, O_WRONLY } from './guest-fs';
import { printableName } from './names';

const EEXIST = 17;
const ENOENT = 2;

/** Chunks of a local source (a file, stdin, a tar entry's data). */
export type Source = AsyncIterable<Buffer>;

/** What a written entry keeps besides its mode: its owner (-a) and its mtime (from a tar). */
export interface EntryMeta {
  owner?: { uid: number; gid: number };
  mtime?: number;
}

/**
 * Writes `chunks` to `name` in the guest directory `dirfd`, all or nothing: temporary file,
 * fchown (with an owner), fchmod, utimensat (with an mtime), fsync, rename.
 */
export async function writeGuestFile(fs: GuestFs, dirfd: number, name: Buffer, chunks: Source, mode: number, report: CopyReport, opts: CopyOptions, total?: number, meta: EntryMeta = {}): Promise<void> {
  const tmp = Buffer.from(`.vmictl-cp-${randomBytes(6).toString('hex')}.tmp`);
  const fd = await fs.openAt(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  let written = 0;
  try {
    // the next chunk may be slow to come (a pipe): the VM runs meanwhile
    const it = chunks[Symbol.asyncIterator]();
    for (;;) {
      const next = await fs.s.awaitHost(it.next());
      if (next.done) break;
      const chunk = next.value;
      await fs.writeAll(fd, chunk);
      written += chunk.length;
      report.bytes += chunk.length;
      opts.onProgress?.(report.bytes, total);
    }
    // chown before chmod: chown clears the set-id bits the mode may give
    if (meta.owner) await fs.chown(fd, null, meta.owner.uid, meta.owner.gid);
    await fs.fchmod(fd, mode);
    if (meta.mtime !== undefined) await fs.futimens(fd, meta.mtime);
    await fs.fsync(fd);
    await fs.close(fd);
    await fs.renameAt(dirfd, tmp, name);
    report.files++;
  } catch (err) {
    if (fs.closed) {
      throw new OperationError(`copying to ${printableName(name)} failed: ${(err as Error).message}`, {
        done: [`${written} bytes written to the temporary file ${printableName(tmp)} in the target directory`],
        notDone: ['the temporary file could not be removed (the injection ended): remove it by hand'],
      }, { cause: err });
    }
    await fs.close(fd).catch(() => undefined);
    const e = await fs.unlinkAt(dirfd, tmp).catch(() => -1);
    if (e && e !== ENOENT) {
      throw new OperationError(`copying to ${printableName(name)} failed: ${(err as Error).message}`, { notDone: [`removing the temporary file ${printableName(tmp)} (errno ${e})`] }, { cause: err });
    }
    throw err;
  }
}

/**
 * Makes (or opens an existing) directory `name` in `dirfd`; returns an fd of it. A new one gets
 * `mode` at once unless `keepWritable` (a tar's 0555 directory still has entries to come).
 */
export async function guestDirectory(fs: GuestFs, dirfd: number, name: Buffer, mode: number, meta: EntryMeta = {}, keepWritable = false): Promise<number> {
  const e = await fs.mkdirAt(dirfd, name, mode | 0o700);
  if (e && e !== EEXIST) throw new VmiError('ESYSCALL', `mkdirat ${printableName(name)}: errno ${e}`);
  // O_NOFOLLOW: an existing symlink in its place is refused, not followed
  const fd = await fs.openAt(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  try {
    if (meta.owner) await fs.chown(fd, null, meta.owner.uid, meta.owner.gid);
    if (!e && !keepWritable) await fs.fchmod(fd, mode);
  } catch (err) {
    await fs.close(fd);
    throw err;
  }
  return fd;
}

