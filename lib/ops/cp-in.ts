/**
 * `cp LOCAL CONTAINER:PATH`: a file, stdin, or (with -r) a tree into a container, written by a
 * process of the container (its mount namespace, root and credentials) under an fd of its root.
 * Each file is written to a temporary name in the target directory, given its mode, synced and
 * only then renamed to its name (replacing an existing file, as docker cp does): a reader never
 * sees half a file, and on failure the temporary file is removed. Directories are merged into
 * existing ones; symlinks are recreated as symlinks; other local file types are reported.
 */
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Vm } from '../vm';
import { VmiError } from '../errors';
import { CHUNK, emptyReport, inContainer, isPerEntry, MAX_DEPTH, MAX_ENTRIES, noteEntry, type CopyOptions, type CopyReport } from './copy-common';
import { OperationError } from './errors';
import { GuestFs, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_PATH, O_RDONLY, O_WRONLY } from './guest-fs';
import { lastComponent, printableName, unsafeComponent } from './names';

const EEXIST = 17;
const ENOENT = 2;
const ENOTDIR = 20;

/** Reads a local source in chunks of up to CHUNK bytes. */
export type Source = AsyncIterable<Buffer>;

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

/**
 * Writes `chunks` to `name` in the guest directory `dirfd`, all or nothing: temporary file,
 * fchmod, fsync, rename. Returns the bytes written.
 */
async function writeGuestFile(fs: GuestFs, dirfd: number, name: Buffer, chunks: Source, mode: number, report: CopyReport, opts: CopyOptions, total?: number): Promise<void> {
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
    await fs.fchmod(fd, mode);
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

interface Walk {
  fs: GuestFs;
  report: CopyReport;
  opts: CopyOptions;
  entries: number;
}

/** Makes (or opens an existing) directory `name` in `dirfd`; returns an fd of it. */
async function guestDirectory(fs: GuestFs, dirfd: number, name: Buffer, mode: number): Promise<number> {
  const e = await fs.mkdirAt(dirfd, name, mode | 0o700);
  if (e && e !== EEXIST) throw new VmiError('ESYSCALL', `mkdirat ${printableName(name)}: errno ${e}`);
  // O_NOFOLLOW: an existing symlink in its place is refused, not followed
  const fd = await fs.openAt(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!e) await fs.fchmod(fd, mode);
  return fd;
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
        await w.fs.unlinkAt(dirfd, name);
        await w.fs.symlinkAt(readlinkSync(path, { encoding: 'buffer' }), dirfd, name);
        w.report.symlinks++;
      } else if (st.isDirectory()) {
        if (depth + 1 > MAX_DEPTH) {
          noteEntry(w.report, 'skipped', shown, `deeper than ${MAX_DEPTH} levels`);
          continue;
        }
        const sub = await guestDirectory(w.fs, dirfd, name, st.mode & 0o7777);
        try {
          w.report.directories++;
          await walkLocal(w, path.toString(), sub, depth + 1);
        } finally {
          await w.fs.close(sub);
        }
      } else if (st.isFile()) {
        await writeGuestFile(w.fs, dirfd, name, fileChunks(path), st.mode & 0o7777, w.report, w.opts);
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
 * Copies `local` (a file, `-` with `stdin` for a stream, or with `recursive` a directory) to `path`
 * in the container: into `path` when it is a directory there, else as `path`.
 */
export async function copyToContainer(vm: Vm, local: string, container: string, path: string, opts: CopyOptions = {}, stdin?: Source): Promise<CopyReport> {
  let st: ReturnType<typeof statSync> | undefined;
  if (local === '-') {
    if (!stdin) throw new VmiError('EUSAGE', 'copying from - needs a stream to read');
  } else {
    st = statSync(local);
    if (st.isDirectory() && !opts.recursive) throw new VmiError('EUSAGE', `${local} is a directory (use -r)`);
    if (!st.isDirectory() && !st.isFile()) throw new VmiError('EUSAGE', `${local} is neither a file nor a directory`);
  }
  const report = emptyReport();
  return inContainer(vm, container, opts, async (fs, s) => {
    report.via = s.target.tgid;
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
    } else if (st!.isFile()) {
      await writeGuestFile(fs, dirfd, nameBytes, fileChunks(local), Number(st!.mode) & 0o7777, report, opts, Number(st!.size));
    } else {
      const sub = await guestDirectory(fs, dirfd, nameBytes, Number(st!.mode) & 0o7777);
      report.directories++;
      await walkLocal({ fs, report, opts, entries: 0 }, local, sub, 0);
    }
    return report;
  });
}
