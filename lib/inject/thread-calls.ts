/**
 * The calls every driven thread offers (a session's, a forked child's), written once over two
 * primitives of the thread: one raw syscall, and a placement of memory arguments whose addresses
 * stay valid, with nothing else run in the thread, until the work given to it is done.
 */
import { VmiError } from '../errors';
import { errnoOf } from './errno';
import { SyscallError } from './errors';
import type { Placement, RawCall } from './scratch';
import { cString, parseDirents64, parseUtsname, UTSNAME_SIZE, type Dirent64, type Utsname } from './structs';
import { resolveSyscall, syscallName, SYSCALLS_X86_64 } from './syscalls';

/** Largest buffer one helper call asks for. */
export const MAX_BUFFER = 16 * 1024 * 1024;
/** AT_FDCWD: paths relative to the thread's working directory. */
export const AT_FDCWD = -100;
const O_RDONLY = 0;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;

/** An argument of syscallWith(): a value, or a buffer passed by address. */
export type SyscallArgument = bigint | { in: Buffer } | { out: number } | { inout: Buffer };

/** Throws −errno as a SyscallError named `name`; the result otherwise. */
export function checkResult(name: string, r: bigint, detail?: string): bigint {
  const errno = errnoOf(r);
  if (errno) throw new SyscallError(name, errno, detail);
  return r;
}

export function checkLength(n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > MAX_BUFFER) throw new RangeError(`buffer length must be an integer in [0, ${MAX_BUFFER}], not ${n}`);
}

export abstract class ThreadCalls {
  /** Runs one syscall in the thread and returns rax, signed (−4095…−1 is −errno). */
  abstract syscall(nr: number | string, ...args: bigint[]): Promise<bigint>;

  /** The thread can no longer run calls (its session ended, the child exited or exec'd). */
  abstract get closed(): boolean;

  /**
   * Places `parts` and runs `work` with their addresses, a raw call and a read-back, with no other
   * call of the thread in between (the placement is only good until the next).
   */
  protected abstract withPlaced<T>(parts: readonly Placement[], work: (at: bigint[], call: RawCall, readBack: (address: bigint, length: number) => Promise<Buffer>) => Promise<T>): Promise<T>;

  /** Like syscall(), but −errno becomes a SyscallError (with the errno's name). */
  async call(nr: number | string, ...args: bigint[]): Promise<bigint> {
    const n = resolveSyscall(nr);
    return checkResult(syscallName(n) ?? `syscall ${n}`, await this.syscall(n, ...args));
  }

  /**
   * A syscall with memory arguments: each argument is a value, or a buffer placed in the thread
   * (`{ in }`: bytes written there, `{ out }`: that many bytes read back after the call, `{ inout }`:
   * both) and passed as its address. Returns rax (signed) and the `out`/`inout` buffers in order.
   */
  syscallWith(nr: number | string, args: readonly SyscallArgument[]): Promise<{ result: bigint; out: Buffer[] }> {
    const n = resolveSyscall(nr);
    const mem: { a: Exclude<SyscallArgument, bigint>; i: number }[] = [];
    args.forEach((a, i) => { if (typeof a !== 'bigint') mem.push({ a, i }); });
    const parts = mem.map(({ a }) => ('in' in a ? { size: a.in.length, data: a.in } : 'out' in a ? { size: a.out } : { size: a.inout.length, data: a.inout }));
    for (const p of parts) checkLength(p.size);
    return this.withPlaced(parts, async (addrs, call, readBack) => {
      const values = args.map((a) => (typeof a === 'bigint' ? a : 0n));
      mem.forEach((m, k) => { values[m.i] = addrs[k]; });
      const result = await call(n, values);
      const out: Buffer[] = [];
      for (let k = 0; k < mem.length; k++) {
        const a = mem[k].a;
        if ('out' in a) out.push(await readBack(addrs[k], a.out));
        else if ('inout' in a) out.push(await readBack(addrs[k], a.inout.length));
      }
      return { result, out };
    });
  }

  /** getpid(): the thread's pid as its own pid namespace sees it. */
  async getpid(): Promise<number> {
    return Number(await this.call('getpid'));
  }

  /** uname(): struct new_utsname of the thread's UTS namespace. */
  uname(): Promise<Utsname> {
    return this.withPlaced([{ size: UTSNAME_SIZE }], async ([buf], call, readBack) => {
      checkResult('uname', await call(SYSCALLS_X86_64.uname, [buf]));
      return parseUtsname(await readBack(buf, UTSNAME_SIZE));
    });
  }

  /** openat(dirfd, path, flags, mode) in the thread's mount namespace and root; returns the fd. */
  openat(dirfd: number, path: string, flags = O_RDONLY | O_CLOEXEC, mode = 0): Promise<number> {
    const p = cString(path);
    return this.withPlaced([{ size: p.length, data: p }], async ([at], call) => {
      return Number(checkResult('openat', await call(SYSCALLS_X86_64.openat, [BigInt(dirfd), at, BigInt(flags), BigInt(mode)]), JSON.stringify(path)));
    });
  }

  /** A syscall whose one memory argument is a NUL-terminated path (chdir, chroot…), at position `index`. */
  callWithPath(nr: number | string, path: string, args: readonly bigint[] = [], index = 0): Promise<bigint> {
    const n = resolveSyscall(nr);
    const p = cString(path);
    return this.withPlaced([{ size: p.length, data: p }], async ([at], call) => {
      const values = [...args];
      values.splice(index, 0, at);
      return checkResult(syscallName(n) ?? `syscall ${n}`, await call(n, values), JSON.stringify(path));
    });
  }

  /** read(fd, n): up to `n` bytes; only the bytes read are brought back. */
  read(fd: number, n: number): Promise<Buffer> {
    checkLength(n);
    return this.withPlaced([{ size: n }], async ([buf], call, readBack) => {
      const got = Number(checkResult('read', await call(SYSCALLS_X86_64.read, [BigInt(fd), buf, BigInt(n)])));
      return readBack(buf, Math.min(got, n));
    });
  }

  /** write(fd, data): returns how many bytes were written. */
  write(fd: number, data: Buffer): Promise<number> {
    checkLength(data.length);
    return this.withPlaced([{ size: data.length, data }], async ([buf], call) => {
      return Number(checkResult('write', await call(SYSCALLS_X86_64.write, [BigInt(fd), buf, BigInt(data.length)])));
    });
  }

  /** getdents64(fd, n): the entries that fit in `n` bytes ([] at the end of the directory). */
  getdents64(fd: number, n = 8192): Promise<Dirent64[]> {
    checkLength(n);
    return this.withPlaced([{ size: n }], async ([buf], call, readBack) => {
      const got = Number(checkResult('getdents64', await call(SYSCALLS_X86_64.getdents64, [BigInt(fd), buf, BigInt(n)])));
      return parseDirents64(await readBack(buf, Math.min(got, n)));
    });
  }

  async closeFd(fd: number | bigint): Promise<void> {
    await this.call('close', BigInt(fd));
  }

  /** The whole of a file (up to `max` bytes), read with openat/read/close. */
  async readFile(path: string, max = 1 << 20): Promise<Buffer> {
    const fd = await this.openat(AT_FDCWD, path);
    try {
      const parts: Buffer[] = [];
      let total = 0;
      while (total < max) {
        const b = await this.read(fd, Math.min(65536, max - total));
        if (b.length === 0) break;
        parts.push(b);
        total += b.length;
      }
      return Buffer.concat(parts);
    } finally {
      if (!this.closed) await this.closeFd(fd);
    }
  }

  /** The entries of a directory (without . and ..), read with openat/getdents64/close. */
  async listDirectory(path: string, maxEntries = 100_000): Promise<Dirent64[]> {
    const fd = await this.openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    try {
      const out: Dirent64[] = [];
      // . and .. count too: a kernel that returns only those forever is stopped
      for (let records = 0; ;) {
        const batch = await this.getdents64(fd, 32768);
        if (batch.length === 0) break;
        for (const e of batch) if (e.name !== '.' && e.name !== '..') out.push(e);
        records += batch.length;
        if (records > maxEntries + 2) throw new VmiError('ETOOBIG', `${path}: more than ${maxEntries} entries`);
      }
      return out;
    } finally {
      if (!this.closed) await this.closeFd(fd);
    }
  }
}
