/** x86-64 paging: formats as tables, CR3 decoding, the translation layer and mapping enumeration. */
export { X86_64_4LEVEL, X86_64_5LEVEL, CR4_LA57, pagingFormatForCr4, pagingFormatForLevels, type PagingFormat, type PagingLevel } from './paging-format';
export { PTE_PRESENT, PTE_WRITABLE, PTE_USER, PTE_PAGE_SIZE, PTE_NX, physicalAddressMask } from './entry';
export { decodeCr3, CR3_KPTI_USER_BIT, type DecodedCr3, type Cr3Options } from './cr3';
export { isCanonical, canonicalize } from './canonical';
export { X86PageTable, type Translation, type PageTableOptions } from './translate';
export { mappings, type MappedRange, type MappingsOptions } from './mappings';
