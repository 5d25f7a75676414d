/**
 * Decoding the kernel's own symbol table (kallsyms) from the bytes of its .rodata, found by the
 * shape of the tables alone, as scripts/kallsyms.c lays them out. The chain
 *
 *   kallsyms_num_syms     u32 N
 *   kallsyms_names        N entries: length (1 byte, or 2 when the first has bit 7: "big" symbols,
 *                         6.1), then that many token numbers; the expanded first byte is the type
 *   kallsyms_markers      u32 per 256 symbols: offset of entry 256·k in kallsyms_names
 *   kallsyms_token_table  256 NUL-terminated strings
 *   kallsyms_token_index  u16[256]: offset of each token in the table
 *
 * is the same in every version since 4.6; where kallsyms_offsets (s32[N]) lie, what they count
 * from, where kallsyms_seqs_of_names goes and how the labels are aligned (8 or 4 bytes) changed.
 * Every known way is tried and the one whose addresses come out sorted wins. README.md here lists
 * the layouts and the kernels that have them.
 *
 * Everything here reads one window of guest bytes and trusts none of it: counts and lengths are
 * bounded by the window, and a structure that does not add up is rejected, not guessed at.
 */

/** __START_KERNEL with the default CONFIG_PHYSICAL_START of 16 MiB. */
export const LINK_TEXT = 0xffffffff81000000n;

/**
 * A decoded symbol: its address (runtime with a kallsyms_relative_base, which KASLR relocates;
 * link-time with place-relative offsets, see KallsymsTables.runtimeAddresses) and nm type letter.
 */
export interface KallsymsEntry {
  name: string;
  address: bigint;
  type: string;
}

export interface KallsymsTables {
  entries: KallsymsEntry[];
  /** Offsets in the window of each table, for messages and tests. */
  at: { numSyms: number; names: number; markers: number; tokenTable: number; tokenIndex: number; offsets: number; relativeBase: number };
  /** kallsyms_relative_base; null when the offsets are place-relative (no base). */
  relativeBase: bigint | null;
  /** Whether the addresses are runtime ones (base-relative) or link-time ones (place-relative). */
  runtimeAddresses: boolean;
  /** Whether non-negative offsets are absolute per-CPU addresses (CONFIG_KALLSYMS_ABSOLUTE_PERCPU). */
  absolutePercpu: boolean;
}

/** More symbols than any kernel has (a 6.x allyesconfig has about 400k). */
const MAX_SYMS = 2_000_000;
const MAX_NAME = 0x3fff;

const align8 = (n: number): number => (n + 7) & ~7;

/**
 * Offsets (in `w`) where a plausible kallsyms_token_index starts: 256 u16, the first 0, strictly
 * increasing by 2..255 (each token is at least one byte and its NUL). Cheap tests come first: this
 * runs over all of guest RAM.
 */
export function* tokenIndexCandidates(w: Buffer, from = 0, to = w.length): Generator<number> {
  const end = Math.min(to, w.length - 512);
  for (let p = (from + 3) & ~3; p <= end; p += 4) {
    if (w[p] !== 0 || w[p + 1] !== 0 || w[p + 3] !== 0) continue;
    const first = w[p + 2];
    if (first < 2 || first > 64) continue;
    let ok = true;
    let prev = 0;
    for (let i = 1; i < 256; i++) {
      const v = w.readUInt16LE(p + 2 * i);
      const step = v - prev;
      if (step < 2 || step > 255) {
        ok = false;
        break;
      }
      prev = v;
    }
    if (ok) yield p;
  }
}

/** The token table that `tokenIndex` (at `ix`) indexes, ending just before it; null when none fits. */
export function tokenTableBefore(w: Buffer, ix: number): { start: number; tokens: Buffer[] } | null {
  const index: number[] = [];
  for (let i = 0; i < 256; i++) index.push(w.readUInt16LE(ix + 2 * i));
  for (let pad = 0; pad < 8; pad++) {
    const end = ix - pad; // one past the last token's NUL
    if (end < 2 || w[end - 1] !== 0 || w[end - 2] === 0) continue;
    let s = end - 2;
    while (s > 0 && w[s - 1] !== 0) s--;
    const start = s - index[255];
    if (start < 0 || start % 4 !== 0) continue;
    // padding between the table and the index is zeros
    let padOk = true;
    for (let i = end; i < ix; i++) if (w[i] !== 0) padOk = false;
    if (!padOk) continue;
    const tokens: Buffer[] = [];
    for (let i = 0; i < 256; i++) {
      const a = start + index[i];
      const b = i < 255 ? start + index[i + 1] - 1 : end - 1;
      if (w[b] !== 0 || b <= a) break;
      const tok = w.subarray(a, b);
      if (tok.includes(0)) break;
      tokens.push(tok);
    }
    if (tokens.length === 256) return { start, tokens };
  }
  return null;
}

/** m u32 markers at `s`: the first 0, then strictly increasing. */
function markersAt(w: Buffer, s: number, m: number): number[] | null {
  if (s < 0 || s % 4 !== 0 || s + 4 * m > w.length || w.readUInt32LE(s) !== 0) return null;
  const markers = [0];
  for (let k = 1; k < m; k++) {
    const v = w.readUInt32LE(s + 4 * k);
    if (v <= markers[k - 1]) return null;
    markers.push(v);
  }
  return markers;
}

/**
 * kallsyms_markers before the token table at `tt`: right before it, or (6.2+, and 6.1 stable
 * backports) before kallsyms_seqs_of_names, 3 bytes per symbol, whose size gives the count.
 * Yields each layout that fits, with the symbol count when the seqs fixed it.
 */
function* markersBefore(w: Buffer, tt: number): Generator<{ start: number; markers: number[]; count?: number }> {
  let e = tt;
  if (e >= 4 && w.readUInt32LE(e - 4) === 0) e -= 4; // alignment padding (the last marker is > 0 unless it is the only one)
  let s = e - 4;
  while (s >= 4 && w.readUInt32LE(s) !== 0 && w.readUInt32LE(s - 4) < w.readUInt32LE(s)) s -= 4;
  if (s >= 0) {
    const markers = markersAt(w, s, Math.max(1, (e - s) / 4));
    if (markers) yield { start: s, markers };
  }
  for (let g = 4; g <= 3 * MAX_SYMS + 8 && g <= tt; g += 4) {
    const end = tt - g;
    for (let n = Math.max(1, Math.ceil((g - 7) / 3)); 3 * n <= g; n++) {
      const m = Math.ceil(n / 256);
      // the markers end at the seqs, or one zero word before them (8-byte alignment)
      for (const start of [end - 4 * m, end - 4 * m - 4]) {
        if (start !== end - 4 * m && w.readUInt32LE(end - 4) !== 0) continue;
        const markers = markersAt(w, start, m);
        if (markers && (m === 1 || markers[m - 1] > 0)) yield { start, markers, count: n };
      }
    }
  }
}

/** Length and header size of the names entry at `p`. */
function entryLength(w: Buffer, p: number): [number, number] {
  const b = w[p];
  if (b & 0x80) return [(b & 0x7f) | (w[p + 1] << 7), 2];
  return [b, 1];
}

/**
 * Walks `count` entries from `p`; returns the offset after them, or -1 when an entry is empty,
 * too long or runs past `limit`.
 */
function walkNames(w: Buffer, p: number, count: number, limit: number): number {
  for (let i = 0; i < count; i++) {
    if (p >= limit) return -1;
    const [len, hdr] = entryLength(w, p);
    if (len === 0 || len > MAX_NAME) return -1;
    p += hdr + len;
  }
  return p <= limit ? p : -1;
}

/** kallsyms_num_syms and kallsyms_names ending at the markers: the start of the names. */
function namesBefore(w: Buffer, markersAt: number, markers: number[], count?: number): { numSymsAt: number; names: number; count: number } | null {
  const m = markers.length;
  const last = markers[m - 1];
  const lo = 256 * (m - 1) + 1;
  const hi = 256 * m;
  // the last block of at most 256 entries spans 256 · (2 + MAX_NAME) bytes at most; real ones far less
  const top = markersAt - last - 4;
  const bottom = Math.max(0, top - 256 * 1024);
  for (let q = top & ~3; q >= bottom; q -= 4) {
    const n = w.readUInt32LE(q);
    if (n < lo || n > hi || (count !== undefined && n !== count)) continue;
    // names follow at once (4-byte labels) or after a zero word (8-byte labels): no entry is empty
    const names = w.readUInt32LE(q + 4) === 0 ? q + 8 : q + 4;
    const end = walkNames(w, names + last, n - 256 * (m - 1), markersAt);
    if (end < 0 || markersAt - end >= 8 || !zeros(w, end, markersAt)) continue;
    return { numSymsAt: q, names, count: n };
  }
  return null;
}

function zeros(w: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (w[i] !== 0) return false;
  return true;
}

/** Every marker falls on an entry boundary. */
function markersFit(w: Buffer, names: number, limit: number, markers: number[]): boolean {
  let p = names;
  for (let k = 1; k < markers.length; k++) {
    p = walkNames(w, p, 256, limit);
    if (p < 0 || p - names !== markers[k]) return false;
  }
  return true;
}

function expand(w: Buffer, p: number, tokens: Buffer[]): { text: string; next: number } {
  const [len, hdr] = entryLength(w, p);
  const parts: Buffer[] = [];
  for (let i = p + hdr; i < p + hdr + len; i++) parts.push(tokens[w[i]]);
  return { text: Buffer.concat(parts).toString('latin1'), next: p + hdr + len };
}

function decodeAddresses(w: Buffer, offsetsAt: number, count: number, relativeBase: bigint, absolutePercpu: boolean): bigint[] {
  const out: bigint[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const o = w.readInt32LE(offsetsAt + 4 * i);
    if (absolutePercpu) out[i] = o >= 0 ? BigInt(o) : BigInt.asUintN(64, relativeBase - 1n - BigInt(o));
    else out[i] = BigInt.asUintN(64, relativeBase + BigInt(o >>> 0));
  }
  return out;
}

/** Fraction of adjacent address pairs that are in order (1 for the real table). */
function sortedness(addrs: bigint[]): number {
  let ok = 0;
  for (let i = 1; i < addrs.length; i++) if (addrs[i] >= addrs[i - 1]) ok++;
  return addrs.length > 1 ? ok / (addrs.length - 1) : 0;
}

/**
 * Decodes the kallsyms tables around the token index at `ix` in `w`; null when the bytes there
 * are not a complete, consistent set.
 */
export function decodeKallsyms(w: Buffer, ix: number): KallsymsTables | null {
  if (!Number.isInteger(ix) || ix < 0 || ix + 512 > w.length) return null;
  try {
    return decodeAt(w, ix);
  } catch (err) {
    // a length or offset that points outside the window: not a real table
    if (err instanceof RangeError) return null;
    throw err;
  }
}

function decodeAt(w: Buffer, ix: number): KallsymsTables | null {
  const table = tokenTableBefore(w, ix);
  if (!table) return null;
  let found: { mk: { start: number; markers: number[] }; nm: { numSymsAt: number; names: number; count: number } } | undefined;
  for (const mk of markersBefore(w, table.start)) {
    const nm = namesBefore(w, mk.start, mk.markers, mk.count);
    if (nm && nm.count <= MAX_SYMS && markersFit(w, nm.names, mk.start, mk.markers)) {
      found = { mk, nm };
      break;
    }
  }
  if (!found) return null;
  const { mk, nm } = found;

  const n = nm.count;
  const entries: KallsymsEntry[] = new Array(n);
  let p = nm.names;
  for (let i = 0; i < n; i++) {
    const e = expand(w, p, table.tokens);
    p = e.next;
    entries[i] = { type: e.text.slice(0, 1), name: e.text.slice(1), address: 0n };
  }

  const best = bestAddresses(w, ix, nm.numSymsAt, n, entries);
  if (!best) return null;
  best.addrs.forEach((a, i) => { entries[i].address = a; });
  return {
    entries,
    at: { numSyms: nm.numSymsAt, names: nm.names, markers: mk.start, tokenTable: table.start, tokenIndex: ix, offsets: best.offsets, relativeBase: best.base ?? -1 },
    relativeBase: best.relativeBase,
    absolutePercpu: best.absolutePercpu,
    runtimeAddresses: best.relativeBase !== null,
  };
}

interface Addresses { addrs: bigint[]; offsets: number; base: number | null; relativeBase: bigint | null; absolutePercpu: boolean; score: number }

/**
 * kallsyms_offsets wherever they fit: each way of storing them is tried at its place and the one
 * whose addresses come out sorted wins (the earlier on a tie: a base-relative table read as
 * place-relative is sorted too).
 */
function bestAddresses(w: Buffer, ix: number, numSymsAt: number, n: number, entries: KallsymsEntry[]): Addresses | null {
  const candidates: Addresses[] = [];
  const afterIndex = ix + 512;
  // base-relative, before kallsyms_num_syms (up to 6.3) or after the token index (6.4+)
  const before = numSymsAt - 8;
  for (const place of [{ offsets: before - align8(4 * n), base: before }, { offsets: afterIndex, base: align8(afterIndex + 4 * n) }]) {
    const c = baseRelative(w, place.offsets, place.base, n);
    if (c) candidates.push(c);
  }
  const pr = placeRelative(w, afterIndex, n, entries);
  if (pr) candidates.push(pr);
  let best: Addresses | undefined;
  for (const c of candidates) if (!best || c.score > best.score) best = c;
  return best && best.score >= 0.9 ? best : null;
}

function baseRelative(w: Buffer, offsets: number, base: number, n: number): Addresses | null {
  if (offsets < 0 || base + 8 > w.length) return null;
  const relativeBase = w.readBigUInt64LE(base);
  if (relativeBase < 0xffffffff80000000n) return null;
  let negative = 0;
  for (let i = 0; i < n; i++) if (w.readInt32LE(offsets + 4 * i) < 0) negative++;
  // with absolute per-CPU symbols, kernel addresses are stored as negative offsets
  const absolutePercpu = negative > n / 2;
  const addrs = decodeAddresses(w, offsets, n, relativeBase, absolutePercpu);
  const kernel = addrs.filter((a) => a >= 0xffffffff80000000n);
  return { addrs, offsets, base, relativeBase, absolutePercpu, score: sortedness(kernel) * (kernel.length / n) };
}

/**
 * Place-relative offsets (each s32 counts from its own slot, no kallsyms_relative_base): they give
 * the symbols' distances from one another, not where the image sits. The addresses returned are
 * the link-time ones, with _text at LINK_TEXT; KASLR's virtual slide is found afterwards.
 */
function placeRelative(w: Buffer, offsets: number, n: number, entries: KallsymsEntry[]): Addresses | null {
  if (offsets + 4 * n > w.length) return null;
  const text = entries.findIndex((e) => e.name === '_text');
  if (text < 0) return null;
  const rel = (i: number): bigint => BigInt(offsets + 4 * i + w.readInt32LE(offsets + 4 * i));
  const at = rel(text);
  const addrs: bigint[] = new Array(n);
  for (let i = 0; i < n; i++) addrs[i] = BigInt.asUintN(64, LINK_TEXT + rel(i) - at);
  return { addrs, offsets, base: null, relativeBase: null, absolutePercpu: false, score: sortedness(addrs) };
}
