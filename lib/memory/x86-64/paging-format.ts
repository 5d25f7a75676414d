/**
 * x86-64 paging formats as data (Volatility's idea: the walker is generic, the format is a table).
 * Each level takes 9 bits of the virtual address; levels that allow a large page say how big it is.
 * Numbers follow the SDM's naming: 5 = PML5, 4 = PML4, 3 = PDPT, 2 = PD, 1 = PT.
 */
export interface PagingLevel {
  /** 5 for PML5 down to 1 for PT; PageFaultError.level carries this number. */
  readonly level: number;
  readonly name: string;
  /** The lowest virtual-address bit this level indexes with. */
  readonly shift: bigint;
  /** Size of the page a PS=1 entry maps here, or undefined when PS is reserved at this level. */
  readonly largePageSize?: bigint;
}

export interface PagingFormat {
  readonly name: string;
  /** Virtual-address width: the top bit of it is sign-extended through bit 63 (canonical form). */
  readonly virtualBits: number;
  /** Top level first. */
  readonly levels: readonly PagingLevel[];
}

const ENTRY_INDEX_BITS = 9n;
export const ENTRIES_PER_TABLE = 1 << Number(ENTRY_INDEX_BITS);
export const TABLE_INDEX_MASK = (1n << ENTRY_INDEX_BITS) - 1n;

const PML5: PagingLevel = { level: 5, name: 'PML5', shift: 48n };
const PML4: PagingLevel = { level: 4, name: 'PML4', shift: 39n };
// 1 GiB pages need CPU support (pdpe1gb); Linux only creates them when the CPU has it, so a PS=1
// PDPT entry seen in a real guest is valid.
const PDPT: PagingLevel = { level: 3, name: 'PDPT', shift: 30n, largePageSize: 1n << 30n };
const PD: PagingLevel = { level: 2, name: 'PD', shift: 21n, largePageSize: 1n << 21n };
// Level 1 always maps a 4 KiB page; bit 7 there is PAT, not PS.
const PT: PagingLevel = { level: 1, name: 'PT', shift: 12n, largePageSize: 1n << 12n };

/** 4-level paging (CR4.LA57 = 0): 48-bit virtual addresses. */
export const X86_64_4LEVEL: PagingFormat = { name: 'x86-64 4-level', virtualBits: 48, levels: [PML4, PDPT, PD, PT] };

/** 5-level paging (CR4.LA57 = 1): 57-bit virtual addresses. */
export const X86_64_5LEVEL: PagingFormat = { name: 'x86-64 5-level', virtualBits: 57, levels: [PML5, PML4, PDPT, PD, PT] };

/** CR4.LA57 is bit 12: the paging format the vCPU uses follows from CR4. */
export const CR4_LA57 = 1n << 12n;

export function pagingFormatForCr4(cr4: bigint): PagingFormat {
  return (cr4 & CR4_LA57) !== 0n ? X86_64_5LEVEL : X86_64_4LEVEL;
}

/** The format of 4- or 5-level paging. */
export function pagingFormatForLevels(levels: 4 | 5): PagingFormat {
  return levels === 5 ? X86_64_5LEVEL : X86_64_4LEVEL;
}

/** Index into the table at `level` for virtual address `va`. */
export function tableIndex(level: PagingLevel, va: bigint): number {
  return Number((va >> level.shift) & TABLE_INDEX_MASK);
}
