/**
 * Finds where KASLR put the kernel, from guest-physical memory alone: no vCPU register, no
 * vmcoreinfo, no guest cooperation. So it works whatever the vCPUs were doing when stopped (kernel
 * or user mode, with or without KPTI), and on a dump.
 *
 * The kernel image is physically contiguous and loaded at a 2 MiB-aligned address, so the banner
 * lies at a known offset (linux_banner − _text) from one of a few hundred candidates: probe them all
 * in one pipelined batch. The image then tells us the rest: the `phys_base` variable gives the
 * virtual slide (virt = phys + __START_KERNEL_map − phys_base), and `init_top_pgt` is the kernel's
 * own page table, which we check by translating _text through it.
 */
import { isFatalReadError, ValidationError, VmiError } from '../errors';
import type { CallOptions } from '../util/deadline';
import type { PhysicalMemory, PhysicalRange } from '../memory/physical';
import { X86PageTable } from '../memory/x86-64/translate';
import { pagingFormatForLevels } from '../memory/x86-64/paging-format';

/** Link-time symbol addresses (before KASLR), as a profile or System.map gives them. */
export interface LinkTimeSymbols {
  symbol(name: string): bigint;
  hasSymbol(name: string): boolean;
}

export interface KaslrResult {
  /** Physical address the kernel image (_text) was loaded at. */
  physicalBase: bigint;
  /** physicalBase − the link-time physical address of _text. */
  physicalSlide: bigint;
  /** Runtime − link-time virtual addresses of kernel symbols. */
  virtualSlide: bigint;
  /** The kernel's `phys_base` variable. */
  physBase: bigint;
  /** Physical address of init_top_pgt, the kernel's own top-level page table. */
  pageTableRoot: bigint;
  /** 4- or 5-level paging, from the kernel's own `__pgtable_l5_enabled`. */
  pagingLevels: 4 | 5;
  /** The banner found at linux_banner. */
  banner: string;
}

export const START_KERNEL_MAP = 0xffffffff80000000n;
const ALIGN = 0x200000n;
/** CONFIG_RANDOMIZE_BASE_MAX_OFFSET: the kernel text never moves further than 1 GiB. */
const MAX_VIRTUAL_SLIDE = 0x40000000n;
const BANNER_PREFIX = Buffer.from('Linux version ');
const BANNER_MAX = 512;
/** Candidates probed in one pipelined batch. */
const BATCH = 1024;

export interface FindKaslrOptions extends CallOptions {
  /** Guest RAM; candidates outside it are not probed. Default: the first 4 GiB. */
  ram?: readonly PhysicalRange[];
  /** Accept only this banner (from the profile); any Linux banner when absent. */
  expectBanner?: string;
}

export class KaslrNotFoundError extends VmiError {
  constructor(message: string) {
    super('EKASLR', message);
  }
}

function* candidates(ram: readonly PhysicalRange[], bannerOffset: bigint): Generator<bigint> {
  for (const r of ram) {
    const end = r.address + BigInt(r.length);
    for (let p = (r.address + ALIGN - 1n) / ALIGN * ALIGN; p + bannerOffset + BigInt(BANNER_MAX) <= end; p += ALIGN) yield p;
  }
}

function bannerAt(buf: Buffer): string | null {
  if (!buf.subarray(0, BANNER_PREFIX.length).equals(BANNER_PREFIX)) return null;
  const nul = buf.indexOf(0);
  const text = buf.subarray(0, nul < 0 ? buf.length : nul).toString('latin1');
  return text.replace(/\n$/, '');
}

/** Locates the kernel image in physical memory; see the file comment for the method. */
export async function findKaslr(phys: PhysicalMemory, syms: LinkTimeSymbols, opts: FindKaslrOptions = {}): Promise<KaslrResult> {
  const text = syms.symbol('_text');
  const bannerOffset = syms.symbol('linux_banner') - text;
  if (bannerOffset < 0n || bannerOffset > 0x10000000n) throw new ValidationError('linux_banner is not inside the kernel image', syms.symbol('linux_banner'));
  const ram = opts.ram ?? [{ address: 0n, length: 4 * 1024 * 1024 * 1024 }];

  const found: Array<{ base: bigint; banner: string }> = [];
  const gen = candidates(ram, bannerOffset);
  for (;;) {
    const batch: bigint[] = [];
    for (let i = 0; i < BATCH; i++) {
      const n = gen.next();
      if (n.done) break;
      batch.push(n.value);
    }
    if (batch.length === 0) break;
    const bufs = await readEach(phys, batch.map((b) => ({ address: b + bannerOffset, length: BANNER_MAX })), opts);
    bufs.forEach((buf, i) => {
      const banner = buf && bannerAt(buf);
      if (banner && (opts.expectBanner === undefined || banner === opts.expectBanner.replace(/\n$/, ''))) {
        found.push({ base: batch[i], banner });
      }
    });
  }
  if (found.length === 0) {
    throw new KaslrNotFoundError(opts.expectBanner
      ? `no kernel image with the profile's banner ${JSON.stringify(opts.expectBanner)} in guest memory`
      : 'no Linux kernel image found in guest memory');
  }

  const errors: string[] = [];
  for (const f of found) {
    try {
      return await confirm(phys, syms, f.base, f.banner, opts);
    } catch (err) {
      errors.push(`0x${f.base.toString(16)}: ${(err as Error).message}`);
    }
  }
  throw new KaslrNotFoundError(`kernel banner found but no image is consistent: ${errors.join('; ')}`);
}

/** Reads each range on its own terms: a range that fails (outside RAM) yields null, not an error. */
async function readEach(phys: PhysicalMemory, ranges: PhysicalRange[], opts: CallOptions): Promise<Array<Buffer | null>> {
  try {
    return await phys.readRanges(ranges, opts);
  } catch (err) {
    if (isFatalReadError(err)) throw err;
    return Promise.all(ranges.map((r) => phys.read(r.address, r.length, opts).catch((e) => {
      if (e instanceof VmiError && isFatalReadError(e)) throw e;
      return null;
    })));
  }
}

async function readU64(phys: PhysicalMemory, address: bigint, opts: CallOptions): Promise<bigint> {
  return (await phys.read(address, 8, opts)).readBigUInt64LE(0);
}

async function confirm(phys: PhysicalMemory, syms: LinkTimeSymbols, base: bigint, banner: string, opts: CallOptions): Promise<KaslrResult> {
  const text = syms.symbol('_text');
  const physOf = (name: string) => base + (syms.symbol(name) - text);
  const physBase = await readU64(phys, physOf('phys_base'), opts);
  // phys_base is an unsigned long that wraps when the virtual slide exceeds the physical one
  const virtualSlide = BigInt.asUintN(64, base - physBase - (text - START_KERNEL_MAP));
  if (virtualSlide < 0n || virtualSlide >= MAX_VIRTUAL_SLIDE || virtualSlide % ALIGN !== 0n) {
    throw new ValidationError(`phys_base 0x${physBase.toString(16)} implies an impossible virtual slide 0x${virtualSlide.toString(16)}`);
  }
  let pagingLevels: 4 | 5 = 4;
  if (syms.hasSymbol('__pgtable_l5_enabled')) {
    const l5 = (await phys.read(physOf('__pgtable_l5_enabled'), 4, opts)).readUInt32LE(0);
    if (l5 === 1) pagingLevels = 5;
    else if (l5 !== 0) throw new ValidationError(`__pgtable_l5_enabled holds ${l5}`);
  }
  const pageTableRoot = physOf('init_top_pgt');
  const pt = new X86PageTable(phys, pageTableRoot, {
    format: pagingFormatForLevels(pagingLevels),
    keepKptiBit: true,
    name: 'kernel page table',
  });
  const t = await pt.translate(text + virtualSlide, opts);
  if (t.physical !== base) {
    throw new ValidationError(`init_top_pgt maps _text to 0x${t.physical.toString(16)}, not to the image at 0x${base.toString(16)}`);
  }
  return {
    physicalBase: base,
    physicalSlide: base - (text - START_KERNEL_MAP),
    virtualSlide,
    physBase,
    pageTableRoot,
    pagingLevels,
    banner,
  };
}

/**
 * The running kernel's banner, found without any profile by scanning RAM for "Linux version "
 * (the banner itself, or its copy at the head of the kernel log). Only used to say which kernel
 * runs when no profile fits, so a slow scan is acceptable; at most `maxBytes` are read.
 */
export async function scanForBanner(phys: PhysicalMemory, ram: readonly PhysicalRange[], opts: CallOptions & { maxBytes?: number } = {}): Promise<string | null> {
  const CHUNK = 1 << 20;
  let budget = opts.maxBytes ?? 4 * 1024 * 1024 * 1024;
  for (const r of ram) {
    for (let off = 0; off < r.length && budget > 0; off += CHUNK) {
      const len = Math.min(CHUNK + BANNER_MAX, r.length - off);
      budget -= len;
      let buf: Buffer;
      try {
        buf = await phys.read(r.address + BigInt(off), len, opts);
      } catch (err) {
        if (isFatalReadError(err)) throw err;
        continue;
      }
      for (let i = buf.indexOf(BANNER_PREFIX); i >= 0 && i < CHUNK; i = buf.indexOf(BANNER_PREFIX, i + 1)) {
        // a real banner is one line naming the build, "Linux version 6.1.0-56-cloud-amd64 (builder@host)
        // (gcc ...) #1 SMP ...\n", in linux_banner or the kernel log; copies quoted in files are not
        const line = buf.subarray(i, i + BANNER_MAX);
        const end = line.indexOf(0x0a);
        if (end < 0) continue;
        const candidate = line.subarray(0, end).toString('latin1');
        if (/^Linux version \S+ \(.*\) #\d/.test(candidate) && !/["\\\x00-\x1f\x7f-\xff]/.test(candidate)) return candidate;
      }
    }
  }
  return null;
}
