/**
 * Compares guest code with the image: every byte that differs must lie in a patch site whose
 * whole current content is one of that site's legitimate forms; anything else is a change.
 */
import type { KernelImage } from './image';
import { acceptsForm, type PatchSite, type SiteContext } from './patch-sites';

export interface CodeDifference {
  /** Link-time address of the first changed byte. */
  address: bigint;
  expected: Buffer;
  found: Buffer;
}

/** What the running kernel legitimately made of some sites, read from its memory (static-calls.ts). */
export type RuntimeForms = Pick<SiteContext, 'moduleStaticCalls'>;

/** Differences closer than this are reported as one (an inline hook changes a few bytes in a row). */
const MERGE_GAP = 8;

export class PatchSiteIndex {
  readonly #sites: readonly PatchSite[];
  /** The longest site: how far back a site covering an address can start. */
  readonly #maxLength: bigint;

  constructor(sites: readonly PatchSite[]) {
    this.#sites = sites;
    this.#maxLength = BigInt(sites.reduce((m, s) => Math.max(m, s.length), 1));
  }

  get size(): number {
    return this.#sites.length;
  }

  /** Every site, sorted by address. */
  get sites(): readonly PatchSite[] {
    return this.#sites;
  }

  /** The sites that cover link-time address `addr`. */
  covering(addr: bigint): PatchSite[] {
    const sites = this.#sites;
    let lo = 0, hi = sites.length;
    const from = addr - this.#maxLength;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sites[mid].address <= from) lo = mid + 1;
      else hi = mid;
    }
    const out: PatchSite[] = [];
    for (let i = lo; i < sites.length && sites[i].address <= addr; i++) {
      if (addr < sites[i].address + BigInt(sites[i].length)) out.push(sites[i]);
    }
    return out;
  }

  /** The sites that start in [addr, addr + length). */
  within(addr: bigint, length: number): PatchSite[] {
    const sites = this.#sites;
    let lo = 0, hi = sites.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sites[mid].address < addr) lo = mid + 1;
      else hi = mid;
    }
    const out: PatchSite[] = [];
    const end = addr + BigInt(length);
    for (let i = lo; i < sites.length && sites[i].address < end; i++) out.push(sites[i]);
    return out;
  }
}

/**
 * The unexplained differences between `found` (guest bytes at link-time address `addr`, i.e. at
 * `addr + slide` at run time) and the image. `expected` may be passed when already computed.
 */
export function compareCode(image: KernelImage, index: PatchSiteIndex, addr: bigint, found: Buffer, slide: bigint, expected?: Buffer, runtime: RuntimeForms = {}): CodeDifference[] {
  const want = expected ?? image.expected(addr, found.length, slide);
  if (!want) return [{ address: addr, expected: Buffer.alloc(0), found }];
  const bad: Array<[number, number]> = [];
  let i = 0;
  const n = found.length;
  while (i < n) {
    if (found[i] === want[i]) {
      i++;
      continue;
    }
    const at = addr + BigInt(i);
    let explainedTo = -1;
    for (const site of index.covering(at)) {
      const start = Number(site.address - addr);
      const end = start + site.length;
      if (start < 0 || end > n) continue;
      if (acceptsForm(site, found.subarray(start, end), { image, original: want.subarray(start, end), slide, moduleStaticCalls: runtime.moduleStaticCalls })) explainedTo = Math.max(explainedTo, end);
    }
    if (explainedTo > i) {
      i = explainedTo;
      continue;
    }
    const last = bad[bad.length - 1];
    if (last && i - last[1] <= MERGE_GAP) last[1] = i + 1;
    else bad.push([i, i + 1]);
    i++;
  }
  return bad.map(([s, e]) => ({ address: addr + BigInt(s), expected: Buffer.from(want.subarray(s, e)), found: Buffer.from(found.subarray(s, e)) }));
}
