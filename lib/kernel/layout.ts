/**
 * Where the running kernel keeps what in its virtual address space (Documentation/arch/x86/
 * x86_64/mm.rst). User space is the lower canonical half, the kernel the upper one; their width
 * is the paging mode's (47 bits each under 4-level paging, 56 under 5-level). Inside the kernel
 * half lie, in ascending order, a guard hole and the LDT remap, the direct map of all physical
 * memory (page_offset_base), vmalloc/ioremap space (vmalloc_base), the struct page array
 * (vmemmap_base), then cpu_entry_area, the kernel image at __START_KERNEL_map and modules.
 *
 * The three bases move with the paging mode and, under CONFIG_RANDOMIZE_MEMORY, with every boot:
 * they are read from the kernel's variables (CONFIG_DYNAMIC_MEMORY_LAYOUT, which both of those
 * select), never assumed. A kernel built without them has one fixed layout that vmictl does not
 * hard-code: it then knows only the two halves.
 */
import { ValidationError } from '../errors';
import type { CallOptions } from '../util/deadline';
import { pagingFormatForLevels, type PagingFormat } from '../memory/x86-64/paging-format';
import { START_KERNEL_MAP } from './kaslr';

/** MODULES_VADDR is __START_KERNEL_map + KERNEL_IMAGE_SIZE: 512 MiB, or 1 GiB with KASLR. */
const MODULES_LOWEST = START_KERNEL_MAP + 0x20000000n;
/** The end of the range a kernel pointer may lie in (the last page is ERR_PTR values). */
const KERNEL_POINTER_END = (1n << 64n) - 4096n;
/** The bases are randomized in PUD_SIZE (1 GiB) steps (arch/x86/mm/kaslr.c), in both modes. */
const BASE_ALIGN = 1n << 30n;
const PAGE_SIZE = 4096n;

export type Region = 'user space' | 'direct map' | 'vmalloc space' | 'vmemmap' | 'kernel image' | 'module space' | 'kernel half' | 'non-canonical';

/** The bases the kernel's variables hold (runtime addresses). */
export interface MemoryBases {
  /** page_offset_base: the direct map of physical memory (__va(0)). */
  pageOffset: bigint;
  /** vmalloc_base: VMALLOC_START. */
  vmallocStart: bigint;
  /** vmemmap_base: the struct page of pfn 0. */
  vmemmapStart: bigint;
}

export class KernelLayout {
  /** The page-table format of the kernel's and every process's address space. */
  readonly format: PagingFormat;
  /** The first address above user space (TASK_SIZE_MAX rounded up to its guard page). */
  readonly userTop: bigint;
  /** The lowest canonical kernel-half address. */
  readonly kernelHalf: bigint;
  /** The lowest address a pointer to kernel data can hold: the direct map's start, when known. */
  readonly lowestData: bigint;

  constructor(
    readonly pagingLevels: 4 | 5,
    /** undefined for a kernel without the variables (fixed layout). */
    readonly bases: MemoryBases | undefined,
    /** sizeof(struct page), to bound the vmemmap (64 on x86-64 unless debug options grow it). */
    readonly pageStructSize = 64,
  ) {
    this.format = pagingFormatForLevels(pagingLevels);
    this.userTop = 1n << BigInt(this.format.virtualBits - 1);
    this.kernelHalf = (1n << 64n) - this.userTop;
    this.lowestData = bases?.pageOffset ?? this.kernelHalf;
    if (bases) checkBases(this, bases);
  }

  /** Whether `p` is a plausible pointer to kernel data or code (not null, not user, not ERR_PTR). */
  isKernelPointer(p: bigint): boolean {
    return p >= this.lowestData && p < KERNEL_POINTER_END;
  }

  /** Whether `p` is a user-space address (below the kernel's TASK_SIZE_MAX bound). */
  isUserAddress(p: bigint): boolean {
    return p >= 0n && p < this.userTop;
  }

  /** The region `p` falls in, for messages. */
  regionOf(p: bigint): Region {
    if (p >= 0n && p < this.userTop) return 'user space';
    if (p < this.kernelHalf || p >= 1n << 64n) return 'non-canonical';
    if (p >= MODULES_LOWEST) return 'module space';
    if (p >= START_KERNEL_MAP) return 'kernel image';
    const b = this.bases;
    if (b) {
      if (p >= b.pageOffset && p < b.vmallocStart) return 'direct map';
      if (p >= b.vmallocStart && p < b.vmemmapStart) return 'vmalloc space';
      // one struct page per page of the span the direct map may cover
      const vmemmapEnd = b.vmemmapStart + (b.vmallocStart - b.pageOffset) / PAGE_SIZE * BigInt(this.pageStructSize);
      if (p >= b.vmemmapStart && p < vmemmapEnd) return 'vmemmap';
    }
    return 'kernel half';
  }
}

function checkBases(layout: KernelLayout, b: MemoryBases): void {
  const hex = (v: bigint) => `0x${v.toString(16)}`;
  const named: Array<[string, bigint]> = [['page_offset_base', b.pageOffset], ['vmalloc_base', b.vmallocStart], ['vmemmap_base', b.vmemmapStart]];
  for (const [name, v] of named) {
    if (v < layout.kernelHalf || v >= START_KERNEL_MAP || v % BASE_ALIGN !== 0n) {
      throw new ValidationError(`${name} holds ${hex(v)}, not a 1 GiB-aligned base in the kernel half of ${layout.pagingLevels}-level paging`);
    }
  }
  if (!(b.pageOffset < b.vmallocStart && b.vmallocStart < b.vmemmapStart)) {
    throw new ValidationError(`page_offset_base ${hex(b.pageOffset)}, vmalloc_base ${hex(b.vmallocStart)} and vmemmap_base ${hex(b.vmemmapStart)} are not in the kernel's order`);
  }
}

/** What readKernelLayout needs of the kernel: runtime symbols and 8-byte reads of its memory. */
export interface LayoutSource {
  hasSymbol(name: string): boolean;
  symbol(name: string): bigint;
  readU64(address: bigint, opts?: CallOptions): Promise<bigint>;
  /** sizeof(struct page), when the profile knows it. */
  pageStructSize?: number;
}

/** Reads the running kernel's layout from its variables (see the file comment). */
export async function readKernelLayout(src: LayoutSource, pagingLevels: 4 | 5, opts: CallOptions = {}): Promise<KernelLayout> {
  const names = ['page_offset_base', 'vmalloc_base', 'vmemmap_base'] as const;
  let bases: MemoryBases | undefined;
  if (names.every((n) => src.hasSymbol(n))) {
    const [pageOffset, vmallocStart, vmemmapStart] = await Promise.all(names.map((n) => src.readU64(src.symbol(n), opts)));
    bases = { pageOffset, vmallocStart, vmemmapStart };
  }
  return new KernelLayout(pagingLevels, bases, src.pageStructSize);
}
