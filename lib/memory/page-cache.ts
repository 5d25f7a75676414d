/**
 * A 4 KiB page cache over any PhysicalMemory. While the VM is stopped its memory cannot change, so
 * every page needs reading only once; the owner calls invalidate() when the VM runs again (and
 * views built on top notice through `generation`). Missing pages wanted by one call are fetched in
 * one backend readRanges() call, adjacent pages joined into runs, so a gdbstub backend can pipeline
 * them and a file backend reads them in few syscalls. Two calls wanting the same missing page share
 * one fetch.
 *
 * Reads are rounded out to whole pages. prefetch() is finer: it fetches only the 256-byte sectors
 * its ranges touch, and keeps such a page as a partial one (its sectors and a mask of which are
 * valid) until a read wants more of it. A stage of a collection wants a few hundred bytes from each
 * of thousands of objects scattered over as many pages; over the gdbstub, whose cost is in the bytes
 * sent, whole pages cost several times what the objects do. Backends only expose RAM/ROM-backed pages (procmem, dumps)
 * or read device memory as the guest would (gdbstub), so callers must not point this at MMIO.
 */
import { isFatalReadError, MemoryReadError, VmiError } from '../errors';
import type { CallOptions } from '../util/deadline';
import { PAGE_SHIFT, PAGE_SIZE } from './pages';
import { checkPhysicalRange, totalLength, type PhysicalMemory, type PhysicalRange } from './physical';

const PAGE_OFFSET_MASK = BigInt(PAGE_SIZE - 1);
/** Granule of prefetch(): 16 sectors a page, one bit each in a partial page's mask. */
const SECTOR = 256;
const SECTORS = PAGE_SIZE / SECTOR;
const FULL_MASK = (1 << SECTORS) - 1;
/** Gaps between wanted sectors up to this many are fetched too: one read costs as much as that. */
const MAX_SECTOR_GAP = 2;
/** Longest single range prefetch() takes; longer ones are left to the reads. */
const MAX_PREFETCH_RANGE = 1024 * 1024;

export interface PageCacheOptions {
  /** Most bytes of page data kept. Default 256 MiB. */
  maxBytes?: number;
  /** Longest run of adjacent pages asked of the backend as one range. Default 32 (128 KiB). */
  maxRunPages?: number;
  /** At the limit, drop the least recently used page ('lru', default) or everything ('clear'). */
  policy?: 'lru' | 'clear';
  /**
   * Whether prefetch() fetches only the sectors it needs (default) or whole pages. Sectors pay
   * where bytes cost (the gdbstub); where they do not (/proc/<tid>/mem, a dump) whole pages mean
   * fewer, longer reads, and each read costs a system call.
   */
  prefetchSectors?: boolean;
}

/**
 * A page being fetched: the backend call bringing it, and where it lies in that call's answer. The
 * promise of the page alone is made only when another call joins (a batch fetches thousands of pages,
 * and two promises per page were a good part of the cost of a stage).
 */
interface InflightPage {
  fetched: Promise<Buffer[]>;
  run: number;
  index: number;
}

/** A page of which only some sectors were fetched (`data` is page sized; other bytes are garbage). */
interface PartialPage {
  data: Buffer;
  mask: number;
}

/** Bits of the sectors that bytes [off, off + length) of a page touch. */
function sectorMask(off: number, length: number): number {
  const first = Math.floor(off / SECTOR);
  const last = Math.floor((off + length - 1) / SECTOR);
  return ((1 << (last + 1)) - 1) & ~((1 << first) - 1);
}

export interface PageCacheStats {
  /** Pages found in the cache (or in another call's fetch). */
  hits: number;
  /** Pages that had to be fetched. */
  misses: number;
  /** readRanges() calls made on the backend. */
  backendCalls: number;
  /** Pages held now (whole ones). */
  pages: number;
  /** Pages of which only some sectors are held. */
  partialPages: number;
  invalidations: number;
}

export class PageCache implements PhysicalMemory {
  readonly name: string;
  readonly backend: PhysicalMemory;
  readonly #maxPages: number;
  readonly #maxRunPages: number;
  readonly #policy: 'lru' | 'clear';
  readonly #sectors: boolean;
  /** Page number → 4 KiB of data; Map order is the LRU order (oldest first). */
  readonly #pages = new Map<bigint, Buffer>();
  /** Pages prefetch() fetched only in part (never also in #pages). */
  readonly #partial = new Map<bigint, PartialPage>();
  readonly #inflight = new Map<bigint, InflightPage>();
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
    this.#sectors = opts.prefetchSectors ?? true;
  }

  get generation(): number {
    return this.#generation;
  }

  /** Drops every cached page: call when the VM has run, since any page may have changed. */
  invalidate(): void {
    this.#generation++;
    this.#stats.invalidations++;
    this.#pages.clear();
    this.#partial.clear();
    // Fetches under way may return pre-run data: new readers must not join them.
    this.#inflight.clear();
  }

  stats(): PageCacheStats {
    return { ...this.#stats, pages: this.#pages.size, partialPages: this.#partial.size };
  }

  async read(address: bigint, length: number, opts?: CallOptions): Promise<Buffer> {
    return (await this.readRanges([{ address, length }], opts))[0];
  }

  async readRanges(ranges: readonly PhysicalRange[], opts?: CallOptions): Promise<Buffer[]> {
    totalLength(ranges);
    // page → sectors wanted of it
    const wanted = new Map<bigint, number>();
    for (const r of ranges) {
      if (r.length === 0) continue;
      const end = r.address + BigInt(r.length);
      for (let at = r.address; at < end; ) {
        const p = at >> PAGE_SHIFT;
        const off = Number(at & PAGE_OFFSET_MASK);
        const n = Math.min(Number(end - at), PAGE_SIZE - off);
        wanted.set(p, (wanted.get(p) ?? 0) | sectorMask(off, n));
        at += BigInt(n);
      }
    }
    const got = new Map<bigint, Buffer>();
    const waits: Promise<void>[] = [];
    const missing: bigint[] = [];
    for (const [p, mask] of wanted) {
      const hit = this.#pages.get(p);
      if (hit) {
        this.#touch(p, hit);
        got.set(p, hit);
        this.#stats.hits++;
        continue;
      }
      const part = this.#partial.get(p);
      if (part && (part.mask & mask) === mask) {
        got.set(p, part.data);
        this.#stats.hits++;
        continue;
      }
      const shared = this.#inflight.get(p);
      if (shared) {
        this.#stats.hits++;
        waits.push(shared.fetched.then((bufs) => void got.set(p, bufs[shared.run].subarray(shared.index * PAGE_SIZE, (shared.index + 1) * PAGE_SIZE))));
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
    if (off + length <= PAGE_SIZE) return this.peekPage(first, off, length, view);
    const last = (address + BigInt(length) - 1n) >> PAGE_SHIFT;
    const pages: Buffer[] = [];
    let left = length;
    for (let p = first; p <= last; p++) {
      const o = p === first ? off : 0;
      const n = Math.min(left, PAGE_SIZE - o);
      const page = this.#pages.get(p) ?? this.#partialData(p, o, n);
      if (!page) return undefined;
      pages.push(page);
      left -= n;
    }
    this.#stats.hits += pages.length;
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    for (const page of pages) {
      const o = done === 0 ? off : 0;
      done += page.copy(out, done, o, Math.min(PAGE_SIZE, o + length - done));
    }
    return out;
  }

  /**
   * peek() within one page, by page number: what an address space asks for most (tens of
   * thousands of times a listing), without the bigint arithmetic of an address.
   */
  peekPage(p: bigint, off: number, length: number, view = false): Buffer | undefined {
    if (!Number.isSafeInteger(off) || !Number.isSafeInteger(length) || off < 0 || length <= 0 || off + length > PAGE_SIZE) return undefined;
    const page = this.#pages.get(p) ?? this.#partialData(p, off, length);
    if (!page) return undefined;
    this.#stats.hits++;
    if (view) return page.subarray(off, off + length);
    const out = Buffer.allocUnsafe(length);
    page.copy(out, 0, off, off + length);
    return out;
  }

  /** The data of partial page `p` if it holds bytes [off, off + length), else undefined. */
  #partialData(p: bigint, off: number, length: number): Buffer | undefined {
    const part = this.#partial.get(p);
    if (!part) return undefined;
    const m = sectorMask(off, length);
    return (part.mask & m) === m ? part.data : undefined;
  }

  /**
   * Brings the bytes of `ranges` into the cache with one backend call, assembling nothing: only
   * the sectors they touch (whole pages where they want all of one); a failure is left for the
   * reads that follow to report (one bad range must not sink the rest).
   */
  async prefetch(ranges: readonly PhysicalRange[], opts?: CallOptions): Promise<void> {
    // page → sectors still wanted of it
    const wanted = new Map<bigint, number>();
    const waits = new Set<Promise<unknown>>();
    const want = (p: bigint, off: number, n: number) => {
      if (this.#pages.has(p)) return;
      const shared = this.#inflight.get(p);
      if (shared) { waits.add(shared.fetched); return; }
      const m = (this.#sectors ? sectorMask(off, n) : FULL_MASK) & ~(this.#partial.get(p)?.mask ?? 0);
      if (m !== 0) wanted.set(p, (wanted.get(p) ?? 0) | m);
    };
    for (const r of ranges) {
      if (r.length <= 0 || r.length > MAX_PREFETCH_RANGE || r.address < 0n) continue;
      // most ranges are objects within one page: no arithmetic on addresses past the first
      const first = Number(r.address & PAGE_OFFSET_MASK);
      if (first + r.length <= PAGE_SIZE) {
        want(r.address >> PAGE_SHIFT, first, r.length);
        continue;
      }
      const end = r.address + BigInt(r.length);
      for (let at = r.address; at < end; ) {
        const off = Number(at & PAGE_OFFSET_MASK);
        const n = Math.min(Number(end - at), PAGE_SIZE - off);
        want(at >> PAGE_SHIFT, off, n);
        at += BigInt(n);
      }
    }
    const whole: bigint[] = [];
    const some: Array<[bigint, number]> = [];
    // forEach: a for-of over the entries made an array per page
    wanted.forEach((m, p) => {
      if (m === FULL_MASK) whole.push(p);
      else some.push([p, m]);
    });
    if (whole.length > 0) waits.add(this.#fetch(whole, new Map(), opts));
    if (some.length > 0) waits.add(this.#fetchSectors(some, opts));
    const settled = await Promise.allSettled(waits);
    for (const s of settled) if (s.status === 'rejected' && isFatalReadError(s.reason)) throw s.reason;
  }

  /**
   * Fetches the sectors `mask` names of each page, as runs of adjacent sectors (small gaps read
   * through), in one backend call, into partial pages. No other call waits for these: one that
   * wants more of a page fetches it whole.
   */
  async #fetchSectors(wanted: Array<[bigint, number]>, opts?: CallOptions): Promise<void> {
    wanted.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const maxRun = this.#maxRunPages * PAGE_SIZE;
    const runs: PhysicalRange[] = [];
    let runEnd = -1n;
    for (const [p, mask] of wanted) {
      const base = p << PAGE_SHIFT;
      for (let i = 0; i < SECTORS; i++) {
        if (((mask >> i) & 1) === 0) continue;
        const at = base + BigInt(i * SECTOR);
        const run = runs[runs.length - 1];
        if (run && at >= runEnd && at - runEnd <= BigInt(MAX_SECTOR_GAP * SECTOR) && run.length + Number(at - runEnd) + SECTOR <= maxRun) {
          run.length += Number(at - runEnd) + SECTOR;
        } else {
          runs.push({ address: at, length: SECTOR });
        }
        runEnd = at + BigInt(SECTOR);
      }
    }
    const generation = this.#generation;
    const writes = this.#writes;
    this.#stats.misses += wanted.length;
    this.#stats.backendCalls++;
    const bufs = await this.backend.readRanges(runs, opts);
    runs.forEach((r, i) => {
      if (bufs[i]?.length !== r.length) throw new MemoryReadError(r.address, r.length, `${this.backend.name} returned ${bufs[i]?.length ?? 0} bytes`);
    });
    if (generation !== this.#generation || writes !== this.#writes) return;
    // one block for every partial page of the call (see #fetch for why not one allocation each)
    const block = Buffer.allocUnsafeSlow(wanted.length * PAGE_SIZE);
    let used = 0;
    runs.forEach((r, i) => {
      const buf = bufs[i];
      for (let done = 0; done < r.length; ) {
        const at = r.address + BigInt(done);
        const p = at >> PAGE_SHIFT;
        const off = Number(at & PAGE_OFFSET_MASK);
        const n = Math.min(r.length - done, PAGE_SIZE - off);
        done += n;
        if (this.#pages.has(p)) continue; // a whole-page fetch got there first
        let part = this.#partial.get(p);
        if (!part) {
          if (used + PAGE_SIZE > block.length) continue; // a page only the gaps reach: not worth keeping
          part = { data: block.subarray(used, used + PAGE_SIZE), mask: 0 };
          used += PAGE_SIZE;
          this.#partial.set(p, part);
        }
        buf.copy(part.data, off, done - n, done);
        part.mask |= sectorMask(off, n);
        if (part.mask === FULL_MASK) {
          this.#partial.delete(p);
          this.#insert(p, part.data);
        }
      }
    });
    if (this.#partial.size > this.#maxPages) this.#partial.clear();
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
          this.#partial.delete(p);
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
    for (let i = 0; i < runs.length; i++) {
      const run = runs[i];
      for (let k = 0; k < run.count; k++) this.#inflight.set(run.first + BigInt(k), { fetched, run: i, index: k });
    }
    const forget = () => {
      for (const run of runs) {
        for (let k = 0; k < run.count; k++) {
          const p = run.first + BigInt(k);
          if (this.#inflight.get(p)?.fetched === fetched) this.#inflight.delete(p);
        }
      }
    };
    return fetched.then(
      (bufs) => {
        forget();
        const store = generation === this.#generation && writes === this.#writes;
        // A copy, so that the backend or a caller scribbling on the buffers returned cannot change
        // the cache; made into few large blocks, as one allocation per page (zeroing, GC pressure
        // of external memory) cost more than reading the pages. Blocks stay small enough that a
        // page kept alone holds little else alive.
        const copies = this.backend.freshReplies ? bufs : copyInBlocks(bufs);
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
    this.#partial.delete(p);
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
