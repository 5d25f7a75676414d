/**
 * The parts of an ELF core file that a memory dump needs: the header, the program headers (PT_LOAD
 * = a slice of guest-physical memory, PT_NOTE = CPU state) and the notes. elfy parses the ELF
 * identification and header fields; it reads 64-bit fields as doubles and wants the whole file in
 * memory, so offsets and addresses are read here with BigInt from just the bytes needed.
 */
import type { FileHandle } from 'node:fs/promises';
import { VmiError } from '../errors';
import { preadFull } from './file-io';

// elfy ships no type declarations: describe the one function used.
interface ElfyHeader {
  class: '32' | '64';
  endian: 'lsb' | 'msb';
  type: string | undefined;
  machine: string | undefined;
  phentsize: number;
  phnum: number;
  shentsize: number;
  shnum: number;
}
interface ElfyParser {
  parseHeader(buf: Buffer): ElfyHeader;
}
const elfy = require('elfy') as { Parser: new () => ElfyParser };

export const PT_LOAD = 1;
export const PT_NOTE = 4;
/** e_phnum when the real count (>= 0xffff) is in section header 0's sh_info. */
const PN_XNUM = 0xffff;
/** QEMU writes one PT_LOAD per RAM slice (or per mapping with paging=true): allow many, not unbounded. */
const MAX_PROGRAM_HEADERS = 1 << 20;
const MAX_NOTES_BYTES = 64 * 1024 * 1024;

export class DumpFormatError extends VmiError {
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super('EDUMPFORMAT', `${path}: ${message}`, options);
    this.path = path;
  }
}

export interface ElfHeaderInfo {
  is64: boolean;
  /** 'amd64' (EM_X86_64) for a guest in long mode; QEMU writes '386' when the vCPU was not. */
  machine: string;
  phoff: bigint;
  phentsize: number;
  phnum: number;
}

export interface ProgramHeader {
  type: number;
  offset: bigint;
  vaddr: bigint;
  paddr: bigint;
  filesz: bigint;
  memsz: bigint;
}

export interface ElfNote {
  name: string;
  type: number;
  desc: Buffer;
}

async function readExact(fh: FileHandle, path: string, position: bigint, length: number, what: string): Promise<Buffer> {
  // offsets come from the file: one near 2^64 is no file position at all
  if (position + BigInt(length) > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new DumpFormatError(path, `the ${what} at 0x${position.toString(16)} lies beyond any file`);
  }
  const buf = await preadFull(fh, position, length);
  if (buf.length !== length) throw new DumpFormatError(path, `file ends inside the ${what} (at 0x${position.toString(16)})`);
  return buf;
}

export async function readElfHeader(fh: FileHandle, path: string): Promise<ElfHeaderInfo> {
  const buf = await preadFull(fh, 0n, 64);
  if (buf.length < 52 || buf.subarray(0, 4).toString('latin1') !== '\x7fELF') {
    throw new DumpFormatError(path, 'not an ELF file (kdump-compressed dumps are not supported: use dump-guest-memory without a format)');
  }
  let h: ElfyHeader;
  try {
    h = new elfy.Parser().parseHeader(buf);
  } catch (err) {
    throw new DumpFormatError(path, `bad ELF header: ${(err as Error).message}`, { cause: err });
  }
  if (h.endian !== 'lsb') throw new DumpFormatError(path, 'big-endian ELF: not an x86 dump');
  if (h.type !== 'core') throw new DumpFormatError(path, `ELF type ${h.type ?? '?'}, not a core dump`);
  const is64 = h.class === '64';
  if (is64 && buf.length < 64) throw new DumpFormatError(path, 'truncated ELF header');
  const phoff = is64 ? buf.readBigUInt64LE(32) : BigInt(buf.readUInt32LE(28));
  let phnum = h.phnum;
  if (phnum === PN_XNUM) {
    const shoff = is64 ? buf.readBigUInt64LE(40) : BigInt(buf.readUInt32LE(32));
    const sh0 = await readExact(fh, path, shoff, is64 ? 64 : 40, 'section header');
    phnum = sh0.readUInt32LE(is64 ? 44 : 28);
  }
  const want = is64 ? 56 : 32;
  if (h.phentsize !== want) throw new DumpFormatError(path, `program header size ${h.phentsize}, expected ${want}`);
  if (phnum > MAX_PROGRAM_HEADERS) throw new DumpFormatError(path, `${phnum} program headers is more than ${MAX_PROGRAM_HEADERS}`);
  return { is64, machine: h.machine ?? 'unknown', phoff, phentsize: h.phentsize, phnum };
}

export async function readProgramHeaders(fh: FileHandle, path: string, h: ElfHeaderInfo): Promise<ProgramHeader[]> {
  const buf = await readExact(fh, path, h.phoff, h.phnum * h.phentsize, 'program headers');
  const out: ProgramHeader[] = [];
  for (let i = 0; i < h.phnum; i++) {
    const o = i * h.phentsize;
    out.push(
      h.is64
        ? {
            type: buf.readUInt32LE(o),
            offset: buf.readBigUInt64LE(o + 8),
            vaddr: buf.readBigUInt64LE(o + 16),
            paddr: buf.readBigUInt64LE(o + 24),
            filesz: buf.readBigUInt64LE(o + 32),
            memsz: buf.readBigUInt64LE(o + 40),
          }
        : {
            type: buf.readUInt32LE(o),
            offset: BigInt(buf.readUInt32LE(o + 4)),
            vaddr: BigInt(buf.readUInt32LE(o + 8)),
            paddr: BigInt(buf.readUInt32LE(o + 12)),
            filesz: BigInt(buf.readUInt32LE(o + 16)),
            memsz: BigInt(buf.readUInt32LE(o + 20)),
          },
    );
  }
  return out;
}

/** Notes of one PT_NOTE segment: 12-byte header, name and desc each padded to 4 bytes (as QEMU and Linux write them). */
export async function readNotes(fh: FileHandle, path: string, ph: ProgramHeader): Promise<ElfNote[]> {
  if (ph.filesz > BigInt(MAX_NOTES_BYTES)) throw new DumpFormatError(path, `note segment of ${ph.filesz} bytes is too large`);
  const buf = await readExact(fh, path, ph.offset, Number(ph.filesz), 'note segment');
  const notes: ElfNote[] = [];
  let o = 0;
  while (o + 12 <= buf.length) {
    const namesz = buf.readUInt32LE(o);
    const descsz = buf.readUInt32LE(o + 4);
    const type = buf.readUInt32LE(o + 8);
    const nameAt = o + 12;
    const descAt = nameAt + align4(namesz);
    const next = descAt + align4(descsz);
    if (next > buf.length) throw new DumpFormatError(path, `note at segment offset ${o} runs past the segment`);
    const name = buf.subarray(nameAt, nameAt + namesz).toString('latin1').replace(/\0+$/, '');
    notes.push({ name, type, desc: buf.subarray(descAt, descAt + descsz) });
    o = next;
  }
  return notes;
}

function align4(n: number): number {
  // not `(n + 3) & ~3`: a hostile 32-bit size turns negative in 32-bit bitwise arithmetic
  return Math.ceil(n / 4) * 4;
}
