/**
 * A stand-in for an InjectionSession that answers the file system calls GuestFs makes (openat,
 * openat2, fstat, newfstatat, getdents64, read, readlinkat, close) from a small scripted tree, so
 * that cp's loops can be run against a hostile kernel without a VM: files that never end, a
 * directory that returns . and .. forever, names of 64 KiB. It counts every call and every fd.
 */
import type { InjectionSession } from '../../lib/inject';

export interface FakeNode {
  mode: number;
  /** What fstat says. */
  size?: bigint;
  /** The bytes read() gives (`endless`: the same chunk forever, up to `cap` bytes in all). */
  data?: Buffer;
  endless?: { chunk: Buffer; cap: number };
  /** getdents64 records, each call gives the next batch ([] once done; `repeat`: the last batch forever). */
  dirents?: Buffer[];
  repeat?: boolean;
  children?: Record<string, FakeNode>;
}

const ENOENT = 2n;
const EBADF = 9n;

/** One linux_dirent64 record. */
export function direntRecord(name: Buffer, type: number): Buffer {
  const len = (19 + name.length + 1 + 7) & ~7;
  const r = Buffer.alloc(len);
  r.writeUInt16LE(len, 16);
  r[18] = type;
  name.copy(r, 19);
  return r;
}

interface OpenFile {
  node: FakeNode;
  pos: number;
  batch: number;
}

export class FakeGuestFsSession {
  readonly root: FakeNode;
  readonly calls: string[] = [];
  readonly fds = new Map<number, OpenFile>();
  closed = false;
  /** Most calls answered before the fake refuses (an unbounded loop fails the test, not hangs it). */
  maxCalls = 100_000;
  #next = 3;

  constructor(root: FakeNode) {
    this.root = root;
  }

  /** Host work is waited for at once: the fake has no VM to let run meanwhile. */
  awaitHost<T>(work: Promise<T> | T): Promise<T> {
    return Promise.resolve(work);
  }

  get session(): InjectionSession {
    return this as unknown as InjectionSession;
  }

  #count(name: string): void {
    this.calls.push(name);
    if (this.calls.length > this.maxCalls) throw new Error(`fake guest: more than ${this.maxCalls} calls (an unbounded loop)`);
  }

  #open(node: FakeNode | undefined): bigint {
    if (!node) return -ENOENT;
    const fd = this.#next++;
    this.fds.set(fd, { node, pos: 0, batch: 0 });
    return BigInt(fd);
  }

  #lookup(from: FakeNode, path: string): FakeNode | undefined {
    let n: FakeNode | undefined = from;
    for (const part of path.split('/').filter(Boolean)) n = n?.children?.[part];
    return n;
  }

  #stat(node: FakeNode): Buffer {
    const b = Buffer.alloc(144);
    b.writeUInt32LE(node.mode, 24);
    b.writeBigInt64LE(node.size ?? BigInt(node.data?.length ?? 0), 48);
    return b;
  }

  #cstr(b: Buffer): string {
    return b.subarray(0, b.indexOf(0)).toString('latin1');
  }

  async syscallWith(nr: string, args: (bigint | { in: Buffer } | { out: number })[]): Promise<{ result: bigint; out: Buffer[] }> {
    this.#count(nr);
    const arg = (i: number) => args[i] as bigint;
    const inBuf = (i: number) => (args[i] as { in: Buffer }).in;
    const dir = (i: number) => (arg(i) === -100n ? this.root : this.fds.get(Number(arg(i)))?.node);
    switch (nr) {
      case 'openat': {
        const base = dir(0);
        return { result: base ? this.#open(this.#lookup(base, this.#cstr(inBuf(1)))) : -EBADF, out: [] };
      }
      case 'openat2': {
        const base = dir(0);
        return { result: base ? this.#open(this.#lookup(base, this.#cstr(inBuf(1)))) : -EBADF, out: [] };
      }
      case 'fstat': {
        const f = this.fds.get(Number(arg(0)));
        return f ? { result: 0n, out: [this.#stat(f.node)] } : { result: -EBADF, out: [Buffer.alloc(144)] };
      }
      case 'newfstatat': {
        const n = this.#lookup(dir(0) ?? this.root, this.#cstr(inBuf(1)));
        return n ? { result: 0n, out: [this.#stat(n)] } : { result: -ENOENT, out: [Buffer.alloc(144)] };
      }
      case 'getdents64': {
        const f = this.fds.get(Number(arg(0)));
        if (!f) return { result: -EBADF, out: [Buffer.alloc(0)] };
        const batches = f.node.dirents ?? [];
        const i = f.node.repeat ? Math.min(f.batch, batches.length - 1) : f.batch;
        f.batch++;
        const b = batches[i] ?? Buffer.alloc(0);
        return { result: BigInt(b.length), out: [b] };
      }
      case 'readlinkat':
        return { result: 1n, out: [Buffer.from('x')] };
      default:
        throw new Error(`fake guest: no ${nr}`);
    }
  }

  async read(fd: number, n: number): Promise<Buffer> {
    this.#count('read');
    const f = this.fds.get(fd);
    if (!f) throw new Error(`fake guest: read of fd ${fd}, not open`);
    const e = f.node.endless;
    if (e) {
      const len = Math.min(n, e.chunk.length, e.cap - f.pos);
      f.pos += len;
      return e.chunk.subarray(0, Math.max(0, len));
    }
    const d = f.node.data ?? Buffer.alloc(0);
    const out = d.subarray(f.pos, f.pos + n);
    f.pos += out.length;
    return out;
  }

  async closeFd(fd: number | bigint): Promise<void> {
    this.#count('close');
    this.fds.delete(Number(fd));
  }
}
