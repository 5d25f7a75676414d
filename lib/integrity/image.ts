/**
 * The kernel image as it should be in memory: the vmlinux's allocated sections with the KASLR
 * relocations applied, as the decompressor applies them (arch/x86/boot/compressed/misc.c
 * handle_relocations, from the list arch/x86/tools/relocs.c makes). A debug vmlinux keeps its
 * relocations (--emit-relocs, `.rela.*`), so the exact list is in the file itself:
 *   R_X86_64_64, _32, _32S on a non-per-CPU, non-absolute symbol: + virtual slide;
 *   R_X86_64_PC32/PLT32 from the image to a per-CPU symbol (zero-based .data..percpu): − slide.
 * Everything else in the image is position-independent.
 */
import { ValidationError, VmiError } from '../errors';
import { ElfFile, SHF_ALLOC, SHT_NOBITS, SHT_RELA, SHT_SYMTAB, type ElfSection } from '../kernel/dwarf/elf';

const R_X86_64_64 = 1;
const R_X86_64_PC32 = 2;
const R_X86_64_32 = 10;
const R_X86_64_32S = 11;
const R_X86_64_PLT32 = 4;
const SHN_ABS = 0xfff1;

export interface Relocation {
  /** Link-time virtual address of the place. */
  place: bigint;
  type: number;
  /** Link-time value of the symbol plus addend (what the place points at, for PC-relative ones). */
  target: bigint;
  /** What KASLR adds to the place: +1 (absolute), −1 (PC-relative to per-CPU), 0. */
  slideSign: -1 | 0 | 1;
  width: 4 | 8;
}

export interface FunctionSymbol {
  name: string;
  address: bigint;
  size: number;
}

/** One allocated section of the image with its relocations, loaded on first use. */
interface LoadedSection {
  section: ElfSection;
  bytes: Buffer;
  relocs: Relocation[];
}

export class KernelImage {
  readonly #elf: ElfFile;
  readonly #loaded = new Map<number, LoadedSection>();
  readonly #relocated = new Map<string, Buffer>();
  /** Symbol values by symtab index, and their section index. */
  #symValue: BigUint64Array | undefined;
  /** How KASLR treats each symbol: 0 moves with the image, 1 absolute, 2 per-CPU (zero-based). */
  #symClass: Uint8Array | undefined;
  #functions: FunctionSymbol[] | undefined;
  #byName: Map<string, FunctionSymbol & { type: number }> | undefined;
  #percpuIndex = -1;

  private constructor(readonly path: string, elf: ElfFile) {
    this.#elf = elf;
    this.#percpuIndex = elf.section('.data..percpu')?.index ?? -1;
  }

  static open(path: string): KernelImage {
    const elf = ElfFile.open(path);
    if (!elf.sections.some((s) => s.type === SHT_RELA && s.name === '.rela.text')) {
      elf.close();
      throw new VmiError('EVMLINUX', `${path} has no .rela.text: a vmlinux linked with --emit-relocs (the Debian -dbg one) is needed to know what KASLR changed`);
    }
    return new KernelImage(path, elf);
  }

  close(): void {
    this.#elf.close();
  }

  /** The allocated section holding the link-time address `addr`, or undefined. */
  sectionAt(addr: bigint): ElfSection | undefined {
    return this.#elf.sections.find((s) => (s.flags & SHF_ALLOC) !== 0n && s.type !== SHT_NOBITS && s.addr !== 0n && addr >= s.addr && addr < s.addr + BigInt(s.size));
  }

  section(name: string): ElfSection | undefined {
    return this.#elf.section(name);
  }

  #symbols(): void {
    if (this.#symValue) return;
    const sec = this.#elf.sections.find((s) => s.type === SHT_SYMTAB);
    if (!sec) throw new VmiError('EVMLINUX', `${this.path} has no symbol table`);
    const data = this.#elf.sectionData(sec);
    const strtab = this.#elf.sectionData(this.#elf.sections[sec.link]);
    const n = Math.floor(data.length / 24);
    this.#symValue = new BigUint64Array(n);
    this.#symClass = new Uint8Array(n);
    const fns: FunctionSymbol[] = [];
    const byName = new Map<string, FunctionSymbol & { type: number }>();
    for (let i = 0; i < n; i++) {
      const o = i * 24;
      const value = data.readBigUInt64LE(o + 8);
      const shndx = data.readUInt16LE(o + 6);
      this.#symValue[i] = value;
      const type = data[o + 4] & 0xf;
      const nameOff = data.readUInt32LE(o);
      const end = nameOff < strtab.length ? strtab.indexOf(0, nameOff) : -1;
      const name = nameOff < strtab.length ? strtab.toString('latin1', nameOff, end < 0 ? strtab.length : end) : '';
      this.#symClass[i] = symbolClass(name, shndx, this.#percpuIndex);
      if (type !== 0 && type !== 1 && type !== 2) continue;
      if (nameOff === 0 || shndx === 0 || shndx >= 0xff00) continue;
      const size = Number(data.readBigUInt64LE(o + 16));
      const sym = { name, address: value, size, type };
      const prev = byName.get(name);
      // a global wins over a local of the same name (the one syscall handlers are known by)
      if (!prev || (data[o + 4] >> 4) !== 0) byName.set(name, sym);
      if (type === 2 || (type === 0 && (this.#elf.sections[shndx].flags & 0x4n) !== 0n)) fns.push({ name, address: value, size });
    }
    fns.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : b.size - a.size));
    this.#functions = fns;
    this.#byName = byName;
  }

  /** A symbol by name (link-time address), or undefined. */
  symbol(name: string): (FunctionSymbol & { type: number }) | undefined {
    this.#symbols();
    return this.#byName!.get(name);
  }

  /** The code symbols (functions and labels in executable sections), sorted by address. */
  functions(): readonly FunctionSymbol[] {
    this.#symbols();
    return this.#functions!;
  }

  /** The code symbol that starts exactly at `addr`, or undefined. */
  functionAt(addr: bigint): FunctionSymbol | undefined {
    const fns = this.functions();
    let lo = 0, hi = fns.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (fns[mid].address < addr) lo = mid + 1;
      else hi = mid;
    }
    return lo < fns.length && fns[lo].address === addr ? fns[lo] : undefined;
  }

  /** The code symbol containing `addr` (the last one starting at or before it), for messages. */
  functionContaining(addr: bigint): FunctionSymbol | undefined {
    const fns = this.functions();
    let lo = 0, hi = fns.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (fns[mid].address <= addr) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 ? fns[lo - 1] : undefined;
  }

  #load(section: ElfSection): LoadedSection {
    const have = this.#loaded.get(section.index);
    if (have) return have;
    this.#symbols();
    const bytes = this.#elf.sectionData(section);
    const relocs: Relocation[] = [];
    for (const rela of this.#elf.sections.filter((r) => r.type === SHT_RELA && r.info === section.index)) {
      const entries = this.#elf.sectionData(rela);
      for (let o = 0; o + 24 <= entries.length; o += 24) {
        const offset = entries.readBigUInt64LE(o);
        const type = entries.readUInt32LE(o + 8);
        const symIndex = entries.readUInt32LE(o + 12);
        const addend = entries.readBigInt64LE(o + 16);
        if (symIndex >= this.#symValue!.length) throw new ValidationError(`${this.path}: ${rela.name} names symbol ${symIndex} past the table`);
        const cls = this.#symClass![symIndex];
        const target = BigInt.asUintN(64, this.#symValue![symIndex] + addend);
        // linked vmlinux: r_offset is already the virtual address of the place
        const place = offset;
        const percpu = cls === 2;
        let slideSign: -1 | 0 | 1 = 0;
        let width: 4 | 8 = 4;
        if (type === R_X86_64_64) {
          width = 8;
          if (cls === 0) slideSign = 1;
        } else if (type === R_X86_64_32 || type === R_X86_64_32S) {
          if (cls === 0) slideSign = 1;
        } else if (type === R_X86_64_PC32 || type === R_X86_64_PLT32) {
          if (percpu && section.index !== this.#percpuIndex) slideSign = -1;
        } else continue;
        relocs.push({ place, type, target, slideSign, width });
      }
    }
    relocs.sort((a, b) => (a.place < b.place ? -1 : a.place > b.place ? 1 : 0));
    const loaded = { section, bytes, relocs };
    this.#loaded.set(section.index, loaded);
    return loaded;
  }

  /** Relocations whose place lies in [addr, addr+length) (link-time addresses). */
  relocationsIn(addr: bigint, length: number): Relocation[] {
    const sec = this.sectionAt(addr);
    if (!sec) return [];
    const { relocs } = this.#load(sec);
    let lo = 0, hi = relocs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (relocs[mid].place < addr) lo = mid + 1;
      else hi = mid;
    }
    const out: Relocation[] = [];
    const end = addr + BigInt(length);
    for (let i = lo; i < relocs.length && relocs[i].place < end; i++) out.push(relocs[i]);
    return out;
  }

  /** A whole section's bytes as they should be in memory for this slide (cached per slide). */
  relocatedSection(name: string, slide: bigint): Buffer {
    const key = `${name}@${slide}`;
    const have = this.#relocated.get(key);
    if (have) return have;
    const sec = this.#elf.section(name);
    if (!sec) throw new VmiError('EVMLINUX', `${this.path} has no section ${name}`);
    const { bytes, relocs } = this.#load(sec);
    const out = Buffer.from(bytes);
    for (const r of relocs) applySlide(out, Number(r.place - sec.addr), r, slide);
    this.#relocated.set(key, out);
    return out;
  }

  /**
   * `length` bytes at link-time address `addr` as they should be in memory for this slide, or
   * undefined when the range is not inside one allocated section with contents.
   */
  expected(addr: bigint, length: number, slide: bigint): Buffer | undefined {
    const sec = this.sectionAt(addr);
    if (!sec || addr + BigInt(length) > sec.addr + BigInt(sec.size)) return undefined;
    const start = Number(addr - sec.addr);
    const { bytes } = this.#load(sec);
    const out = Buffer.from(bytes.subarray(start, start + length));
    for (const r of this.relocationsIn(addr, length)) {
      const at = Number(r.place - addr);
      if (at + r.width > out.length) continue;
      applySlide(out, at, r, slide);
    }
    return out;
  }

  /** The raw file bytes at a link-time address (tables the kernel only reads at boot). */
  raw(addr: bigint, length: number): Buffer {
    const b = this.#elf.readVirtual(addr, length);
    if (!b) throw new VmiError('EVMLINUX', `${this.path}: nothing at 0x${addr.toString(16)} (+${length})`);
    return b;
  }
}

/**
 * arch/x86/tools/relocs.c: per-CPU symbols are those of .data..percpu but __init_begin,
 * __per_cpu_load and init_per_cpu_*; absolute symbols stay put except the linker-script ones
 * it lists as relative (S_REL).
 */
const ABS_BUT_RELATIVE = /^(__init_(begin|end)|__x86_cpu_dev_(start|end)|(__parainstructions|__alt_instructions)(_end)?|(__iommu_table|__apicdrivers|__smp_locks)(_end)?|__(start|end)_pci_.*|__(start|end|stop)___ksymtab(_gpl)?|__(start|end|stop)___kcrctab(_gpl)?|__(start|stop)___param|__(start|stop)___modver|__(start|stop)___bug_table|__tracedata_(start|end)|__(start|stop)_notes|__end_rodata|__end_rodata_aligned|__initramfs_start|(jiffies|jiffies_64)|\.brk.*|__end_rodata_hpage_align|_end)$/;

function symbolClass(name: string, shndx: number, percpuIndex: number): 0 | 1 | 2 {
  if (shndx === SHN_ABS) return ABS_BUT_RELATIVE.test(name) ? 0 : 1;
  if (shndx === percpuIndex && name !== '__init_begin' && name !== '__per_cpu_load' && !name.startsWith('init_per_cpu_')) return 2;
  return 0;
}

function applySlide(buf: Buffer, at: number, r: Relocation, slide: bigint): void {
  if (r.slideSign === 0 || at < 0) return;
  const delta = r.slideSign === 1 ? slide : -slide;
  if (r.width === 8) {
    if (at + 8 <= buf.length) buf.writeBigUInt64LE(BigInt.asUintN(64, buf.readBigUInt64LE(at) + delta), at);
  } else if (at + 4 <= buf.length) {
    buf.writeUInt32LE(Number(BigInt.asUintN(32, BigInt(buf.readUInt32LE(at)) + delta)), at);
  }
}
