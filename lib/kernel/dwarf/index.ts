/**
 * Our own DWARF reader (versions 2 to 5, ELF64 little-endian): enough of .debug_info to extract
 * the C types and global variables of a program (a vmlinux) into the ISF model.
 *
 * `readDwarf(elf)` is the entry point; `ElfFile` gives section access for other readers (the
 * symbol table, .rodata).
 */
import { VmiError } from '../../errors';
import { ElfFile } from './elf';
import { extractTypes, type ExtractOptions } from './extract';
import type { DwarfSections } from './info';
import type { DwarfModel } from './model';

export { ElfFile, type ElfSection, SHF_ALLOC, SHF_COMPRESSED } from './elf';
export { extractTypes, type ExtractOptions } from './extract';
export type { DwarfSections } from './info';
export type * from './model';

/** The DWARF sections of an ELF file, inflated when compressed; absent ones are empty. */
export function readDwarfSections(elf: ElfFile): DwarfSections {
  const get = (name: string): Buffer => (elf.section(name) ? elf.relocatedSectionData(name) : Buffer.alloc(0));
  const info = get('.debug_info');
  if (info.length === 0) {
    throw new VmiError('ENODWARF', `${elf.name}: no .debug_info section (is this a debug build of the kernel, e.g. the -dbg package's vmlinux?)`);
  }
  return {
    info,
    abbrev: get('.debug_abbrev'),
    str: get('.debug_str'),
    lineStr: get('.debug_line_str'),
    strOffsets: get('.debug_str_offsets'),
    addr: get('.debug_addr'),
    types: get('.debug_types'),
  };
}

/** Extracts the types and variables of an ELF file's DWARF. */
export function readDwarf(elf: ElfFile, opts: ExtractOptions = {}): DwarfModel {
  return extractTypes(readDwarfSections(elf), opts);
}
