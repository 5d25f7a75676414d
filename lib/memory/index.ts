/**
 * The memory layer: guest-physical memory backends (gdbstub, /proc/<tid>/mem, ELF dump), a page
 * cache over any of them, the x86-64 translation layer, and virtual address spaces built on those.
 * It knows nothing of kernel types.
 */
export { type PhysicalMemory, type PhysicalRange, MAX_PHYSICAL_ADDRESS, MAX_READ_LENGTH } from './physical';
export { PAGE_SIZE } from './pages';
export { GdbstubPhysicalMemory, type GdbMemoryPort } from './gdbstub-backend';
export { openProcMem, ProcMemPhysicalMemory, type QmpPort, type ProcMemOptions, type ProcMemOpenResult, type MappedRamRegion } from './procmem-backend';
export { parseGpa2hva, parseMtreeFlat, type RamRegion, type Gpa2hvaReply } from './qemu-ram-map';
export { ElfDumpMemory, type DumpSegment } from './elf-dump';
export { DumpFormatError, type ElfNote } from './elf-core';
export { type DumpVcpu, type SegmentState } from './elf-notes';
export { PageCache, type PageCacheOptions, type PageCacheStats } from './page-cache';
export { AddressSpace, type AddressSpaceOptions, type VirtualRange } from './address-space';
export * from './x86-64';
