/**
 * `cp LOCAL CONTAINER:PATH`: a file, a symlink, a tree or a tar stream on stdin into a container,
 * written by a process of the container (its mount namespace, root and credentials) under an fd
 * of its root. Each file is written to a temporary name in the target directory, given its mode,
 * synced and only then renamed to its name (replacing an existing file, as docker cp does): a
 * reader never sees half a file, and on failure the temporary file is removed (guest-write.ts).
 * Directories are merged into existing ones; symlinks are recreated as symlinks; other local file
 * types are reported. Files belong to the container process's user unless -a keeps the local owner.
 */
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import type { Vm } from '../vm';
import { VmiError } from '../errors';
import { CHUNK, emptyReport, inContainer, isPerEntry, MAX_DEPTH, MAX_ENTRIES, noteEntry, type CopyOptions, type CopyReport } from './copy-common';
import { GuestFs, O_DIRECTORY, O_PATH } from './guest-fs';
import { guestDirectory, writeGuestFile, type EntryMeta, type Source } from './guest-write';
import { extractTar } from './cp-in-tar';
import { lastComponent, printableName, unsafeComponent } from './names';

export type { Source } from './guest-write';

const ENOENT = 2;
const ENOTDIR = 20;

/** With -a, the local owner a guest entry keeps. */
function metaOf(st: { uid: number | bigint; gid: number | bigint }, opts: CopyOptions): EntryMeta {
  return opts.archive ? { owner: { uid: Number(st.uid), gid: Number(st.gid) } } : {};
}

/** A local symlink as a symlink in the guest, replacing what has its name. */
async function guestSymlink(fs: GuestFs, dirfd: number, name: Buffer, local: string | Buffer, opts: CopyOptions): Promise<void> {
  await fs.unlinkAt(dirfd, name);
  await fs.symlinkAt(readlinkSync(local, { encoding: 'buffer' }), dirfd, name);
  if (opts.archive) {
    const st = lstatSync(local);
    await fs.chown(dirfd, name, st.uid, st.gid);
  }
}

/** A local file as chunks (read with the fd held, so the file cannot be swapped half-way). */
async function* fileChunks(path: string | Buffer): AsyncGenerator<Buffer> {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(CHUNK);
    for (;;) {
      const n = readSync(fd, buf, 0, CHUNK, null);
      if (n === 0) return;
      yield Buffer.from(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
}

/** Re-cuts a stream (stdin) into chunks of CHUNK bytes. */
export async function* rechunk(source: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let size = 0;
  for await (const piece of source) {
    const b = Buffer.isBuffer(piece) ? piece : Buffer.from(piece);
    parts.push(b);
    size += b.length;
    while (size >= CHUNK) {
      const all = Buffer.concat(parts);
      yield all.subarray(0, CHUNK);
      parts = [all.subarray(CHUNK)];
      size = parts[0].length;
    }
  }
  if (size > 0) yield Buffer.concat(parts);
}

interface Walk {
  fs: GuestFs;
  report: CopyReport;
  opts: CopyOptions;
  entries: number;
}

async function walkLocal(w: Walk, local: string, dirfd: number, depth: number): Promise<void> {
  const names = readdirSync(local, { encoding: 'buffer' });
  for (const name of names) {
    const shown = `${local}/${printableName(name)}`;
    if (++w.entries > MAX_ENTRIES) throw new VmiError('ETOOBIG', `more than ${MAX_ENTRIES} entries: stopped at ${shown}`);
    const unsafe = unsafeComponent(name);
    if (unsafe) {
      noteEntry(w.report, 'skipped', shown, unsafe);
      continue;
    }
    const path = Buffer.concat([Buffer.from(local), Buffer.from('/'), name]);
    try {
      const st = lstatSync(path);
      if (st.isSymbolicLink()) {
        await guestSymlink(w.fs, dirfd, name, path, w.opts);
        w.report.symlinks++;
      } else if (st.isDirectory()) {
        if (depth + 1 > MAX_DEPTH) {
          noteEntry(w.report, 'skipped', shown, `deeper than ${MAX_DEPTH} levels`);
          continue;
        }
        const sub = await guestDirectory(w.fs, dirfd, name, st.mode & 0o7777, metaOf(st, w.opts));
        try {
          w.report.directories++;
          await walkLocal(w, path.toString(), sub, depth + 1);
        } finally {
          await w.fs.close(sub);
        }
      } else if (st.isFile()) {
        await writeGuestFile(w.fs, dirfd, name, fileChunks(path), st.mode & 0o7777, w.report, w.opts, undefined, metaOf(st, w.opts));
      } else {
        noteEntry(w.report, 'skipped', shown, 'not a file, directory or symlink: not copied');
      }
    } catch (err) {
      if (!isPerEntry(err)) throw err;
      noteEntry(w.report, 'errors', shown, (err as Error).message);
    }
  }
}

/**
 * Copies `local` to `path` in the container: into `path` when it is a directory there, else as
 * `path`. `local` is a file, a directory (copied whole), a symlink (copied as one unless
 * `followLink`), or `-` with `stdin`: a tar stream extracted into the directory `path`, or with
 * `raw` the bytes of one file.
 */
export async function copyToContainer(vm: Vm, local: string, container: string, path: string, opts: CopyOptions = {}, stdin?: Source): Promise<CopyReport> {
  let st: ReturnType<typeof statSync> | undefined;
  if (local === '-') {
    if (!stdin) throw new VmiError('EUSAGE', 'copying from - needs a stream to read');
  } else {
    st = lstatSync(local);
    if (st.isSymbolicLink() && opts.followLink) st = statSync(local);
    if (!st.isDirectory() && !st.isFile() && !st.isSymbolicLink()) throw new VmiError('EUSAGE', `${local} is neither a file, a directory nor a symlink`);
  }
  const report = emptyReport();
  return inContainer(vm, container, opts, async (fs, s) => {
    report.via = s.target.tgid;
    if (local === '-' && !opts.raw) {
      // docker's `cp - C:DIR`: DIR must exist and be a directory
      let dirfd: number;
      try {
        dirfd = await fs.resolve(path, O_PATH | O_DIRECTORY);
      } catch (err) {
        const errno = (err as { errno?: number }).errno;
        if (errno === ENOENT || errno === ENOTDIR) throw new VmiError('EUSAGE', `${JSON.stringify(path)} must be an existing directory to extract a tar stream into`, { cause: err });
        throw err;
      }
      report.resolvedInRoot = fs.inRootResolution;
      await extractTar(fs, dirfd, stdin!, report, opts);
      return report;
    }
    // PATH an existing directory: the copy goes in it, under the source's name
    let dirfd: number | undefined;
    let name: string | null = null;
    try {
      dirfd = await fs.resolve(path, O_PATH | O_DIRECTORY);
      name = local === '-' ? null : basename(local);
      if (!name) throw new VmiError('EUSAGE', `${JSON.stringify(path)} is a directory: name the file to write`);
    } catch (err) {
      const errno = (err as { errno?: number }).errno;
      if (errno !== ENOENT && errno !== ENOTDIR) throw err;
      name = lastComponent(path);
      if (!name) throw new VmiError('EUSAGE', `${JSON.stringify(path)} names no file`);
      const parent = path.replace(/\/+$/, '').replace(/[^/]*$/, '') || (path.startsWith('/') ? '/' : '.');
      dirfd = await fs.resolve(parent, O_PATH | O_DIRECTORY);
    }
    report.resolvedInRoot = fs.inRootResolution;
    const nameBytes = Buffer.from(name);
    const unsafe = unsafeComponent(nameBytes);
    if (unsafe) throw new VmiError('EUSAGE', `cannot copy to ${JSON.stringify(name)}: ${unsafe}`);
    if (local === '-') {
      await writeGuestFile(fs, dirfd, nameBytes, rechunk(stdin!), 0o644, report, opts);
    } else if (st!.isSymbolicLink()) {
      await guestSymlink(fs, dirfd, nameBytes, local, opts);
      report.symlinks++;
    } else if (st!.isFile()) {
      await writeGuestFile(fs, dirfd, nameBytes, fileChunks(local), Number(st!.mode) & 0o7777, report, opts, Number(st!.size), metaOf(st!, opts));
    } else {
      const sub = await guestDirectory(fs, dirfd, nameBytes, Number(st!.mode) & 0o7777, metaOf(st!, opts));
      report.directories++;
      await walkLocal({ fs, report, opts, entries: 0 }, local, sub, 0);
    }
    return report;
  });
}
