/**
 * The ELF64 little-endian container around DWARF: section headers, section contents (with
 * SHF_COMPRESSED and `.zdebug_*` sections inflated) and reads at file offsets.
 *
 * A debug vmlinux is over half a gigabyte, so the file is never read whole: the header, the section
 * header table and the section name table are read first, and each section only when asked for.
 * `elfy` parses the section names and types from a compact copy of those headers (elfy wants the
 * whole file in one Buffer, reads 64-bit fields into doubles, and reads sh_addralign/sh_entsize
 * of ELF64 at the wrong offsets), and our own readers take every 64-bit field as bigint.
 */
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { VmiError, ValidationError } from '../../errors';
import { u64, u64n } from './bytes';

// elfy ships no types; this is the part of its result we use.
interface ElfyResult {
  body: { sections: Array<{ name: string; type: string | number }> };
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const elfy = require('elfy') as { parse(buf: Buffer): ElfyResult };

export const SHT_NOBITS = 8;
export const SHT_SYMTAB = 2;
export const SHT_STRTAB = 3;
export const SHF_ALLOC = 0x2n;
export const SHF_COMPRESSED = 0x800n;
export const SHT_RELA = 4;
export const ET_REL = 1;
const EM_X86_64 = 62;
const R_X86_64_NONE = 0;
const R_X86_64_64 = 1;
const R_X86_64_32 = 10;
const R_X86_64_32S = 11;
export const ET_EXEC = 2;
export const ET_DYN = 3;

const ELFCOMPRESS_ZLIB = 1;
const ELFCOMPRESS_ZSTD = 2;
/** No section we read is allowed to inflate past this (a hostile header could ask for anything). */
const MAX_SECTION_BYTES = 4 * 1024 * 1024 * 1024 - 1;

export interface ElfSection {
  index: number;
  name: string;
  /** sh_type as a number, and elfy's name for it ('progbits', 'symtab', ...) when it has one. */
  type: number;
  typeName: string;
  flags: bigint;
  addr: bigint;
  /** File offset and size of the bytes as stored (before any decompression). */
  offset: number;
  size: number;
  link: number;
  info: number;
  addralign: bigint;
  entsize: number;
}

/** Where the bytes come from: an open file, or a Buffer (tests, small files). */
interface ByteSource {
  size: number;
  read(offset: number, length: number): Buffer;
  close(): void;
}

function fileSource(path: string): ByteSource {
  const fd = fs.openSync(path, 'r');
  const size = fs.fstatSync(fd).size;
  return {
    size,
    read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > size) {
        throw new ValidationError(`${path}: read of ${length} bytes at ${offset} is past the end of the file (${size} bytes)`);
      }
      const out = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const n = fs.readSync(fd, out, done, length - done, offset + done);
        if (n === 0) throw new ValidationError(`${path}: file shrank while reading`);
        done += n;
      }
      return out;
    },
    close() {
      fs.closeSync(fd);
    },
  };
}

function bufferSource(buf: Buffer): ByteSource {
  return {
    size: buf.length,
    read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > buf.length) {
        throw new ValidationError(`ELF read of ${length} bytes at ${offset} is past the end (${buf.length} bytes)`);
      }
      return buf.subarray(offset, offset + length);
    },
    close() {},
  };
}

export class ElfFile {
  readonly name: string;
  /** e_type: ET_REL, ET_EXEC, ET_DYN... */
  readonly type: number;
  readonly machine: number;
  readonly sections: readonly ElfSection[];
  readonly #src: ByteSource;
  readonly #byName = new Map<string, ElfSection>();

  private constructor(name: string, src: ByteSource) {
    this.name = name;
    this.#src = src;
    if (src.size < 64) throw new ValidationError(`${name}: too small to be an ELF file`);
    const eh = src.read(0, 64);
    if (eh.readUInt32BE(0) !== 0x7f454c46) throw new ValidationError(`${name}: not an ELF file`);
    if (eh[4] !== 2) throw new VmiError('EELF', `${name}: only ELF64 is supported (EI_CLASS ${eh[4]})`);
    if (eh[5] !== 1) throw new VmiError('EELF', `${name}: only little-endian ELF is supported (EI_DATA ${eh[5]})`);
    this.type = eh.readUInt16LE(16);
    this.machine = eh.readUInt16LE(18);
    const shoff = u64n(eh, 40);
    const shentsize = eh.readUInt16LE(58);
    let shnum = eh.readUInt16LE(60);
    let shstrndx = eh.readUInt16LE(62);
    if (shoff === 0) {
      this.sections = [];
      return;
    }
    if (shentsize !== 64) throw new ValidationError(`${name}: unexpected section header size ${shentsize}`);
    if (shnum === 0 || shstrndx === 0xffff) {
      // Extended numbering: the real counts live in section header 0.
      const sh0 = src.read(shoff, 64);
      if (shnum === 0) shnum = u64n(sh0, 32);
      if (shstrndx === 0xffff) shstrndx = sh0.readUInt32LE(40);
    }
    if (shnum > 0xfffff) throw new ValidationError(`${name}: absurd section count ${shnum}`);
    const table = src.read(shoff, shnum * 64);
    if (shstrndx >= shnum) throw new ValidationError(`${name}: section name table index ${shstrndx} out of range`);
    const strOff = u64n(table, shstrndx * 64 + 24);
    const strSize = u64n(table, shstrndx * 64 + 32);
    if (strSize > 16 * 1024 * 1024) throw new ValidationError(`${name}: section name table too large`);
    const strtab = src.read(strOff, strSize);

    const elfyNames = parseNamesWithElfy(eh, table, strtab, shnum, shstrndx);
    const sections: ElfSection[] = [];
    for (let i = 0; i < shnum; i++) {
      const o = i * 64;
      const type = table.readUInt32LE(o + 4);
      const sec: ElfSection = {
        index: i,
        name: elfyNames[i].name,
        type,
        typeName: String(elfyNames[i].type),
        flags: u64(table, o + 8),
        addr: u64(table, o + 16),
        offset: u64n(table, o + 24),
        size: type === SHT_NOBITS ? 0 : u64n(table, o + 32),
        link: table.readUInt32LE(o + 40),
        info: table.readUInt32LE(o + 44),
        addralign: u64(table, o + 48),
        entsize: u64n(table, o + 56),
      };
      sections.push(sec);
      if (sec.name !== '' && !this.#byName.has(sec.name)) this.#byName.set(sec.name, sec);
    }
    this.sections = sections;
  }

  static open(path: string): ElfFile {
    const src = fileSource(path);
    try {
      return new ElfFile(path, src);
    } catch (err) {
      src.close();
      throw err;
    }
  }

  static fromBuffer(buf: Buffer, name = '<buffer>'): ElfFile {
    return new ElfFile(name, bufferSource(buf));
  }

  close(): void {
    this.#src.close();
  }

  get fileSize(): number {
    return this.#src.size;
  }

  /** The section of that name; `.debug_x` also finds an old-style compressed `.zdebug_x`. */
  section(name: string): ElfSection | undefined {
    return this.#byName.get(name) ?? (name.startsWith('.debug_') ? this.#byName.get('.z' + name.slice(1)) : undefined);
  }

  /** Bytes at a file offset. */
  read(offset: number, length: number): Buffer {
    return this.#src.read(offset, length);
  }

  /** A section's contents, inflated when the section is compressed. Empty for SHT_NOBITS. */
  sectionData(sec: ElfSection | string): Buffer {
    const s = typeof sec === 'string' ? this.section(sec) : sec;
    if (!s) throw new VmiError('EELF', `${this.name}: no section ${String(sec)}`);
    if (s.type === SHT_NOBITS || s.size === 0) return Buffer.alloc(0);
    const raw = this.#src.read(s.offset, s.size);
    if (s.flags & SHF_COMPRESSED) return inflateChdr(raw, `${this.name} ${s.name}`);
    if (s.name.startsWith('.zdebug_')) return inflateZdebug(raw, `${this.name} ${s.name}`);
    return raw;
  }

  /**
   * A section's contents with its relocations applied when the file is relocatable (ET_REL, e.g.
   * a kernel module .ko): there, .debug_info's references to .debug_str and .debug_abbrev are
   * still zeros plus a RELA entry. Linked files (a vmlinux, even one that kept its relocations
   * with --emit-relocs) are returned as they are. Only x86-64 relocations are known.
   */
  relocatedSectionData(sec: ElfSection | string): Buffer {
    const s = typeof sec === 'string' ? this.section(sec) : sec;
    if (!s) throw new VmiError('EELF', `${this.name}: no section ${String(sec)}`);
    const data = this.sectionData(s);
    if (this.type !== ET_REL) return data;
    const relas = this.sections.filter((r) => r.type === SHT_RELA && r.info === s.index);
    if (relas.length === 0) return data;
    if (this.machine !== EM_X86_64) throw new VmiError('EELF', `${this.name}: relocations for machine ${this.machine} are not supported`);
    const out = Buffer.from(data); // never write into a Buffer that may share memory with the file cache
    for (const rela of relas) {
      const symtab = this.sections[rela.link];
      if (!symtab) throw new ValidationError(`${this.name}: ${rela.name} links to missing symbol table ${rela.link}`);
      const syms = this.sectionData(symtab);
      const entries = this.sectionData(rela);
      for (let o = 0; o + 24 <= entries.length; o += 24) {
        const offset = u64n(entries, o);
        const type = entries.readUInt32LE(o + 8);
        const symIndex = entries.readUInt32LE(o + 12);
        const addend = entries.readBigInt64LE(o + 16);
        if (symIndex * 24 + 24 > syms.length) throw new ValidationError(`${this.name}: ${rela.name} names symbol ${symIndex} past the table`);
        const value = BigInt.asUintN(64, syms.readBigUInt64LE(symIndex * 24 + 8) + addend);
        if (type === R_X86_64_64) {
          if (offset + 8 > out.length) throw new ValidationError(`${this.name}: ${rela.name} entry past the section`);
          out.writeBigUInt64LE(value, offset);
        } else if (type === R_X86_64_32 || type === R_X86_64_32S) {
          if (offset + 4 > out.length) throw new ValidationError(`${this.name}: ${rela.name} entry past the section`);
          out.writeUInt32LE(Number(value & 0xffffffffn), offset);
        } else if (type !== R_X86_64_NONE) {
          throw new VmiError('EELF', `${this.name}: relocation type ${type} in ${rela.name} is not supported`);
        }
      }
    }
    return out;
  }

  /**
   * `length` bytes at virtual address `addr`, from the allocated section that holds them
   * (what the kernel image has at that address before it runs), or undefined.
   */
  readVirtual(addr: bigint, length: number): Buffer | undefined {
    for (const s of this.sections) {
      if (!(s.flags & SHF_ALLOC) || s.type === SHT_NOBITS || s.addr === 0n) continue;
      if (addr >= s.addr && addr + BigInt(length) <= s.addr + BigInt(s.size)) {
        if (s.flags & SHF_COMPRESSED) return undefined;
        return this.#src.read(s.offset + Number(addr - s.addr), length);
      }
    }
    return undefined;
  }
}

/**
 * Runs elfy over a compact image (ELF header, the section header table right after it, then the
 * name table) so that it never needs the rest of the file. Only names and types are taken from it.
 */
function parseNamesWithElfy(
  eh: Buffer,
  table: Buffer,
  strtab: Buffer,
  shnum: number,
  shstrndx: number,
): Array<{ name: string; type: string | number }> {
  const image = Buffer.alloc(64 + table.length + strtab.length);
  eh.copy(image, 0, 0, 64);
  image.writeBigUInt64LE(0n, 32); // e_phoff: no program headers in the image
  image.writeUInt16LE(0, 56); // e_phnum
  image.writeBigUInt64LE(64n, 40); // e_shoff
  image.writeUInt16LE(shnum < 0xff00 ? shnum : 0, 60);
  image.writeUInt16LE(shstrndx < 0xff00 ? shstrndx : 0xffff, 62);
  table.copy(image, 64);
  strtab.copy(image, 64 + table.length);
  const strHdr = 64 + shstrndx * 64;
  image.writeBigUInt64LE(BigInt(64 + table.length), strHdr + 24);
  // elfy slices every section's data from its buffer; point them all at the name table so none
  // of them reaches past the image.
  for (let i = 0; i < shnum; i++) {
    if (i === shstrndx) continue;
    image.writeBigUInt64LE(BigInt(64 + table.length), 64 + i * 64 + 24);
    image.writeBigUInt64LE(0n, 64 + i * 64 + 32);
  }
  try {
    const parsed = elfy.parse(image);
    if (parsed.body.sections.length === shnum) return parsed.body.sections;
  } catch {
    // fall through to our own name reader
  }
  const out: Array<{ name: string; type: string | number }> = [];
  for (let i = 0; i < shnum; i++) {
    const nameOff = table.readUInt32LE(i * 64);
    const end = strtab.indexOf(0, nameOff);
    out.push({ name: strtab.toString('latin1', nameOff, end < 0 ? strtab.length : end), type: table.readUInt32LE(i * 64 + 4) });
  }
  return out;
}

function inflateChdr(raw: Buffer, what: string): Buffer {
  if (raw.length < 24) throw new ValidationError(`${what}: compressed section too short`);
  const chType = raw.readUInt32LE(0);
  const size = u64n(raw, 8);
  if (size > MAX_SECTION_BYTES) throw new ValidationError(`${what}: decompressed size ${size} too large`);
  if (chType === ELFCOMPRESS_ZSTD) {
    throw new VmiError('EELF', `${what}: zstd-compressed debug sections are not supported; run objcopy --decompress-debug-sections first`);
  }
  if (chType !== ELFCOMPRESS_ZLIB) throw new VmiError('EELF', `${what}: unknown compression type ${chType}`);
  const out = inflate(raw.subarray(24), size, what);
  if (out.length !== size) throw new ValidationError(`${what}: inflated to ${out.length} bytes, header says ${size}`);
  return out;
}

function inflateZdebug(raw: Buffer, what: string): Buffer {
  if (raw.length < 12 || raw.toString('latin1', 0, 4) !== 'ZLIB') return raw;
  const size = Number(raw.readBigUInt64BE(4));
  if (size > MAX_SECTION_BYTES) throw new ValidationError(`${what}: decompressed size ${size} too large`);
  return inflate(raw.subarray(12), size, what);
}

/** zlib's errors (corrupt stream, output past the stated size) as ValidationErrors. */
function inflate(data: Buffer, size: number, what: string): Buffer {
  try {
    return zlib.inflateSync(data, { maxOutputLength: Math.max(size, 1) });
  } catch (err) {
    throw new ValidationError(`${what}: cannot inflate: ${(err as Error).message}`);
  }
}
