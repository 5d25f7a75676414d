/**
 * A virtual address space: a page table (the translation layer) over physical memory, with reads
 * split at page boundaries, typed helpers and guarded writes. Translations are cached per 4 KiB
 * page for exactly as long as the physical layer's `generation` stays the same (a PageCache bumps it
 * on invalidate()); over a backend without a generation nothing is cached, since the VM may run.
 */
import { isFatalReadError, MemoryReadError, PageFaultError, VmiError } from '../errors';
import type { CallOptions } from '../util/deadline';
import { guestString } from '../util/escape';
import { PAGE_MASK, PAGE_SIZE } from './pages';
import { MAX_READ_LENGTH, type PhysicalMemory, type PhysicalRange } from './physical';
import { X86PageTable, type PageTableOptions, type Translation } from './x86-64/translate';

/** A span of virtual memory. */
export interface VirtualRange {
  address: bigint;
  length: number;
}

export interface AddressSpaceOptions {
  /** Most cached page translations; the cache is emptied when full. Default 262,144 (1 GiB of 4 KiB pages). */
  maxCachedTranslations?: number;
}

/** What the cache keeps for one 4 KiB virtual page. */
interface PageTranslation {
  /** Physical address of the 4 KiB page (within a larger page if it is one). */
  physicalPage: bigint;
  /** physicalPage >> 12, what the cache below is keyed by (kept: a peek then makes no bigint of its own for it) */
  ppn: bigint;
  t: Translation;
}

/** One piece of a virtual range that lies within one page. */
interface Chunk {
  virtual: bigint;
  length: number;
  /** Offset of the piece in its range's buffer. */
  offset: number;
}

const U64_LIMIT = 1n << 64n;
const OFFSET_MASK = BigInt(PAGE_SIZE - 1);
/** Longest read peek() and prefetch() take (longer ones go the ordinary way). */
const MAX_PEEK = 1024 * 1024;
/** Below this, no range prefetch() takes can pass the end of the address space. */
const NEAR_U64_LIMIT = U64_LIMIT - BigInt(MAX_PEEK);
/** Translations started at once: enough to pipeline page-table reads, few enough to stay small. */
const TRANSLATE_BATCH = 512;

export class AddressSpace {
  readonly pageTable: X86PageTable;
  readonly physical: PhysicalMemory;
  readonly #maxCached: number;
  readonly #tlb = new Map<bigint, Promise<PageTranslation>>();
  /** The settled part of #tlb, for the synchronous peek(). */
  readonly #resolved = new Map<bigint, PageTranslation>();
  /**
   * Settled translations of 2 MiB and 1 GiB pages, by large-page number (va >> 21 or va >> 30):
   * the kernel's direct map uses them, so one walk serves every 4 KiB page inside.
   */
  readonly #large2M = new Map<bigint, PageTranslation>();
  readonly #large1G = new Map<bigint, PageTranslation>();
  #tlbGeneration: number | undefined;

  constructor(pageTable: X86PageTable, opts: AddressSpaceOptions = {}) {
    this.pageTable = pageTable;
    this.physical = pageTable.physical;
    this.#maxCached = Math.max(1, opts.maxCachedTranslations ?? 1 << 18);
  }

  /** The address space whose top-level table CR3 names (PCID and the KPTI bit are masked off). */
  static fromCr3(physical: PhysicalMemory, cr3: bigint, opts: PageTableOptions & AddressSpaceOptions = {}): AddressSpace {
    return new AddressSpace(new X86PageTable(physical, cr3, opts), opts);
  }

  get name(): string {
    return this.pageTable.name;
  }

  /** Forgets cached translations (also happens by itself when the physical generation changes). */
  invalidate(): void {
    this.#clearTranslations();
  }

  #clearTranslations(): void {
    this.#tlb.clear();
    this.#resolved.clear();
    this.#large2M.clear();
    this.#large1G.clear();
  }

  /**
   * The settled translation of the 4 KiB page `vpn` (va >> 12), from the per-page cache or from a
   * large page that holds it; the caller has checked the generation.
   */
  #settled(vpn: bigint): PageTranslation | undefined {
    const t = this.#resolved.get(vpn);
    if (t !== undefined) return t;
    if (this.#large2M.size === 0 && this.#large1G.size === 0) return undefined;
    const big = this.#large2M.get(vpn >> 9n) ?? this.#large1G.get(vpn >> 18n);
    if (big === undefined) return undefined;
    const mask = BigInt(big.t.pageSize - 1);
    const physicalPage = (big.physicalPage & ~mask) | ((vpn << 12n) & mask);
    const own = { physicalPage, ppn: physicalPage >> 12n, t: big.t };
    // kept per 4 KiB page too: the next peek of this page is one lookup, not this arithmetic
    if (this.#resolved.size < this.#maxCached) this.#resolved.set(vpn, own);
    return own;
  }

  /** Maps one virtual address, or throws PageFaultError naming it. */
  async translate(va: bigint, opts?: CallOptions): Promise<Translation> {
    const p = await this.#translatePage(va, opts);
    return { ...p.t, physical: p.physicalPage + (va & ~PAGE_MASK) };
  }

  /** Exactly `length` bytes at `va`; a range reaching an unmapped page fails for its first unmapped address. */
  async read(va: bigint, length: number, opts?: CallOptions): Promise<Buffer> {
    return this.peek(va, length) ?? (await this.readMany([{ address: va, length }], opts))[0];
  }

  /**
   * The bytes at `va` when both the translations and the physical pages are already cached (no
   * I/O, no await), else undefined. Only over a physical layer that can peek (a PageCache). With
   * `view`, the result may be a view of the cache: for decoding only, never to be written to.
   */
  peek(va: bigint, length: number, view = false): Buffer | undefined {
    const physical = this.physical;
    if (!physical.peek || physical.generation === undefined || physical.generation !== this.#tlbGeneration) return undefined;
    if (!Number.isSafeInteger(length) || length <= 0 || va < 0n) return undefined;
    const off = Number(va & OFFSET_MASK);
    if (off + length <= PAGE_SIZE) {
      const t = this.#settled(va >> 12n);
      if (t === undefined) return undefined;
      return physical.peekPage ? physical.peekPage(t.ppn, off, length, view) : physical.peek(t.physicalPage + BigInt(off), length, view);
    }
    if (length > MAX_PEEK) return undefined;
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const at = va + BigInt(done);
      const o = Number(at & OFFSET_MASK);
      const n = Math.min(length - done, PAGE_SIZE - o);
      const t = this.#settled(at >> 12n);
      const part = t === undefined ? undefined : physical.peek(t.physicalPage + BigInt(o), n);
      if (part === undefined) return undefined;
      part.copy(out, done);
      done += n;
    }
    return out;
  }

  /**
   * Translates `ranges` and brings their bytes into the physical layer's cache in one batch,
   * without assembling anything; unmapped parts are skipped (the reads that follow report them).
   * Without a cache below, it does nothing.
   */
  async prefetch(ranges: readonly VirtualRange[], opts?: CallOptions): Promise<void> {
    const physical = this.physical as PhysicalMemory & { prefetch?: (r: readonly PhysicalRange[], o?: CallOptions) => Promise<void> };
    if (!physical.prefetch || physical.generation === undefined) return;
    this.#checkGeneration();
    // pieces on pages already translated go straight to `found`; the others wait for their walk
    const found: PhysicalRange[] = [];
    const later: Array<{ vpn: bigint; offset: bigint; length: number }> = [];
    const unknown = new Set<bigint>();
    for (const r of ranges) {
      if (!Number.isSafeInteger(r.length) || r.length <= 0 || r.length > MAX_PEEK || r.address < 0n) continue;
      // (the sum is made only near the top, where it may pass 2^64: a bigint less per range elsewhere)
      if (r.address >= NEAR_U64_LIMIT && r.address + BigInt(r.length) > U64_LIMIT) continue;
      for (let done = 0; done < r.length; ) {
        const va = done === 0 ? r.address : r.address + BigInt(done);
        const offset = va & OFFSET_MASK;
        const length = Math.min(r.length - done, PAGE_SIZE - Number(offset));
        const vpn = va >> 12n;
        const t = this.#settled(vpn);
        if (t !== undefined) found.push({ address: t.physicalPage + offset, length });
        else {
          later.push({ vpn, offset, length });
          unknown.add(vpn);
        }
        done += length;
      }
    }
    if (unknown.size > 0) {
      const walked = new Map<bigint, PageTranslation>();
      const walk = async (list: bigint[]) => {
        for (let i = 0; i < list.length; i += TRANSLATE_BATCH) {
          const batch = list.slice(i, i + TRANSLATE_BATCH);
          const settled = await Promise.allSettled(batch.map((p) => this.#translatePage(p << 12n, opts)));
          settled.forEach((s, k) => {
            if (s.status === 'fulfilled') walked.set(batch[k], s.value);
            else if (isFatalReadError(s.reason)) throw s.reason;
          });
        }
      };
      // one page of each 2 MiB first: the direct map is made of large pages, and once one walk finds
      // one, every other page in it is settled without a walk of its own (thousands of walks a stage)
      const first = new Map<bigint, bigint>();
      for (const vpn of unknown) if (!first.has(vpn >> 9n)) first.set(vpn >> 9n, vpn);
      await walk([...first.values()]);
      await walk([...unknown].filter((vpn) => !walked.has(vpn) && this.#settled(vpn) === undefined));
      for (const p of later) {
        const t = walked.get(p.vpn) ?? this.#settled(p.vpn);
        if (t) found.push({ address: t.physicalPage + p.offset, length: p.length });
      }
    }
    if (found.length > 0) await physical.prefetch(found, opts);
  }

  /** Several ranges with one batched call to the physical layer; all or nothing. */
  async readMany(ranges: readonly VirtualRange[], opts?: CallOptions): Promise<Buffer[]> {
    const plans = ranges.map((r) => this.#chunks(r));
    const translated = await this.#translateAll(plans, opts);
    const physicalRanges: PhysicalRange[] = [];
    const where: { range: number; offset: number }[] = [];
    for (const [i, chunks] of plans.entries()) {
      for (const c of chunks) {
        const address = translated.get(c)!.physicalPage + (c.virtual & ~PAGE_MASK);
        const prev = physicalRanges[physicalRanges.length - 1];
        const prevWhere = where[where.length - 1];
        // Pieces of one range that are physically adjacent too go down as one read.
        if (prev && prevWhere.range === i && prev.address + BigInt(prev.length) === address && prevWhere.offset + prev.length === c.offset) {
          prev.length += c.length;
        } else {
          physicalRanges.push({ address, length: c.length });
          where.push({ range: i, offset: c.offset });
        }
      }
    }
    const bufs = physicalRanges.length > 0 ? await this.physical.readRanges(physicalRanges, opts) : [];
    const out = ranges.map((r) => Buffer.alloc(r.length));
    for (const [k, w] of where.entries()) {
      const want = physicalRanges[k];
      if (bufs[k]?.length !== want.length) {
        throw new MemoryReadError(want.address, want.length, `${this.physical.name} returned ${bufs[k]?.length ?? 0} bytes`);
      }
      bufs[k].copy(out[w.range], w.offset);
    }
    return out;
  }

  /**
   * Writes `data` at `va` only if every page it touches is present and writable (effective rights
   * through all levels); otherwise nothing is written and PageFaultError names the first refused page.
   */
  async write(va: bigint, data: Buffer, opts?: CallOptions): Promise<void> {
    if (!this.physical.write) throw new VmiError('ENOTSUP', `${this.physical.name}: cannot write guest memory`);
    const chunks = this.#chunks({ address: va, length: data.length });
    const translated = await this.#translateAll([chunks], opts);
    for (const c of chunks) {
      const { t } = translated.get(c)!;
      if (!t.writable) throw new PageFaultError(this.name, c.virtual, t.level, t.entry, 'is not writable');
    }
    for (const c of chunks) {
      const address = translated.get(c)!.physicalPage + (c.virtual & ~PAGE_MASK);
      await this.physical.write(address, data.subarray(c.offset, c.offset + c.length), opts);
    }
  }

  async readU8(va: bigint, opts?: CallOptions): Promise<number> {
    return (await this.read(va, 1, opts)).readUInt8(0);
  }

  async readU16(va: bigint, opts?: CallOptions): Promise<number> {
    return (await this.read(va, 2, opts)).readUInt16LE(0);
  }

  async readU32(va: bigint, opts?: CallOptions): Promise<number> {
    return (await this.read(va, 4, opts)).readUInt32LE(0);
  }

  async readI32(va: bigint, opts?: CallOptions): Promise<number> {
    return (await this.read(va, 4, opts)).readInt32LE(0);
  }

  async readU64(va: bigint, opts?: CallOptions): Promise<bigint> {
    return (await this.read(va, 8, opts)).readBigUInt64LE(0);
  }

  async readI64(va: bigint, opts?: CallOptions): Promise<bigint> {
    return (await this.read(va, 8, opts)).readBigInt64LE(0);
  }

  /** A pointer is 8 bytes on x86-64. */
  readPointer(va: bigint, opts?: CallOptions): Promise<bigint> {
    return this.readU64(va, opts);
  }

  /**
   * The bytes at `va` up to (not including) the first NUL, reading at most `maxLength` bytes: a
   * string with no NUL within the bound comes back cut at `maxLength`. Reads page by page, so a
   * short string next to an unmapped page still reads.
   */
  async readCBytes(va: bigint, maxLength: number, opts?: CallOptions): Promise<Buffer> {
    if (!Number.isSafeInteger(maxLength) || maxLength < 0 || maxLength > MAX_READ_LENGTH) {
      throw new MemoryReadError(va, 0, `invalid maxLength ${maxLength}`);
    }
    const parts: Buffer[] = [];
    let done = 0;
    while (done < maxLength) {
      const at = va + BigInt(done);
      const n = Math.min(maxLength - done, PAGE_SIZE - Number(at & ~PAGE_MASK));
      const part = await this.read(at, n, opts);
      const nul = part.indexOf(0);
      if (nul >= 0) {
        parts.push(part.subarray(0, nul));
        break;
      }
      parts.push(part);
      done += n;
    }
    return Buffer.concat(parts);
  }

  /** readCBytes decoded as UTF-8 (invalid sequences become U+FFFD); escape before printing. */
  async readCString(va: bigint, maxLength: number, opts?: CallOptions): Promise<string> {
    return guestString(await this.readCBytes(va, maxLength, opts));
  }

  /** Splits a range into per-page pieces, checking it first. */
  #chunks(r: VirtualRange): Chunk[] {
    if (!Number.isSafeInteger(r.length) || r.length < 0 || r.length > MAX_READ_LENGTH) {
      throw new MemoryReadError(r.address, Number.isFinite(r.length) ? r.length : 0, `invalid length ${r.length}`);
    }
    if (r.address < 0n || r.address + BigInt(r.length) > U64_LIMIT) {
      throw new MemoryReadError(r.address, r.length, 'outside the 64-bit address space');
    }
    const chunks: Chunk[] = [];
    let offset = 0;
    while (offset < r.length) {
      const virtual = r.address + BigInt(offset);
      const length = Math.min(r.length - offset, PAGE_SIZE - Number(virtual & ~PAGE_MASK));
      chunks.push({ virtual, length, offset });
      offset += length;
    }
    return chunks;
  }

  /**
   * Translates every chunk, in parallel batches so page-table reads pipeline, then reports the
   * first fault in address order (of the first range that has one).
   */
  async #translateAll(plans: Chunk[][], opts?: CallOptions): Promise<Map<Chunk, PageTranslation>> {
    const all = plans.flat();
    const result = new Map<Chunk, PageTranslation>();
    const failed = new Map<Chunk, unknown>();
    for (let i = 0; i < all.length; i += TRANSLATE_BATCH) {
      const batch = all.slice(i, i + TRANSLATE_BATCH);
      const settled = await Promise.allSettled(batch.map((c) => this.#translatePage(c.virtual, opts)));
      settled.forEach((s, k) => (s.status === 'fulfilled' ? result.set(batch[k], s.value) : failed.set(batch[k], s.reason)));
    }
    for (const c of all) {
      if (!failed.has(c)) continue;
      const err = failed.get(c);
      // A shared walk started for another offset in this page names that address: redo it for ours.
      if (err instanceof PageFaultError && err.address !== c.virtual) {
        this.#tlb.delete(c.virtual >> 12n);
        await this.#translatePage(c.virtual, opts);
      }
      throw err;
    }
    return result;
  }

  /** Drops the translations when the physical layer's generation moved on (the VM ran). */
  #checkGeneration(): void {
    const generation = this.physical.generation;
    if (generation !== this.#tlbGeneration) {
      this.#clearTranslations();
      this.#tlbGeneration = generation;
    }
  }

  /** Remembers a settled translation of the page `key` (va >> 12), and of its large page. */
  #keep(key: bigint, va: bigint, t: PageTranslation): void {
    this.#resolved.set(key, t);
    if (t.t.pageSize === 0x200000) this.#large2M.set(va >> 21n, t);
    else if (t.t.pageSize === 0x40000000) this.#large1G.set(va >> 30n, t);
  }

  #translatePage(va: bigint, opts?: CallOptions): Promise<PageTranslation> {
    const generation = this.physical.generation;
    const walk = () =>
      this.pageTable.translate(va, opts).then((t) => {
        const physicalPage = t.physical & PAGE_MASK;
        return { physicalPage, ppn: physicalPage >> 12n, t };
      });
    if (generation === undefined) return walk();
    this.#checkGeneration();
    const key = va >> 12n;
    const cached = this.#tlb.get(key);
    if (cached) return cached;
    const settled = this.#settled(key);
    if (settled) return Promise.resolve(settled);
    // every table entry already cached: settled at once, with no promise per level
    const now = this.pageTable.translateCached(va);
    if (now) {
      if (this.#resolved.size >= this.#maxCached) this.#clearTranslations();
      const physicalPage = now.physical & PAGE_MASK;
      const t = { physicalPage, ppn: physicalPage >> 12n, t: now };
      this.#keep(key, va, t);
      return Promise.resolve(t);
    }
    if (this.#tlb.size >= this.#maxCached) this.#clearTranslations();
    const p = walk();
    this.#tlb.set(key, p);
    // Faults are not cached: the guest may map the page later, and retrying is cheap through the page cache.
    p.then(
      (t) => {
        if (this.#tlb.get(key) !== p || this.#tlbGeneration !== generation) return;
        this.#keep(key, va, t);
      },
      () => {
        if (this.#tlb.get(key) === p) this.#tlb.delete(key);
      },
    );
    return p;
  }
}
