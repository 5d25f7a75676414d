/**
 * A 4 KiB page cache over any PhysicalMemory. While the VM is stopped its memory cannot change, so
 * every page needs reading only once; the owner calls invalidate() when the VM runs again (and
 * views built on top notice through `generation`). Missing pages wanted by one call are fetched in
 * one backend readRanges() call, adjacent pages joined into runs, so a gdbstub backend can pipeline
 * them and a file backend reads them in few syscalls. Two calls wanting the same missing page share
 * one fetch.
 *
 * Reads are rounded out to whole pages. Backends only expose RAM/ROM-backed pages (procmem, dumps)
 * or read device memory as the guest would (gdbstub), so callers must not point this at MMIO.
 */
import { isFatalReadError, MemoryReadError, VmiError } from '../errors';
import type { CallOptions } from '../util/deadline';
import { PAGE_SHIFT, PAGE_SIZE } from './pages';
import { checkPhysicalRange, totalLength, type PhysicalMemory, type PhysicalRange } from './physical';

const PAGE_OFFSET_MASK = BigInt(PAGE_SIZE - 1);
/** Longest single range prefetch() takes; longer ones are left to the reads. */
const MAX_PREFETCH_RANGE = 1024 * 1024;

export interface PageCacheOptions {
  /** Most bytes of page data kept. Default 256 MiB. */
  maxBytes?: number;
  /** Longest run of adjacent pages asked of the backend as one range. Default 32 (128 KiB). */
  maxRunPages?: number;
  /** At the limit, drop the least recently used page ('lru', default) or everything ('clear'). */
  policy?: 'lru' | 'clear';
}

export interface PageCacheStats {
  /** Pages found in the cache (or in another call's fetch). */
  hits: number;
  /** Pages that had to be fetched. */
  misses: number;
  /** readRanges() calls made on the backend. */
  backendCalls: number;
  /** Pages held now. */
  pages: number;
  invalidations: number;
}

export class PageCache implements PhysicalMemory {
  readonly name: string;
  readonly backend: PhysicalMemory;
  readonly #maxPages: number;
  readonly #maxRunPages: number;
  readonly #policy: 'lru' | 'clear';
  /** Page number → 4 KiB of data; Map order is the LRU order (oldest first). */
  readonly #pages = new Map<bigint, Buffer>();
  readonly #inflight = new Map<bigint, Promise<Buffer>>();
  #generation = 0;
  /** Bumped by every write, so a fetch that raced one does not store what it read before it. */
  #writes = 0;
  readonly #stats = { hits: 0, misses: 0, backendCalls: 0, invalidations: 0 };

  constructor(backend: PhysicalMemory, opts: PageCacheOptions = {}) {
    this.backend = backend;
    this.name = `cache(${backend.name})`;
    this.#maxPages = Math.max(1, Math.floor((opts.maxBytes ?? 256 * 1024 * 1024) / PAGE_SIZE));
    this.#maxRunPages = Math.max(1, Math.floor(opts.maxRunPages ?? 32));
    this.#policy = opts.policy ?? 'lru';
  }

  get generation(): number {
    return this.#generation;
  }

  /** Drops every cached page: call when the VM has run, since any page may have changed. */
  invalidate(): void {
    this.#generation++;
    this.#stats.invalidations++;
    this.#pages.clear();
    // Fetches under way may return pre-run data: new readers must not join them.
    this.#inflight.clear();
  }

  stats(): PageCacheStats {
    return { ...this.#stats, pages: this.#pages.size };
  }

  async read(address: bigint, length: number, opts?: CallOptions): Promise<Buffer> {
    return (await this.readRanges([{ address, length }], opts))[0];
  }

  async readRanges(ranges: readonly PhysicalRange[], opts?: CallOptions): Promise<Buffer[]> {
    totalLength(ranges);
    const wanted = new Set<bigint>();
    for (const r of ranges) {
      if (r.length === 0) continue;
      const last = (r.address + BigInt(r.length) - 1n) >> PAGE_SHIFT;
      for (let p = r.address >> PAGE_SHIFT; p <= last; p++) wanted.add(p);
    }
    const got = new Map<bigint, Buffer>();
    const waits: Promise<void>[] = [];
    const missing: bigint[] = [];
    for (const p of wanted) {
      const hit = this.#pages.get(p);
      if (hit) {
        this.#touch(p, hit);
        got.set(p, hit);
        this.#stats.hits++;
        continue;
      }
      const shared = this.#inflight.get(p);
      if (shared) {
        this.#stats.hits++;
        waits.push(shared.then((b) => void got.set(p, b)));
        continue;
      }
      missing.push(p);
    }
    if (missing.length > 0) waits.push(this.#fetch(missing, got, opts));
    await Promise.all(waits);
    return ranges.map((r) => this.#assemble(r, got));
  }

  /**
   * The bytes at `address` when every page they touch is cached (a copy), else undefined. No
   * backend call, no promise: the hot path of the kernel readers once a stage has been fetched.
   * With `view`, bytes within one page come back as a view of the cached page: the caller must
   * not write to it (decoders only read).
   */
  peek(address: bigint, length: number, view = false): Buffer | undefined {
    if (!Number.isSafeInteger(length) || length <= 0 || length > PAGE_SIZE * 64) return undefined;
    const first = address >> PAGE_SHIFT;
    const off = Number(address & PAGE_OFFSET_MASK);
    if (off + length <= PAGE_SIZE) {
      const page = this.#pages.get(first);
      if (!page) return undefined;
      this.#stats.hits++;
      if (view) return page.subarray(off, off + length);
      const out = Buffer.allocUnsafe(length);
      page.copy(out, 0, off, off + length);
      return out;
    }
    const last = (address + BigInt(length) - 1n) >> PAGE_SHIFT;
    for (let p = first; p <= last; p++) if (!this.#pages.has(p)) return undefined;
    this.#stats.hits += Number(last - first) + 1;
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    for (let p = first; done < length; p++) {
      const o = done === 0 ? off : 0;
      done += this.#pages.get(p)!.copy(out, done, o, Math.min(PAGE_SIZE, o + length - done));
    }
    return out;
  }

  /**
   * Brings the pages of `ranges` into the cache with one backend call, assembling nothing; a
   * failure is left for the reads that follow to report (one bad range must not sink the rest).
   */
  async prefetch(ranges: readonly PhysicalRange[], opts?: CallOptions): Promise<void> {
    const missing: bigint[] = [];
    const waits: Promise<unknown>[] = [];
    const seen = new Set<bigint>();
    for (const r of ranges) {
      if (r.length <= 0 || r.length > MAX_PREFETCH_RANGE || r.address < 0n) continue;
      const last = (r.address + BigInt(r.length) - 1n) >> PAGE_SHIFT;
      for (let p = r.address >> PAGE_SHIFT; p <= last; p++) {
        if (seen.has(p) || this.#pages.has(p)) continue;
        seen.add(p);
        const shared = this.#inflight.get(p);
        if (shared) waits.push(shared);
        else missing.push(p);
      }
    }
    if (missing.length > 0) waits.push(this.#fetch(missing, new Map(), opts));
    const settled = await Promise.allSettled(waits);
    for (const s of settled) if (s.status === 'rejected' && isFatalReadError(s.reason)) throw s.reason;
  }

  async write(address: bigint, data: Buffer, opts?: CallOptions): Promise<void> {
    checkPhysicalRange(address, data.length);
    if (!this.backend.write) throw new VmiError('ENOTSUP', `${this.backend.name}: cannot write guest memory`);
    this.#writes++;
    try {
      await this.backend.write(address, data, opts);
    } finally {
      // Drop rather than patch: if the write failed part-way, what the guest holds is unknown.
      if (data.length > 0) {
        const last = (address + BigInt(data.length) - 1n) >> PAGE_SHIFT;
        for (let p = address >> PAGE_SHIFT; p <= last; p++) {
          this.#pages.delete(p);
          this.#inflight.delete(p);
        }
      }
    }
  }

  /** Empties the cache and closes the backend it owns. */
  async close(): Promise<void> {
    this.invalidate();
    await this.backend.close?.();
  }

  /** Fetches `pages` (ascending) in one backend call, as runs of adjacent pages. */
  #fetch(pages: bigint[], got: Map<bigint, Buffer>, opts?: CallOptions): Promise<void> {
    pages.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const runs: { first: bigint; count: number }[] = [];
    for (const p of pages) {
      const run = runs[runs.length - 1];
      if (run && run.first + BigInt(run.count) === p && run.count < this.#maxRunPages) run.count++;
      else runs.push({ first: p, count: 1 });
    }
    const generation = this.#generation;
    const writes = this.#writes;
    this.#stats.misses += pages.length;
    this.#stats.backendCalls++;
    const asked = runs.map((r) => ({ address: r.first << PAGE_SHIFT, length: r.count * PAGE_SIZE }));
    const fetched = this.backend.readRanges(asked, opts).then((bufs) => {
      // A backend answering short would leave holes in the pages: refuse rather than cache them.
      asked.forEach((r, i) => {
        if (bufs[i]?.length !== r.length) throw new MemoryReadError(r.address, r.length, `${this.backend.name} returned ${bufs[i]?.length ?? 0} bytes`);
      });
      return bufs;
    });
    const byPage = new Map<bigint, Promise<Buffer>>();
    for (const [i, run] of runs.entries()) {
      for (let k = 0; k < run.count; k++) {
        const p = run.first + BigInt(k);
        const one = fetched.then((bufs) => bufs[i].subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE));
        // Waiters that join this fetch handle its failure; this copy only must not go unhandled.
        one.catch(() => undefined);
        byPage.set(p, one);
        this.#inflight.set(p, one);
      }
    }
    const forget = () => {
      for (const [p, pr] of byPage) if (this.#inflight.get(p) === pr) this.#inflight.delete(p);
    };
    return fetched.then(
      (bufs) => {
        forget();
        const store = generation === this.#generation && writes === this.#writes;
        // A copy, so that the backend or a caller scribbling on the buffers returned cannot change
        // the cache; made into few large blocks, as one allocation per page (zeroing, GC pressure
        // of external memory) cost more than reading the pages. Blocks stay small enough that a
        // page kept alone holds little else alive.
        const copies = copyInBlocks(bufs);
        for (const [i, run] of runs.entries()) {
          const copy = copies[i];
          for (let k = 0; k < run.count; k++) {
            const p = run.first + BigInt(k);
            const page = copy.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE);
            got.set(p, page);
            if (store) this.#insert(p, page);
          }
        }
      },
      (err) => {
        forget();
        throw err;
      },
    );
  }

  #touch(p: bigint, page: Buffer): void {
    if (this.#policy !== 'lru') return;
    this.#pages.delete(p);
    this.#pages.set(p, page);
  }

  #insert(p: bigint, page: Buffer): void {
    this.#pages.set(p, page);
    if (this.#pages.size <= this.#maxPages) return;
    if (this.#policy === 'clear') {
      this.#pages.clear();
      this.#pages.set(p, page);
      return;
    }
    while (this.#pages.size > this.#maxPages) {
      const oldest = this.#pages.keys().next().value as bigint;
      this.#pages.delete(oldest);
    }
  }

  #assemble(r: PhysicalRange, got: Map<bigint, Buffer>): Buffer {
    const out = Buffer.alloc(r.length);
    let done = 0;
    while (done < r.length) {
      const addr = r.address + BigInt(done);
      const page = got.get(addr >> PAGE_SHIFT)!;
      const off = Number(addr & BigInt(PAGE_SIZE - 1));
      done += page.copy(out, done, off, Math.min(PAGE_SIZE, off + r.length - done));
    }
    return out;
  }
}

/** Most bytes copied into one block by copyInBlocks(). */
const COPY_BLOCK = 256 * 1024;

/** Copies of `bufs`, packed into shared blocks of up to COPY_BLOCK bytes (a larger buffer alone). */
function copyInBlocks(bufs: readonly Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  let block: Buffer | undefined;
  let used = 0;
  let left = 0;
  for (const b of bufs) if (b.length < COPY_BLOCK) left += b.length;
  for (const b of bufs) {
    if (b.length >= COPY_BLOCK) {
      const c = Buffer.allocUnsafeSlow(b.length);
      b.copy(c);
      out.push(c);
      continue;
    }
    if (!block || used + b.length > block.length) {
      block = Buffer.allocUnsafeSlow(Math.min(COPY_BLOCK, left));
      used = 0;
    }
    left -= b.length;
    const c = block.subarray(used, used + b.length);
    b.copy(c);
    used += b.length;
    out.push(c);
  }
  return out;
}
