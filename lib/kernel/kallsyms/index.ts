/**
 * The kernel's own symbol table, read from guest memory: `findKallsyms(phys, ram)` scans RAM for
 * the kallsyms tables, decodes every name and address, and places the kernel image (KASLR) with
 * them; `decodeKallsyms(window, tokenIndexOffset)` is the decoder on its own.
 */
export { findKallsyms, KallsymsNotFoundError, LINK_TEXT, type GuestKallsyms } from './scan';
export { decodeKallsyms, tokenIndexCandidates, tokenTableBefore, type KallsymsEntry, type KallsymsTables } from './tables';
