/**
 * `cp CONTAINER:PATH LOCAL`: a file, a symlink or a tree out of a container, read by a process of
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
import { direntKind, fileKind, GuestFs, type GuestStat, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_PATH, O_RDONLY, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from './guest-fs';
import { createLocalDirectory, createLocalFile, createLocalSymlink, finishLocalDirectory, type Owner } from './local-writer';
import { tarOut } from './cp-out-tar';
import { joinInside, lastComponent, printableName, unsafeComponent } from './names';

const ELOOP = 40;

/** The guest owner a host copy gets: with -a, and only when vmictl can give any (root). */
function ownerFor(st: GuestStat, opts: CopyOptions): Owner | undefined {
  return opts.archive && process.getuid?.() === 0 ? { uid: st.uid, gid: st.gid } : undefined;
}

/** Where the tar stream (or with `raw`, the bytes of a single file) goes when the destination is `-`. */
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
  f.commit(st.mode, ownerFor(st, opts));
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
      const type = await direntKind(fs, dirfd, e);
      if (type === 'symlink') {
        const owner = w.opts.archive ? ownerFor(await fs.lstatAt(dirfd, e.name), w.opts) : undefined;
        createLocalSymlink(target, await fs.readlinkAt(dirfd, e.name), w.opts.force ?? false, owner);
        report.symlinks++;
      } else if (type === 'directory') {
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
          if (made) finishLocalDirectory(target, st.mode, ownerFor(st, w.opts));
        } finally {
          await fs.close(sub);
        }
      } else if (type === 'file') {
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
 * a tar stream, or with `raw` the content of a single file). A directory is copied whole; it lands
 * in `local` when that does not exist yet, else in `local/<its name>`. A symlink named as `path`
 * is copied as a symlink unless `followLink`.
 */
export async function copyFromContainer(vm: Vm, container: string, path: string, local: string, opts: CopyOptions = {}, sink?: Sink): Promise<CopyReport> {
  if (local === '-' && !sink) throw new VmiError('EUSAGE', 'copying to - needs somewhere to write');
  return inContainer(vm, container, opts, async (fs, s) => {
    const report = emptyReport();
    report.via = s.target.tgid;
    return copyOut(fs, path, local, report, opts, sink);
  });
}

/** `local`, or `local/<path's last component>` when `local` is an existing directory. */
function destination(path: string, local: string, shown: string): Buffer {
  if (!isDirectory(local)) return Buffer.from(local);
  const name = lastComponent(path);
  if (!name) throw new VmiError('EUSAGE', `${shown} has no name to copy to in ${local}: name a destination that does not exist yet`);
  return joinInside(local, [Buffer.from(name)]);
}

/**
 * Opens the source: followed through a final symlink with `followLink`, else with O_NOFOLLOW
 * (ELOOP: it is a symlink, given as its target's bytes).
 */
async function openSource(fs: GuestFs, path: string, opts: CopyOptions): Promise<{ fd: number } | { link: Buffer; st: GuestStat }> {
  if (opts.followLink) return { fd: await fs.resolve(path, O_RDONLY | O_NONBLOCK) };
  try {
    return { fd: await fs.resolve(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW) };
  } catch (err) {
    if ((err as { errno?: number }).errno !== ELOOP) throw err;
  }
  const l = await fs.resolve(path, O_PATH | O_NOFOLLOW);
  const st = await fs.fstat(l);
  if ((st.mode & S_IFMT) !== S_IFLNK) throw new VmiError('EUSAGE', `${JSON.stringify(path)} cannot be opened (ELOOP) and is not a symlink`);
  return { link: await fs.readlinkAt(l, Buffer.alloc(0)), st };
}

/** The copy itself, with the container's GuestFs (see copyFromContainer). */
export async function copyOut(fs: GuestFs, path: string, local: string, report: CopyReport, opts: CopyOptions, sink?: Sink): Promise<CopyReport> {
  const src = await openSource(fs, path, opts);
  report.resolvedInRoot = fs.inRootResolution;
  const shown = JSON.stringify(path);
  if (local === '-' && !opts.raw) {
    await tarOut(fs, src, lastComponent(path) ?? '.', report, opts, sink!);
    return report;
  }
  if ('link' in src) {
    if (local === '-') throw new VmiError('EUSAGE', `${shown} is a symlink: --raw copies a file (use -L to follow it)`);
    createLocalSymlink(destination(path, local, shown), src.link, opts.force ?? false, ownerFor(src.st, opts));
    report.symlinks++;
    return report;
  }
  const { fd } = src;
  const st = await fs.fstat(fd);
  const kind = st.mode & S_IFMT;
  if (kind === S_IFREG) {
    if (local === '-') {
      await pump(fs, fd, st.size, shown, sink!, report, opts);
      report.files++;
      return report;
    }
    await copyFileOut(fs, fd, st, shown, destination(path, local, shown), report, opts);
    return report;
  }
  if (kind !== S_IFDIR) throw new VmiError('EUSAGE', `${shown} is a ${fileKind(st.mode)}: only files, directories and symlinks are copied`);
  if (local === '-') throw new VmiError('EUSAGE', `${shown} is a directory: --raw copies a file (without it, - is a tar stream)`);
  const dest = destination(path, local, shown);
  const made = createLocalDirectory(dest, opts.force ?? false);
  report.directories++;
  await walk({ fs, report, opts, entries: 0 }, fd, dest, path.replace(/\/+$/, ''), 0);
  if (made) finishLocalDirectory(dest, st.mode, ownerFor(st, opts));
  return report;
}
