/**
 * The x86-64 translation layer: knows how to map a virtual address to a physical one through the
 * page tables in a PhysicalMemory, and nothing else (reading, caching and typed access live in
 * AddressSpace). The format (4- or 5-level) is a table from paging-format.ts.
 */
import { MemoryReadError, PageFaultError } from '../../errors';
import type { CallOptions } from '../../util/deadline';
import type { PhysicalMemory } from '../physical';
import { isCanonical } from './canonical';
import { decodeCr3, type DecodedCr3 } from './cr3';
import { ARCH_ADDRESS_BITS, physicalAddressMask, PTE_NX, PTE_PAGE_SIZE, PTE_PRESENT, PTE_USER, PTE_WRITABLE } from './entry';
import { mappings, type MappedRange, type MappingsOptions } from './mappings';
import { pagingFormatForCr4, tableIndex, X86_64_4LEVEL, type PagingFormat, type PagingLevel } from './paging-format';
import { readU64LE } from '../../util/bytes';

export interface Translation {
  /** The physical address `va` maps to. */
  physical: bigint;
  /** Size of the page that maps it: 4096, 2 MiB or 1 GiB. */
  pageSize: number;
  /** Effective rights: writable and user need the bit at every level, NX at any one level. */
  writable: boolean;
  user: boolean;
  nx: boolean;
  /** Level of the leaf entry: 1 for a 4 KiB page, 2 for 2 MiB, 3 for 1 GiB. */
  level: number;
  /** The leaf entry itself. */
  entry: bigint;
}

export interface PageTableOptions {
  /** 4-level unless given; `cr4` picks it from CR4.LA57 instead. */
  format?: PagingFormat;
  cr4?: bigint;
  /** MAXPHYADDR; 52 when unknown. Set bits above it fault as reserved, as on the CPU. */
  physicalBits?: number;
  /** Keep CR3 bit 12 as an address bit (kernels built without page-table isolation). */
  keepKptiBit?: boolean;
  /** Names this layer in PageFaultError messages. */
  name?: string;
}

/** Where a walk is between two levels. */
interface Walk {
  table: bigint;
  parent: bigint;
  writable: boolean;
  user: boolean;
  nx: boolean;
}

export class X86PageTable {
  readonly format: PagingFormat;
  readonly cr3: DecodedCr3;
  readonly name: string;
  readonly physical: PhysicalMemory;
  readonly #addressMask: bigint;

  constructor(physical: PhysicalMemory, cr3: bigint, opts: PageTableOptions = {}) {
    this.physical = physical;
    this.format = opts.format ?? (opts.cr4 !== undefined ? pagingFormatForCr4(opts.cr4) : X86_64_4LEVEL);
    this.cr3 = decodeCr3(cr3, { physicalBits: opts.physicalBits, keepKptiBit: opts.keepKptiBit });
    this.name = opts.name ?? `${this.format.name} @0x${this.cr3.root.toString(16)}`;
    this.#addressMask = physicalAddressMask(opts.physicalBits ?? 52);
  }

  /** Physical address of the top-level table. */
  get root(): bigint {
    return this.cr3.root;
  }

  /** Address bits of an entry (51:12 narrowed to MAXPHYADDR). */
  entryAddress(entry: bigint): bigint {
    return entry & this.#addressMask;
  }

  /** Why an entry is unusable beyond not being present, or undefined if it is fine at `level`. */
  entryProblem(level: PagingLevel, entry: bigint): string | undefined {
    if ((entry & ARCH_ADDRESS_BITS & ~this.#addressMask) !== 0n) return 'has reserved address bits set';
    if ((entry & PTE_PAGE_SIZE) !== 0n && level.level !== 1 && level.largePageSize === undefined) {
      return 'has reserved bit 7 (PS) set';
    }
    return undefined;
  }

  /** Whether `entry` at `level` maps a page rather than pointing at a lower table. */
  isLeaf(level: PagingLevel, entry: bigint): boolean {
    return level.level === 1 || ((entry & PTE_PAGE_SIZE) !== 0n && level.largePageSize !== undefined);
  }

  /** Reads one 8-byte entry; a table outside readable memory is a fault of the entry that named it. */
  async readEntry(va: bigint, level: PagingLevel, entryAddress: bigint, parent: bigint, opts?: CallOptions): Promise<bigint> {
    let buf: Buffer | undefined = this.physical.peek?.(entryAddress, 8);
    if (buf) return readU64LE(buf, 0);
    try {
      buf = await this.physical.read(entryAddress, 8, opts);
    } catch (err) {
      if (err instanceof MemoryReadError) {
        throw new PageFaultError(this.name, va, level.level, parent, `table at 0x${(entryAddress & ~0xfffn).toString(16)} is unreadable (${err.message})`);
      }
      throw err;
    }
    return readU64LE(buf, 0);
  }

  /**
   * Maps `va` or throws PageFaultError naming `va`, the level (5 = PML5 … 1 = PT) and the entry that
   * stopped the walk. A non-canonical address faults at the top level with entry 0.
   */
  async translate(va: bigint, opts?: CallOptions): Promise<Translation> {
    const top = this.format.levels[0];
    if (!isCanonical(va, this.format.virtualBits)) {
      throw new PageFaultError(this.name, va, top.level, 0n, `is not canonical for ${this.format.virtualBits}-bit addresses`);
    }
    const w = this.#start();
    for (const level of this.format.levels) {
      const entry = await this.readEntry(va, level, w.table + BigInt(tableIndex(level, va) * 8), w.parent, opts);
      const t = this.#step(va, level, entry, w);
      if (t) return t;
    }
    // Unreachable: level 1 is always a leaf.
    throw new PageFaultError(this.name, va, 1, w.parent, 'walk ended without a leaf');
  }

  /**
   * What translate() gives when every entry of the walk is already cached below (peek) and the
   * walk ends in a mapping, without a promise; undefined otherwise (translate() then reads what is
   * missing and names the fault). A stage of a collection walks hundreds of times.
   */
  translateCached(va: bigint): Translation | undefined {
    const peek = this.physical.peek;
    if (!peek || !isCanonical(va, this.format.virtualBits)) return undefined;
    const w = this.#start();
    for (const level of this.format.levels) {
      const buf = peek.call(this.physical, w.table + BigInt(tableIndex(level, va) * 8), 8, true);
      if (!buf) return undefined;
      let t: Translation | undefined;
      try {
        t = this.#step(va, level, readU64LE(buf, 0), w);
      } catch (err) {
        if (err instanceof PageFaultError) return undefined;
        throw err;
      }
      if (t) return t;
    }
    return undefined;
  }

  #start(): Walk {
    return { table: this.cr3.root, parent: this.cr3.root, writable: true, user: true, nx: false };
  }

  /** Takes the entry of `level` into the walk: the translation at a leaf, undefined to go on, PageFaultError for a bad entry. */
  #step(va: bigint, level: PagingLevel, entry: bigint, w: Walk): Translation | undefined {
    if ((entry & PTE_PRESENT) === 0n) throw new PageFaultError(this.name, va, level.level, entry, 'not present');
    const problem = this.entryProblem(level, entry);
    if (problem) throw new PageFaultError(this.name, va, level.level, entry, problem);
    w.writable &&= (entry & PTE_WRITABLE) !== 0n;
    w.user &&= (entry & PTE_USER) !== 0n;
    w.nx ||= (entry & PTE_NX) !== 0n;
    if (this.isLeaf(level, entry)) {
      const size = level.largePageSize!;
      // For large pages bit 12 is PAT and the bits below the page size are not address bits.
      const frame = this.entryAddress(entry) & ~(size - 1n);
      return { physical: frame | (va & (size - 1n)), pageSize: Number(size), writable: w.writable, user: w.user, nx: w.nx, level: level.level, entry };
    }
    w.parent = entry;
    w.table = this.entryAddress(entry);
    return undefined;
  }

  /** Mapped ranges in ascending virtual order, bounded (see mappings.ts). */
  mappings(opts?: MappingsOptions): AsyncGenerator<MappedRange> {
    return mappings(this, opts);
  }
}
