/**
 * `cp CONTAINER:PATH LOCAL`: a file or (with -r) a tree out of a container, read by a process of
 * the container (its mount namespace and root) under an fd of its root (guest-fs.ts), and written
 * on the host only below the destination the user named (names.ts, local-writer.ts): each guest
 * name must be one safe component, directories are entered by fd with O_NOFOLLOW, symlinks are
 * recreated as symlinks (never followed), devices, fifos and sockets are reported, not copied.
 * Existing local files are not replaced unless `force`. A file gives at most the bytes its fstat
 * said (UNSIZED_FILE_MAX when that is 0, as in /proc), and the whole copy at most `maxBytes`: a
 * file that grows, or a kernel that lies, cannot fill the host's disk.
 */
import { statSync } from 'node:fs';
import type { Vm } from '../vm';
import { LimitExceededError, VmiError } from '../errors';
import { CHUNK, emptyReport, inContainer, isPerEntry, MAX_DEPTH, MAX_ENTRIES, noteEntry, UNSIZED_FILE_MAX, type CopyOptions, type CopyReport } from './copy-common';
import { FileGrewError } from './errors';
import { fileKind, GuestFs, type GuestStat, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from './guest-fs';
import { createLocalDirectory, createLocalFile, createLocalSymlink, finishLocalDirectory } from './local-writer';
import { joinInside, lastComponent, printableName, unsafeComponent } from './names';

/** DT_* of getdents64. */
const DT_DIR = 4;
const DT_REG = 8;
const DT_LNK = 10;
const DT_UNKNOWN = 0;

/** Where bytes out of a single file go when the destination is `-`. */
export type Sink = (chunk: Buffer) => Promise<void>;

/** Whether the user's destination is a directory (a symlink the user named is the user's own choice: followed). */
function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Copies the open regular file `fd` (of fstat size `size`) to `write`, chunk by chunk. */
async function pump(fs: GuestFs, fd: number, size: bigint, shown: string, write: (b: Buffer) => Promise<void> | void, report: CopyReport, opts: CopyOptions): Promise<void> {
  const total = size > 0n && size < BigInt(Number.MAX_SAFE_INTEGER) ? Number(size) : undefined;
  const bound = size > 0n ? size : BigInt(UNSIZED_FILE_MAX);
  let got = 0n;
  for (;;) {
    // one byte more than the bound: a file that ends at its size reads 0 next, one that grew does not
    const want = bound - got + 1n;
    const b = await fs.read(fd, want < BigInt(CHUNK) ? Number(want) : CHUNK);
    if (b.length === 0) return;
    got += BigInt(b.length);
    if (got > bound) {
      throw new FileGrewError(shown, size, size > 0n ? `gave more than the ${size} bytes fstat said (it grew while copied)` : `fstat says 0 bytes and it gave more than ${UNSIZED_FILE_MAX}`);
    }
    if (opts.maxBytes !== undefined && report.bytes + b.length > opts.maxBytes) throw new LimitExceededError('bytes copied out of the container', opts.maxBytes, '--max-bytes', ' bytes');
    // a slow consumer (a pager) must not hold the VM stopped
    await fs.s.awaitHost(write(b));
    report.bytes += b.length;
    opts.onProgress?.(report.bytes, total);
  }
}

async function copyFileOut(fs: GuestFs, fd: number, st: GuestStat, shown: string, local: Buffer, report: CopyReport, opts: CopyOptions): Promise<void> {
  const f = createLocalFile(local, opts.force ?? false);
  try {
    await pump(fs, fd, st.size, shown, (b) => f.write(b), report, opts);
  } catch (err) {
    f.abort();
    throw err;
  }
  f.commit(st.mode);
  report.files++;
}

interface Walk {
  fs: GuestFs;
  report: CopyReport;
  opts: CopyOptions;
  entries: number;
}

/** Copies the entries of the open guest directory `dirfd` into the local directory `local`. */
async function walk(w: Walk, dirfd: number, local: Buffer, shown: string, depth: number): Promise<void> {
  const { fs, report } = w;
  const list = await fs.entries(dirfd);
  for (const e of list) {
    const path = `${shown}/${printableName(e.name)}`;
    if (++w.entries > MAX_ENTRIES) throw new VmiError('ETOOBIG', `more than ${MAX_ENTRIES} entries: stopped at ${path}`);
    const unsafe = unsafeComponent(e.name);
    if (unsafe) {
      noteEntry(report, 'skipped', path, unsafe);
      continue;
    }
    const target = joinInside(local, [e.name]);
    try {
      let type = e.type;
      if (type === DT_UNKNOWN) {
        const st = await fs.lstatAt(dirfd, e.name);
        type = (st.mode & S_IFMT) === S_IFDIR ? DT_DIR : (st.mode & S_IFMT) === S_IFREG ? DT_REG : (st.mode & S_IFMT) === S_IFLNK ? DT_LNK : -1;
      }
      if (type === DT_LNK) {
        createLocalSymlink(target, await fs.readlinkAt(dirfd, e.name), w.opts.force ?? false);
        report.symlinks++;
      } else if (type === DT_DIR) {
        if (depth + 1 > MAX_DEPTH) {
          noteEntry(report, 'skipped', path, `deeper than ${MAX_DEPTH} levels`);
          continue;
        }
        // O_NOFOLLOW: a directory swapped for a symlink since getdents64 is refused, not entered
        const sub = await fs.openAt(dirfd, e.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        try {
          const st = await fs.fstat(sub);
          const made = createLocalDirectory(target, w.opts.force ?? false);
          report.directories++;
          await walk(w, sub, target, path, depth + 1);
          if (made) finishLocalDirectory(target, st.mode);
        } finally {
          await fs.close(sub);
        }
      } else if (type === DT_REG) {
        const fd = await fs.openAt(dirfd, e.name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
        try {
          const st = await fs.fstat(fd);
          if ((st.mode & S_IFMT) !== S_IFREG) noteEntry(report, 'skipped', path, `${fileKind(st.mode)}: not copied`);
          else await copyFileOut(fs, fd, st, path, target, report, w.opts);
        } finally {
          await fs.close(fd);
        }
      } else {
        const st = await fs.lstatAt(dirfd, e.name).catch(() => undefined);
        noteEntry(report, 'skipped', path, `${st ? fileKind(st.mode) : `type ${e.type}`}: not copied`);
      }
    } catch (err) {
      if (!isPerEntry(err)) throw err;
      noteEntry(report, 'errors', path, (err as Error).message);
    }
  }
}

/**
 * Copies `path` of the container to `local` (a file or directory of the host; `-` with `sink` for
 * the content of a single file). A directory needs `recursive`; it lands in `local` when that does
 * not exist yet, else in `local/<its name>`.
 */
export async function copyFromContainer(vm: Vm, container: string, path: string, local: string, opts: CopyOptions = {}, sink?: Sink): Promise<CopyReport> {
  if (local === '-' && !sink) throw new VmiError('EUSAGE', 'copying to - needs somewhere to write');
  return inContainer(vm, container, opts, async (fs, s) => {
    const report = emptyReport();
    report.via = s.target.tgid;
    return copyOut(fs, path, local, report, opts, sink);
  });
}

/** The copy itself, with the container's GuestFs (see copyFromContainer). */
export async function copyOut(fs: GuestFs, path: string, local: string, report: CopyReport, opts: CopyOptions, sink?: Sink): Promise<CopyReport> {
  const fd = await fs.resolve(path, O_RDONLY | O_NONBLOCK);
  report.resolvedInRoot = fs.inRootResolution;
  const st = await fs.fstat(fd);
  const kind = st.mode & S_IFMT;
  const shown = JSON.stringify(path);
  if (kind === S_IFREG) {
    if (local === '-') {
      await pump(fs, fd, st.size, shown, sink!, report, opts);
      report.files++;
      return report;
    }
    let dest: Buffer = Buffer.from(local);
    if (isDirectory(local)) {
      const name = lastComponent(path);
      if (!name) throw new VmiError('EUSAGE', `${shown} has no file name to copy to`);
      dest = joinInside(local, [Buffer.from(name)]);
    }
    await copyFileOut(fs, fd, st, shown, dest, report, opts);
    return report;
  }
  if (kind !== S_IFDIR) throw new VmiError('EUSAGE', `${shown} is a ${fileKind(st.mode)}: only files and directories are copied`);
  if (!opts.recursive) throw new VmiError('EUSAGE', `${shown} is a directory (use -r)`);
  if (local === '-') throw new VmiError('EUSAGE', 'a directory cannot be copied to -');
  let dest: Buffer = Buffer.from(local);
  if (isDirectory(local)) {
    const name = lastComponent(path);
    if (!name) throw new VmiError('EUSAGE', `copying the container's / needs a destination that does not exist yet`);
    dest = joinInside(local, [Buffer.from(name)]);
  }
  const made = createLocalDirectory(dest, opts.force ?? false);
  report.directories++;
  await walk({ fs, report, opts, entries: 0 }, fd, dest, path.replace(/\/+$/, ''), 0);
  if (made) finishLocalDirectory(dest, st.mode);
  return report;
}
