/**
 * Guest-physical memory from an ELF core written by QMP `dump-guest-memory` (without a compressed
 * format). Each PT_LOAD maps p_paddr..p_paddr+p_filesz to a file offset; reads go to the file through
 * a FileHandle, never loading it whole. Bytes a segment does not hold in the file (beyond p_filesz)
 * are not invented: they fail like holes. With paging=true QEMU writes one segment per virtual
 * mapping, so several segments may hold the same physical page: any of them answers.
 */
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { MemoryReadError } from '../errors';
import { withDeadline, type CallOptions } from '../util/deadline';
import { DumpFormatError, PT_LOAD, PT_NOTE, readElfHeader, readNotes, readProgramHeaders, type ElfNote } from './elf-core';
import { vcpusFromNotes, vmcoreinfoFromNotes, type DumpVcpu } from './elf-notes';
import { preadFull } from './file-io';
import { checkPhysicalRange, MAX_PHYSICAL_ADDRESS, totalLength, type PhysicalMemory, type PhysicalRange } from './physical';

/** A slice of guest-physical memory held in the file. */
export interface DumpSegment {
  physical: bigint;
  /** Bytes present in the file (p_filesz). */
  size: bigint;
  fileOffset: bigint;
  /** p_vaddr: 0 unless the dump was taken with paging=true. */
  virtual: bigint;
}

export class ElfDumpMemory implements PhysicalMemory {
  readonly name: string;
  readonly path: string;
  /** ELF machine: 'amd64' when the first vCPU was in long mode, '386' when it was not. */
  readonly machine: string;
  /** Every range is read into a buffer of its own (#read). */
  readonly freshReplies = true;
  readonly #fh: FileHandle;
  readonly #segments: DumpSegment[];
  readonly #notes: ElfNote[];

  readonly #fileSize: bigint;

  private constructor(path: string, fh: FileHandle, machine: string, segments: DumpSegment[], notes: ElfNote[], fileSize: bigint) {
    this.#fileSize = fileSize;
    this.path = path;
    this.name = `dump:${path}`;
    this.#fh = fh;
    this.machine = machine;
    this.#segments = segments;
    this.#notes = notes;
  }

  static async open(path: string): Promise<ElfDumpMemory> {
    const fh = await fsp.open(path, 'r');
    try {
      const header = await readElfHeader(fh, path);
      const phdrs = await readProgramHeaders(fh, path, header);
      const fileSize = BigInt((await fh.stat()).size);
      for (const p of phdrs) {
        if (p.type === PT_LOAD && p.filesz > 0n && p.paddr + p.filesz > MAX_PHYSICAL_ADDRESS) {
          throw new DumpFormatError(path, `PT_LOAD at physical 0x${p.paddr.toString(16)} (${p.filesz} bytes) lies beyond the 52-bit physical address space`);
        }
      }
      const segments = phdrs
        .filter((p) => p.type === PT_LOAD && p.filesz > 0n)
        .map((p) => ({ physical: p.paddr, size: p.filesz, fileOffset: p.offset, virtual: p.vaddr }))
        .sort((a, b) => (a.physical < b.physical ? -1 : a.physical > b.physical ? 1 : 0));
      const notes: ElfNote[] = [];
      for (const p of phdrs) if (p.type === PT_NOTE) notes.push(...(await readNotes(fh, path, p)));
      return new ElfDumpMemory(path, fh, header.machine, segments, notes, fileSize);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** PT_LOAD segments by ascending physical address. */
  segments(): readonly DumpSegment[] {
    return this.#segments;
  }

  /**
   * Guest RAM as far as the file holds it: each segment cut at the end of the file. A truncated
   * dump keeps its present part (reads past it fail as truncated), and a corrupt p_filesz near
   * 2^64 does not become RAM that a KASLR search would walk in 2 MiB steps for ever.
   */
  ram(): PhysicalRange[] {
    const out: PhysicalRange[] = [];
    for (const s of this.#segments) {
      const inFile = s.fileOffset >= this.#fileSize ? 0n : this.#fileSize - s.fileOffset;
      const length = s.size < inFile ? s.size : inFile;
      if (length > 0n) out.push({ address: s.physical, length: Number(length) });
    }
    return out;
  }

  notes(): readonly ElfNote[] {
    return this.#notes;
  }

  /** Register state of each vCPU at dump time (CR3/CR4 only when QEMU notes are present). */
  vcpus(): DumpVcpu[] {
    return vcpusFromNotes(this.#notes);
  }

  vmcoreinfo(): string | undefined {
    return vmcoreinfoFromNotes(this.#notes);
  }

  async read(address: bigint, length: number, opts?: CallOptions): Promise<Buffer> {
    checkPhysicalRange(address, length);
    return withDeadline('dump read', this.#read(address, length), opts);
  }

  async readRanges(ranges: readonly PhysicalRange[], opts?: CallOptions): Promise<Buffer[]> {
    totalLength(ranges);
    return withDeadline('dump read', Promise.all(ranges.map((r) => this.#read(r.address, r.length))), opts);
  }

  async close(): Promise<void> {
    await this.#fh.close();
  }

  /** The last segment starting at or below `address` that holds it, if any. */
  #segmentAt(address: bigint): DumpSegment | undefined {
    let lo = 0;
    let hi = this.#segments.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.#segments[mid].physical <= address) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    // Overlapping segments (paging=true) may leave a shorter one last: look back a little.
    for (let i = found; i >= 0 && i > found - 64; i--) {
      const s = this.#segments[i];
      if (address < s.physical + s.size) return s;
    }
    return undefined;
  }

  async #read(address: bigint, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const at = address + BigInt(done);
      const s = this.#segmentAt(at);
      if (!s) throw new MemoryReadError(address, length, `${this.name}: 0x${at.toString(16)} is not in the dump`);
      const left = s.physical + s.size - at;
      const n = BigInt(length - done) < left ? length - done : Number(left);
      let got: Buffer;
      try {
        got = await preadFull(this.#fh, s.fileOffset + (at - s.physical), n);
      } catch (err) {
        throw new MemoryReadError(address, length, `${this.name}: ${(err as Error).message}`, { cause: err });
      }
      if (got.length !== n) throw new MemoryReadError(address, length, `${this.name}: file is truncated`);
      got.copy(out, done);
      done += n;
    }
    return out;
  }
}
