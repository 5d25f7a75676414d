/**
 * Builds x86-64 page tables by hand in a SparseMemory: tables come from a bump allocator, map()
 * creates the intermediate tables (present, writable, user unless told otherwise) and writes the
 * leaf with the rights asked for.
 */
import type { SparseMemory } from './sparse-memory';

export const P = 1n;
export const RW = 1n << 1n;
export const US = 1n << 2n;
export const PS = 1n << 7n;
export const NX = 1n << 63n;

export const KiB4 = 4096n;
export const MiB2 = 1n << 21n;
export const GiB1 = 1n << 30n;

export interface LeafFlags {
  writable?: boolean;
  user?: boolean;
  nx?: boolean;
}

export class PageTableBuilder {
  readonly mem: SparseMemory;
  readonly levels: 4 | 5;
  readonly root: bigint;
  #next: bigint;

  /** Tables are allocated from `tableBase` upwards (4 KiB aligned; use an 8 KiB aligned base for KPTI tests). */
  constructor(mem: SparseMemory, levels: 4 | 5, tableBase: bigint) {
    this.mem = mem;
    this.levels = levels;
    this.#next = tableBase;
    this.root = this.alloc();
  }

  alloc(): bigint {
    const t = this.#next;
    this.#next += 4096n;
    this.mem.writeSync(t, Buffer.alloc(4096));
    return t;
  }

  /** Physical address of the entry for `va` at `level` (5..1), creating tables above it as needed. */
  entryAddress(va: bigint, level: number, create = true): bigint {
    let table = this.root;
    for (let l = this.levels; l >= level; l--) {
      const at = table + ((va >> BigInt(12 + 9 * (l - 1))) & 511n) * 8n;
      if (l === level) return at;
      let e = this.mem.readU64(at);
      if ((e & P) === 0n) {
        if (!create) throw new Error(`no table at level ${l}`);
        e = this.alloc() | P | RW | US;
        this.mem.writeU64(at, e);
      }
      table = e & 0x000ffffffffff000n;
    }
    throw new Error('unreachable');
  }

  /** Maps one page of `size` (4 KiB, 2 MiB or 1 GiB) at `va` to `pa`. */
  map(va: bigint, pa: bigint, size: bigint = KiB4, flags: LeafFlags = {}): void {
    const level = size === KiB4 ? 1 : size === MiB2 ? 2 : 3;
    let e = pa | P;
    if (flags.writable ?? true) e |= RW;
    if (flags.user ?? false) e |= US;
    if (flags.nx ?? false) e |= NX;
    if (level > 1) e |= PS;
    this.mem.writeU64(this.entryAddress(va, level), e);
  }

  /** Overwrites the entry for `va` at `level` (to clear bits in an intermediate entry, say). */
  setEntry(va: bigint, level: number, value: bigint): void {
    this.mem.writeU64(this.entryAddress(va, level), value);
  }

  getEntry(va: bigint, level: number): bigint {
    return this.mem.readU64(this.entryAddress(va, level, false));
  }
}
