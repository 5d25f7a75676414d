/**
 * File system calls made by a process of the container (its mount namespace and root apply),
 * with every path resolved under an fd of the container's root: openat2(RESOLVE_IN_ROOT) (5.6+)
 * treats `..` and absolute symlinks as the root's, and refuses /proc magic links that lead out;
 * where openat2 is missing, openat of the path as the process sees it (its chroot/pivot_root
 * still holds `..` at its root). Every fd opened is tracked and closed by closeAll(), also after
 * a failure, so nothing is left open in the guest: the caller's AbortSignal is heeded here,
 * between calls, rather than by the session (which would end at once, fds still open).
 */
import { AbortError, VmiError } from '../errors';
import { errnoOf, SyscallError, type InjectionSession } from '../inject';
import { DIRENT64_NAME_OFFSET } from '../inject/structs';
import { NAME_MAX, printableName } from './names';

export const O_RDONLY = 0;
export const O_WRONLY = 0o1;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NONBLOCK = 0o4000;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;
export const O_CLOEXEC = 0o2000000;
export const O_PATH = 0o10000000;
const AT_FDCWD = -100n;
const AT_SYMLINK_NOFOLLOW = 0x100;
/** include/uapi/linux/openat2.h */
const RESOLVE_NO_MAGICLINKS = 0x02;
const RESOLVE_IN_ROOT = 0x10;
const ENOSYS = 38;
const E2BIG = 7;

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;

/** struct stat (x86-64, arch/x86/include/uapi/asm/stat.h): 144 bytes. */
const STAT_SIZE = 144;

export interface GuestStat {
  mode: number;
  uid: number;
  gid: number;
  size: bigint;
  /** st_mtime, seconds. */
  mtime: number;
}

export function parseStat(b: Buffer): GuestStat {
  return { mode: b.readUInt32LE(24), uid: b.readUInt32LE(28), gid: b.readUInt32LE(32), size: b.readBigInt64LE(48), mtime: Number(b.readBigInt64LE(88)) };
}

export function fileKind(mode: number): string {
  switch (mode & S_IFMT) {
    case S_IFREG: return 'file';
    case S_IFDIR: return 'directory';
    case S_IFLNK: return 'symlink';
    case 0o010000: return 'fifo';
    case 0o020000: return 'character device';
    case 0o060000: return 'block device';
    case 0o140000: return 'socket';
    default: return 'unknown';
  }
}

export interface RawDirent {
  type: number;
  /** Bytes as the guest gave them (not decoded). */
  name: Buffer;
}

/**
 * linux_dirent64 records with names kept as bytes; a corrupt record ends the parse with an error.
 * A name longer than NAME_MAX is kept cut to NAME_MAX + 1 bytes (enough to be refused as too long):
 * a record may hold 64 KiB of name.
 */
export function parseRawDirents(buf: Buffer): RawDirent[] {
  const out: RawDirent[] = [];
  for (let pos = 0; pos < buf.length;) {
    if (buf.length - pos < DIRENT64_NAME_OFFSET + 1) throw new VmiError('EBADDIRENT', `truncated linux_dirent64 at offset ${pos}`);
    const reclen = buf.readUInt16LE(pos + 16);
    if (reclen < DIRENT64_NAME_OFFSET + 1 || pos + reclen > buf.length) throw new VmiError('EBADDIRENT', `linux_dirent64 at offset ${pos} has d_reclen ${reclen}`);
    const field = buf.subarray(pos + DIRENT64_NAME_OFFSET, pos + reclen);
    const nul = field.indexOf(0);
    const name = nul < 0 ? field : field.subarray(0, nul);
    out.push({ type: buf[pos + 18], name: Buffer.from(name.subarray(0, NAME_MAX + 1)) });
    pos += reclen;
  }
  return out;
}

/** DT_* of getdents64. */
const DT_DIR = 4;
const DT_REG = 8;
const DT_LNK = 10;
const DT_UNKNOWN = 0;

/** What a directory entry is: from its d_type, or by lstat where the filesystem does not say. */
export async function direntKind(fs: GuestFs, dirfd: number, e: RawDirent): Promise<'file' | 'directory' | 'symlink' | 'other'> {
  let mode = e.type === DT_DIR ? S_IFDIR : e.type === DT_REG ? S_IFREG : e.type === DT_LNK ? S_IFLNK : -1;
  if (e.type === DT_UNKNOWN) mode = (await fs.lstatAt(dirfd, e.name)).mode & S_IFMT;
  return mode === S_IFDIR ? 'directory' : mode === S_IFREG ? 'file' : mode === S_IFLNK ? 'symlink' : 'other';
}

function cBytes(path: string | Buffer): Buffer {
  const b = Buffer.isBuffer(path) ? path : Buffer.from(path, 'utf8');
  if (b.includes(0)) throw new VmiError('EUSAGE', 'a path cannot contain NUL');
  if (b.length >= 4096) throw new VmiError('ENAMETOOLONG', 'path longer than PATH_MAX');
  return Buffer.concat([b, Buffer.from([0])]);
}

export class GuestFs {
  readonly #session: InjectionSession;
  readonly #signal: AbortSignal | undefined;
  readonly #open = new Set<number>();
  #root: number | undefined;
  /** Whether openat2 works here (unknown until tried). */
  #openat2: boolean | undefined;

  /** `signal`: stops the work before its next call (closeAll() still runs); see the file's comment. */
  constructor(session: InjectionSession, opts: { signal?: AbortSignal } = {}) {
    this.#session = session;
    this.#signal = opts.signal;
  }

  /** The session, for a call of the work: refused once the caller has aborted. */
  get s(): InjectionSession {
    if (this.#signal?.aborted) throw new AbortError('copy', { cause: this.#signal.reason });
    return this.#session;
  }

  /** Whether paths are resolved with openat2(RESOLVE_IN_ROOT) (known after the first resolve). */
  get inRootResolution(): boolean | undefined {
    return this.#openat2;
  }

  async #result(name: string, r: bigint, detail?: string): Promise<bigint> {
    const e = errnoOf(r);
    if (e) throw new SyscallError(name, e, detail);
    return r;
  }

  #track(fd: bigint): number {
    const n = Number(fd);
    this.#open.add(n);
    return n;
  }

  /** An O_PATH fd of the process's root directory ("/" as it sees it: the container's root). */
  async root(): Promise<number> {
    if (this.#root !== undefined) return this.#root;
    const r = await this.s.syscallWith('openat', [AT_FDCWD, { in: cBytes('/') }, BigInt(O_PATH | O_DIRECTORY | O_CLOEXEC), 0n]);
    this.#root = this.#track(await this.#result('openat', r.result, '"/"'));
    return this.#root;
  }

  /** Opens `path` (absolute or not: both from the container's root) with `flags`. */
  async resolve(path: string, flags: number): Promise<number> {
    const root = await this.root();
    if (this.#openat2 !== false) {
      const how = Buffer.alloc(24);
      how.writeBigUInt64LE(BigInt(flags | O_CLOEXEC), 0);
      how.writeBigUInt64LE(BigInt(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), 16);
      const r = await this.s.syscallWith('openat2', [BigInt(root), { in: cBytes(path) }, { in: how }, 24n]);
      const e = errnoOf(r.result);
      if (e !== ENOSYS && e !== E2BIG) {
        this.#openat2 = true;
        return this.#track(await this.#result('openat2', r.result, JSON.stringify(path)));
      }
      this.#openat2 = false;
    }
    // no openat2: the process's own root still bounds `..` and absolute symlinks
    const abs = path.startsWith('/') ? path : `/${path}`;
    const r = await this.s.syscallWith('openat', [AT_FDCWD, { in: cBytes(abs) }, BigInt(flags | O_CLOEXEC), 0n]);
    return this.#track(await this.#result('openat', r.result, JSON.stringify(path)));
  }

  /** openat(dirfd, name) of one component. */
  async openAt(dirfd: number, name: Buffer | string, flags: number, mode = 0): Promise<number> {
    const r = await this.s.syscallWith('openat', [BigInt(dirfd), { in: cBytes(name) }, BigInt(flags | O_CLOEXEC), BigInt(mode)]);
    return this.#track(await this.#result('openat', r.result));
  }

  async close(fd: number): Promise<void> {
    if (!this.#open.delete(fd)) return;
    if (fd === this.#root) this.#root = undefined;
    await this.#session.closeFd(fd);
  }

  /** Closes every fd still open (best effort: the first failure is thrown after trying them all). */
  async closeAll(): Promise<void> {
    let first: unknown;
    for (const fd of [...this.#open]) {
      if (this.#session.closed) break;
      await this.close(fd).catch((e) => { first ??= e; });
    }
    this.#open.clear();
    this.#root = undefined;
    if (first) throw first;
  }

  get openFds(): number {
    return this.#open.size;
  }

  async fstat(fd: number): Promise<GuestStat> {
    const r = await this.s.syscallWith('fstat', [BigInt(fd), { out: STAT_SIZE }]);
    await this.#result('fstat', r.result);
    return parseStat(r.out[0]);
  }

  async lstatAt(dirfd: number, name: Buffer): Promise<GuestStat> {
    const r = await this.s.syscallWith('newfstatat', [BigInt(dirfd), { in: cBytes(name) }, { out: STAT_SIZE }, BigInt(AT_SYMLINK_NOFOLLOW)]);
    await this.#result('newfstatat', r.result);
    return parseStat(r.out[0]);
  }

  /** readlinkat; an empty `name` reads the symlink `dirfd` itself (opened O_PATH | O_NOFOLLOW). */
  async readlinkAt(dirfd: number, name: Buffer): Promise<Buffer> {
    const r = await this.s.syscallWith('readlinkat', [BigInt(dirfd), { in: cBytes(name) }, { out: 4096 }, 4096n]);
    const n = Number(await this.#result('readlinkat', r.result));
    return Buffer.from(r.out[0].subarray(0, Math.min(n, 4096)));
  }

  /**
   * Every entry of an open directory (without . and ..), at most `max`. Every record counts
   * towards the bound, . and .. too: a kernel that returns only those forever is stopped.
   */
  async entries(fd: number, max = 100_000): Promise<RawDirent[]> {
    const out: RawDirent[] = [];
    let records = 0;
    for (;;) {
      const r = await this.s.syscallWith('getdents64', [BigInt(fd), { out: 65536 }, 65536n]);
      const n = Number(await this.#result('getdents64', r.result));
      if (n === 0) return out;
      for (const e of parseRawDirents(r.out[0].subarray(0, Math.min(n, 65536)))) {
        if (++records > max + 2) throw new VmiError('ETOOBIG', `a directory with more than ${max} entries`);
        if (e.name.equals(Buffer.from('.')) || e.name.equals(Buffer.from('..'))) continue;
        out.push(e);
      }
    }
  }

  read(fd: number, n: number): Promise<Buffer> {
    return this.s.read(fd, n);
  }

  /** Writes all of `data` (write() may take less). */
  async writeAll(fd: number, data: Buffer): Promise<void> {
    for (let at = 0; at < data.length;) {
      const n = await this.s.write(fd, data.subarray(at));
      if (n <= 0) throw new VmiError('EIO', 'write() wrote nothing');
      at += n;
    }
  }

  async fchmod(fd: number, mode: number): Promise<void> {
    await this.#result('fchmod', await this.s.syscall('fchmod', BigInt(fd), BigInt(mode & 0o7777)));
  }

  /** fchownat(dirfd, name, AT_SYMLINK_NOFOLLOW), or fchown of `dirfd` itself when `name` is null. */
  async chown(dirfd: number, name: Buffer | null, uid: number, gid: number): Promise<void> {
    if (name === null) {
      await this.#result('fchown', await this.s.syscall('fchown', BigInt(dirfd), BigInt(uid), BigInt(gid)));
      return;
    }
    const r = await this.s.syscallWith('fchownat', [BigInt(dirfd), { in: cBytes(name) }, BigInt(uid), BigInt(gid), BigInt(AT_SYMLINK_NOFOLLOW)]);
    await this.#result('fchownat', r.result, printableName(name));
  }

  /** Sets the access and modification times of the open `fd` (utimensat with a NULL path). */
  async futimens(fd: number, seconds: number): Promise<void> {
    const t = Buffer.alloc(32);
    t.writeBigInt64LE(BigInt(seconds), 0);
    t.writeBigInt64LE(BigInt(seconds), 16);
    const r = await this.s.syscallWith('utimensat', [BigInt(fd), 0n, { in: t }, 0n]);
    await this.#result('utimensat', r.result);
  }

  /** linkat(olddirfd, oldname, newdirfd, newname, 0): a hard link, never following a symlink. */
  async linkAt(oldDirfd: number, oldName: Buffer, newDirfd: number, newName: Buffer): Promise<void> {
    const r = await this.s.syscallWith('linkat', [BigInt(oldDirfd), { in: cBytes(oldName) }, BigInt(newDirfd), { in: cBytes(newName) }, 0n]);
    await this.#result('linkat', r.result, printableName(newName));
  }

  async fsync(fd: number): Promise<void> {
    await this.#result('fsync', await this.s.syscall('fsync', BigInt(fd)));
  }

  async renameAt(dirfd: number, from: Buffer | string, to: Buffer | string): Promise<void> {
    const r = await this.s.syscallWith('renameat', [BigInt(dirfd), { in: cBytes(from) }, BigInt(dirfd), { in: cBytes(to) }]);
    await this.#result('renameat', r.result);
  }

  /** Whether the session is over (no more calls, not even cleanups). */
  get closed(): boolean {
    return this.#session.closed;
  }

  /**
   * unlinkat; `dir` for rmdir. Returns the errno (0 when done) rather than throwing. Made even
   * after an abort: it removes what a cut-short copy left (a temporary file).
   */
  async unlinkAt(dirfd: number, name: Buffer | string, dir = false): Promise<number> {
    const r = await this.#session.syscallWith('unlinkat', [BigInt(dirfd), { in: cBytes(name) }, dir ? 0x200n : 0n]);
    return errnoOf(r.result);
  }

  /** mkdirat; returns the errno (0 when made). */
  async mkdirAt(dirfd: number, name: Buffer, mode: number): Promise<number> {
    const r = await this.s.syscallWith('mkdirat', [BigInt(dirfd), { in: cBytes(name) }, BigInt(mode & 0o7777)]);
    return errnoOf(r.result);
  }

  async symlinkAt(target: Buffer, dirfd: number, name: Buffer): Promise<void> {
    const r = await this.s.syscallWith('symlinkat', [{ in: cBytes(target) }, BigInt(dirfd), { in: cBytes(name) }]);
    await this.#result('symlinkat', r.result);
  }
}
