/**
 * The ELF symbol table (.symtab) of a vmlinux: name → address (bigint) and size.
 */
import { ValidationError } from '../../errors';
import { SHT_SYMTAB, type ElfFile } from '../dwarf/elf';

export const STT_NOTYPE = 0;
export const STT_OBJECT = 1;
export const STT_FUNC = 2;
export const STT_SECTION = 3;
export const STT_FILE = 4;
export const STB_LOCAL = 0;
export const STB_GLOBAL = 1;
export const STB_WEAK = 2;
const SHN_UNDEF = 0;

export interface ElfSymbol {
  name: string;
  address: bigint;
  size: bigint;
  /** STT_* */
  type: number;
  /** STB_* */
  bind: number;
  /** Index of the section the symbol is in (0xfff1 for absolute symbols). */
  shndx: number;
}

/**
 * Reads .symtab (or, without it, .dynsym). Section and file symbols, undefined symbols and
 * unnamed ones are left out. For a name defined more than once (static symbols of different
 * files), a global or weak symbol wins over a local one, and otherwise the first one stays.
 */
export function readSymtab(elf: ElfFile): Map<string, ElfSymbol> {
  const out = new Map<string, ElfSymbol>();
  const sec = elf.sections.find((s) => s.type === SHT_SYMTAB) ?? elf.section('.dynsym');
  if (!sec) return out;
  if (sec.entsize !== 0 && sec.entsize !== 24) throw new ValidationError(`${elf.name}: ${sec.name} entries are ${sec.entsize} bytes, expected 24`);
  const strSec = elf.sections[sec.link];
  if (!strSec) throw new ValidationError(`${elf.name}: ${sec.name} links to missing string table ${sec.link}`);
  const data = elf.sectionData(sec);
  const strtab = elf.sectionData(strSec);
  const count = Math.floor(data.length / 24);
  for (let i = 1; i < count; i++) {
    const o = i * 24;
    const info = data[o + 4];
    const type = info & 0xf;
    if (type === STT_SECTION || type === STT_FILE) continue;
    const shndx = data.readUInt16LE(o + 6);
    if (shndx === SHN_UNDEF) continue;
    const nameOff = data.readUInt32LE(o);
    if (nameOff === 0 || nameOff >= strtab.length) continue;
    let end = strtab.indexOf(0, nameOff);
    if (end < 0) end = strtab.length;
    const name = strtab.toString('latin1', nameOff, end);
    const bind = info >> 4;
    const prev = out.get(name);
    if (prev && !(prev.bind === STB_LOCAL && bind !== STB_LOCAL)) continue;
    out.set(name, { name, address: data.readBigUInt64LE(o + 8), size: data.readBigUInt64LE(o + 16), type, bind, shndx });
  }
  return out;
}
