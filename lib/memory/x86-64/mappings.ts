/**
 * Enumerates what a page table maps, in virtual-address order: the raw material for scanning
 * (finding the kernel image, listing a process's memory). Tables are read a whole 4 KiB page at a
 * time. The page tables are guest data, so the walk is bounded: a caller's `maxMappings` ends it
 * quietly, while `maxTables` (a structure too big or self-referencing to be real) fails it.
 */
import { MemoryReadError, ValidationError } from '../../errors';
import type { CallOptions } from '../../util/deadline';
import { canonicalize } from './canonical';
import { PTE_NX, PTE_PRESENT, PTE_USER, PTE_WRITABLE } from './entry';
import { ENTRIES_PER_TABLE, type PagingLevel } from './paging-format';
import type { X86PageTable } from './translate';

export interface MappedRange {
  /** First virtual address (canonical form). */
  virtual: bigint;
  physical: bigint;
  /** Bytes mapped (several pages when `merge` joined them). */
  size: bigint;
  writable: boolean;
  user: boolean;
  nx: boolean;
  /** Page size of the leaves: 4096, 2 MiB or 1 GiB. */
  pageSize: number;
}

export interface MappingsOptions extends CallOptions {
  /** Only ranges overlapping [start, end) (canonical addresses; end exclusive). Default: everything. */
  start?: bigint;
  end?: bigint;
  /** Stop after this many ranges. Default 1,048,576. */
  maxMappings?: number;
  /** Fail with ValidationError after reading this many tables. Default 65,536 (256 MiB of tables). */
  maxTables?: number;
  /** Join neighbours that are contiguous both virtually and physically with the same rights. Default true. */
  merge?: boolean;
  /** Told about tables that could not be read or entries with reserved bits; the walk skips them. */
  onSkip?: (virtual: bigint, level: number, why: string) => void;
}

interface Rights {
  writable: boolean;
  user: boolean;
  nx: boolean;
}

/** One table being walked: an explicit stack, since nested generators cost a step per level per yield. */
interface Frame {
  data: Buffer;
  depth: number;
  /** Virtual address (not yet sign-extended) that entry 0 maps. */
  base: bigint;
  rights: Rights;
  next: number;
}

const U64_MAX = (1n << 64n) - 1n;

/** Yields mapped ranges of `pt` in ascending virtual order. */
export async function* mappings(pt: X86PageTable, opts: MappingsOptions = {}): AsyncGenerator<MappedRange> {
  const bits = pt.format.virtualBits;
  const start = opts.start ?? 0n;
  const end = opts.end ?? U64_MAX + 1n;
  const maxMappings = opts.maxMappings ?? 1 << 20;
  const maxTables = opts.maxTables ?? 1 << 16;
  const merge = opts.merge ?? true;
  let tables = 0;
  let yielded = 0;
  let pending: MappedRange | undefined;

  async function load(table: bigint, depth: number, base: bigint, rights: Rights): Promise<Frame | undefined> {
    if (++tables > maxTables) {
      throw new ValidationError(`${pt.name}: page-table walk read more than ${maxTables} tables`, table);
    }
    try {
      return { data: await pt.physical.read(table, 4096, opts), depth, base, rights, next: 0 };
    } catch (err) {
      if (!(err instanceof MemoryReadError)) throw err;
      opts.onSkip?.(canonicalize(base, bits), pt.format.levels[depth].level, `table at 0x${table.toString(16)} unreadable`);
      return undefined;
    }
  }

  const stack: Frame[] = [];
  const top = await load(pt.root, 0, 0n, { writable: true, user: true, nx: false });
  if (top) stack.push(top);
  while (stack.length > 0) {
    const f = stack[stack.length - 1];
    if (f.next >= ENTRIES_PER_TABLE) {
      stack.pop();
      continue;
    }
    const i = f.next++;
    const level: PagingLevel = pt.format.levels[f.depth];
    const span = 1n << level.shift;
    const lo = f.base + BigInt(i) * span;
    const va = canonicalize(lo, bits);
    // Canonical addresses of the upper half sort after the lower half, as the indexes do.
    if (va + span <= start || va >= end) continue;
    const entry = f.data.readBigUInt64LE(i * 8);
    if ((entry & PTE_PRESENT) === 0n) continue;
    const problem = pt.entryProblem(level, entry);
    if (problem) {
      opts.onSkip?.(va, level.level, problem);
      continue;
    }
    const r: Rights = {
      writable: f.rights.writable && (entry & PTE_WRITABLE) !== 0n,
      user: f.rights.user && (entry & PTE_USER) !== 0n,
      nx: f.rights.nx || (entry & PTE_NX) !== 0n,
    };
    if (!pt.isLeaf(level, entry)) {
      const child = await load(pt.entryAddress(entry), f.depth + 1, lo, r);
      if (child) stack.push(child);
      continue;
    }
    const size = level.largePageSize!;
    const physical = pt.entryAddress(entry) & ~(size - 1n);
    if (merge && pending && pending.virtual + pending.size === va && pending.physical + pending.size === physical &&
        pending.writable === r.writable && pending.user === r.user && pending.nx === r.nx && pending.pageSize === Number(size)) {
      pending.size += size;
      continue;
    }
    const done = pending;
    pending = { virtual: va, physical, size, pageSize: Number(size), ...r };
    if (done) {
      yield done;
      if (++yielded >= maxMappings) return;
    }
  }
  if (pending) yield pending;
}
