/**
 * The guest kernel's code symbols without a vmlinux: the profile's symbols (from the guest's own
 * kallsyms when the profile was built from memory), at run-time addresses, sorted, with the
 * bounds of core kernel text (_stext.._etext). kallsyms gives no sizes: a function runs to the
 * next symbol.
 */
import { VmiError } from '../errors';
import type { Kernel } from '../kernel/kernel';

export interface CodeSymbol {
  name: string;
  /** Run-time address. */
  address: bigint;
}

/** Sort keys are offsets from here (the kernel map; module space lies above it). */
const KEY_BASE = 0xffffffff80000000n;
/** Longest stretch taken as one function (x64_sys_call is 5 KB; nothing watched is near this). */
const MAX_FUNCTION = 64 * 1024;

export class SymbolMap {
  /** Text symbols sorted by address; several names may share one. */
  readonly #sorted: CodeSymbol[];
  /** Name → run-time address (the profile's own index, or a map of the symbols given). */
  readonly #lookup: (name: string) => bigint | undefined;
  /** Every distinct symbol address (text and data), sorted: where an object ends. */
  readonly #starts: bigint[];

  constructor(symbols: Iterable<CodeSymbol>, readonly textStart: bigint, readonly textEnd: bigint, lookup?: (name: string) => bigint | undefined) {
    const byName = lookup ? undefined : new Map<string, bigint>();
    this.#lookup = lookup ?? ((name) => byName!.get(name));
    // sorted as numbers (offsets from the kernel map's start fit a double): 150k symbols in a few
    // tens of ms, where comparing bigints took the better part of a second
    const keyed: Array<{ s: CodeSymbol; k: number }> = [];
    const starts: number[] = [];
    for (const s of symbols) {
      byName?.set(s.name, s.address);
      const k = Number(s.address - KEY_BASE);
      starts.push(k);
      if (s.address >= textStart && s.address < textEnd) keyed.push({ s, k });
    }
    keyed.sort((a, b) => a.k - b.k || (a.s.name < b.s.name ? -1 : 1));
    this.#sorted = keyed.map((e) => e.s);
    const uniq = Float64Array.from(starts).sort();
    this.#starts = [];
    for (let i = 0; i < uniq.length; i++) if (i === 0 || uniq[i] !== uniq[i - 1]) this.#starts.push(BigInt(uniq[i]) + KEY_BASE);
  }

  /** The first symbol address above `addr` (text or data), or undefined. */
  nextAfter(addr: bigint): bigint | undefined {
    let lo = 0, hi = this.#starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#starts[mid] <= addr) lo = mid + 1;
      else hi = mid;
    }
    return this.#starts[lo];
  }

  /** Per profile and slide: the map depends on nothing the guest can change while it runs. */
  static #cache = new WeakMap<object, Map<bigint, SymbolMap>>();

  /** The map of a kernel's profile symbols, slid to where the guest runs them. */
  static of(kernel: Kernel): SymbolMap {
    const p = kernel.profile;
    const slide = kernel.kaslr.virtualSlide;
    let bySlide = SymbolMap.#cache.get(p);
    if (!bySlide) SymbolMap.#cache.set(p, (bySlide = new Map()));
    const have = bySlide.get(slide);
    if (have) return have;
    if (!p.hasSymbol('_stext') || !p.hasSymbol('_etext')) throw new VmiError('ENOCORETEXT', `the profile ${p.source} has no _stext/_etext: core kernel text cannot be told`);
    const syms: CodeSymbol[] = [];
    for (const name of p.symbolNames()) {
      const a = p.symbol(name);
      // absolute symbols (per-CPU offsets) are not code
      if (a >= 0xffffffff80000000n) syms.push({ name, address: a + slide });
    }
    const map = new SymbolMap(syms, kernel.symbol('_stext'), kernel.symbol('_etext'), (name) => (p.hasSymbol(name) ? p.symbol(name) + slide : undefined));
    bySlide.set(slide, map);
    return map;
  }

  get size(): number {
    return this.#sorted.length;
  }

  address(name: string): bigint | undefined {
    return this.#lookup(name);
  }

  inCoreText(addr: bigint): boolean {
    return addr >= this.textStart && addr < this.textEnd;
  }

  #indexAtOrBefore(addr: bigint): number {
    let lo = 0, hi = this.#sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#sorted[mid].address <= addr) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  /** The names of the symbols that start exactly at `addr` (empty when none). */
  namesAt(addr: bigint): string[] {
    const out: string[] = [];
    for (let i = this.#indexAtOrBefore(addr); i >= 0 && this.#sorted[i].address === addr; i--) out.push(this.#sorted[i].name);
    return out;
  }

  /** The text symbol at or before `addr` (the function containing it, as far as kallsyms tells). */
  containing(addr: bigint): CodeSymbol | undefined {
    if (!this.inCoreText(addr)) return undefined;
    const i = this.#indexAtOrBefore(addr);
    return i >= 0 ? this.#sorted[i] : undefined;
  }

  /** Bytes from `addr` to the next symbol at a higher address (or _etext), bounded. */
  extentFrom(addr: bigint): number {
    let i = this.#indexAtOrBefore(addr) + 1;
    while (i < this.#sorted.length && this.#sorted[i].address <= addr) i++;
    const next = i < this.#sorted.length ? this.#sorted[i].address : this.textEnd;
    return Math.max(1, Math.min(MAX_FUNCTION, Number(next - addr)));
  }

  /** `name+0xoff` for a code address, or the bare address outside core text. */
  describe(addr: bigint): string {
    const s = this.containing(addr);
    if (!s) return `0x${addr.toString(16)}`;
    return addr === s.address ? s.name : `${s.name}+0x${(addr - s.address).toString(16)}`;
  }
}
