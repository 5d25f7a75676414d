/**
 * `cp CONTAINER:PATH -`: PATH as a tar stream (tar.ts), as `docker cp` writes it: the top entry is
 * PATH's last component, a directory is walked whole, symlinks are entries of their own (never
 * followed below the top), devices, fifos and sockets are reported, not copied. Guest names go
 * into the archive as the bytes they are (only a message escapes them), each one safe component.
 *
 * A header says a file's size before its data: the fstat size is used, and a file that then gives
 * fewer bytes is padded with zeros (and reported), one that grew is cut at that size, so the stream
 * stays a valid archive. A file whose fstat size is 0 (procfs) is read first, up to
 * UNSIZED_FILE_MAX, and then written with the size it had.
 */
import { LimitExceededError, VmiError } from '../errors';
import { CHUNK, isPerEntry, MAX_DEPTH, MAX_ENTRIES, noteEntry, UNSIZED_FILE_MAX, type CopyOptions, type CopyReport } from './copy-common';
import { FileGrewError } from './errors';
import { direntKind, fileKind, GuestFs, type GuestStat, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, S_IFDIR, S_IFMT, S_IFREG } from './guest-fs';
import { printableName, unsafeComponent } from './names';
import { tarEnd, tarHeader, tarPadding, type TarKind } from './tar';

interface Out {
  fs: GuestFs;
  report: CopyReport;
  opts: CopyOptions;
  sink: (chunk: Buffer) => Promise<void>;
  entries: number;
}

/** Hands `b` to the sink; a slow consumer (a pipe to tar -x) must not hold the VM stopped. */
async function emit(o: Out, b: Buffer): Promise<void> {
  await o.fs.s.awaitHost(o.sink(b));
}

function header(path: Buffer, kind: TarKind, st: GuestStat, size: number, linkname?: Buffer): Buffer {
  return tarHeader({ path, kind, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size, mtime: st.mtime, linkname });
}

function countBytes(o: Out, n: number): void {
  if (o.opts.maxBytes !== undefined && o.report.bytes + n > o.opts.maxBytes) throw new LimitExceededError('bytes copied out of the container', o.opts.maxBytes, '--max-bytes', ' bytes');
}

/** Reads all of an fstat-size-0 file, at most UNSIZED_FILE_MAX bytes. */
async function readUnsized(o: Out, fd: number, shown: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  for (;;) {
    const b = await o.fs.read(fd, CHUNK);
    if (b.length === 0) return Buffer.concat(parts);
    got += b.length;
    if (got > UNSIZED_FILE_MAX) throw new FileGrewError(shown, 0n, `fstat says 0 bytes and it gave more than ${UNSIZED_FILE_MAX}`);
    parts.push(b);
  }
}

/** One regular file's entry: header, data (exactly the size the header says), padding. */
async function fileEntry(o: Out, fd: number, st: GuestStat, path: Buffer, shown: string): Promise<void> {
  if (st.size > BigInt(Number.MAX_SAFE_INTEGER) || st.size < 0n) throw new VmiError('ETOOBIG', `${shown}: fstat says ${st.size} bytes: not copied`);
  if (st.size === 0n) {
    const data = await readUnsized(o, fd, shown);
    countBytes(o, data.length);
    await emit(o, Buffer.concat([header(path, 'file', st, data.length), data, tarPadding(data.length)]));
    o.report.bytes += data.length;
    o.report.files++;
    return;
  }
  const size = Number(st.size);
  countBytes(o, size);
  await emit(o, header(path, 'file', st, size));
  let left = size;
  try {
    while (left > 0) {
      const b = await o.fs.read(fd, Math.min(left, CHUNK));
      if (b.length === 0) break;
      await emit(o, b);
      left -= b.length;
      o.report.bytes += b.length;
      o.opts.onProgress?.(o.report.bytes);
    }
    if (left > 0) noteEntry(o.report, 'errors', shown, `gave ${size - left} of the ${size} bytes fstat said (it shrank while copied): padded with zeros`);
  } catch (err) {
    // the header is out: the entry is completed with zeros so that the stream stays readable
    if (!isPerEntry(err)) throw err;
    noteEntry(o.report, 'errors', shown, `${(err as Error).message}: the rest padded with zeros`);
  }
  for (; left > 0; left -= Math.min(left, CHUNK)) await emit(o, Buffer.alloc(Math.min(left, CHUNK)));
  await emit(o, tarPadding(size));
  o.report.files++;
}

/** The entries of the open guest directory `dirfd`, as `prefix/<name>`. */
async function dirEntries(o: Out, dirfd: number, prefix: Buffer, depth: number): Promise<void> {
  const { fs, report } = o;
  for (const e of await fs.entries(dirfd)) {
    const path = Buffer.concat([prefix, Buffer.from('/'), e.name]);
    const shown = printableName(path);
    if (++o.entries > MAX_ENTRIES) throw new VmiError('ETOOBIG', `more than ${MAX_ENTRIES} entries: stopped at ${shown}`);
    const unsafe = unsafeComponent(e.name);
    if (unsafe) {
      noteEntry(report, 'skipped', shown, unsafe);
      continue;
    }
    try {
      const kind = await direntKind(fs, dirfd, e);
      if (kind === 'symlink') {
        const st = await fs.lstatAt(dirfd, e.name);
        await emit(o, header(path, 'symlink', st, 0, await fs.readlinkAt(dirfd, e.name)));
        report.symlinks++;
      } else if (kind === 'directory') {
        if (depth + 1 > MAX_DEPTH) {
          noteEntry(report, 'skipped', shown, `deeper than ${MAX_DEPTH} levels`);
          continue;
        }
        // O_NOFOLLOW: a directory swapped for a symlink since getdents64 is refused, not entered
        const sub = await fs.openAt(dirfd, e.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        try {
          await emit(o, header(path, 'directory', await fs.fstat(sub), 0));
          report.directories++;
          await dirEntries(o, sub, path, depth + 1);
        } finally {
          await fs.close(sub);
        }
      } else if (kind === 'file') {
        const fd = await fs.openAt(dirfd, e.name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
        try {
          const st = await fs.fstat(fd);
          if ((st.mode & S_IFMT) !== S_IFREG) noteEntry(report, 'skipped', shown, `${fileKind(st.mode)}: not copied`);
          else await fileEntry(o, fd, st, path, shown);
        } finally {
          await fs.close(fd);
        }
      } else {
        const st = await fs.lstatAt(dirfd, e.name).catch(() => undefined);
        noteEntry(report, 'skipped', shown, `${st ? fileKind(st.mode) : `type ${e.type}`}: not copied`);
      }
    } catch (err) {
      if (!isPerEntry(err)) throw err;
      noteEntry(report, 'errors', shown, (err as Error).message);
    }
  }
}

/**
 * Writes the source (an open fd, or a symlink not followed) as a tar stream named `name` to `sink`,
 * ending it with the two zero blocks.
 */
export async function tarOut(fs: GuestFs, src: { fd: number } | { link: Buffer; st: GuestStat }, name: string, report: CopyReport, opts: CopyOptions, sink: (chunk: Buffer) => Promise<void>): Promise<void> {
  const o: Out = { fs, report, opts, sink, entries: 0 };
  const top = Buffer.from(name);
  if ('link' in src) {
    await emit(o, header(top, 'symlink', src.st, 0, src.link));
    report.symlinks++;
  } else {
    const st = await fs.fstat(src.fd);
    const kind = st.mode & S_IFMT;
    if (kind === S_IFREG) await fileEntry(o, src.fd, st, top, printableName(top));
    else if (kind === S_IFDIR) {
      await emit(o, header(top, 'directory', st, 0));
      report.directories++;
      await dirEntries(o, src.fd, top, 0);
    } else throw new VmiError('EUSAGE', `${printableName(top)} is a ${fileKind(st.mode)}: only files, directories and symlinks are copied`);
  }
  await emit(o, tarEnd());
}
