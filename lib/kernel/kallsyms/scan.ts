/**
 * Finding kallsyms in guest-physical memory with nothing known about the kernel: scan RAM for the
 * token index (the most regular of the tables), decode everything around it, then place the
 * kernel image with the decoded symbols the way a profile would (findKaslr).
 *
 * kallsyms_relative_base is relocated when KASLR moves the kernel, so the addresses decoded from a
 * base-relative table are runtime ones; place-relative offsets (no base) give link-time ones, and
 * the slide findKaslr finds makes them runtime. The link-time addresses a profile keeps are the
 * runtime ones minus the virtual slide; the link-time _text is __START_KERNEL (__START_KERNEL_map +
 * CONFIG_PHYSICAL_START, 16 MiB on every x86-64 distribution kernel), which memory cannot tell us.
 */
import { isFatalReadError, VmiError } from '../../errors';
import type { CallOptions } from '../../util/deadline';
import type { PhysicalMemory, PhysicalRange } from '../../memory/physical';
import { findKaslr, type KaslrResult } from '../kaslr';
import { decodeKallsyms, LINK_TEXT, tokenIndexCandidates, tokenTableBefore, type KallsymsEntry, type KallsymsTables } from './tables';

export { LINK_TEXT };

const CHUNK = 4 * 1024 * 1024;
const LOOK_BEHIND = 16 * 1024;
/** How much of the image around the token index is read: the tables before it, offsets after (6.4+). */
const WINDOW_BEFORE = 16 * 1024 * 1024;
const WINDOW_AFTER = 8 * 1024 * 1024;

export class KallsymsNotFoundError extends VmiError {
  constructor(message: string) {
    super('ENOKALLSYMS', message);
  }
}

export interface GuestKallsyms {
  /** Runtime symbols in table order (by address). */
  entries: KallsymsEntry[];
  /** name → runtime address; a global symbol wins over local ones of the same name, else the first. */
  byName: Map<string, KallsymsEntry>;
  /** Where the kernel is, found with the decoded symbols (its virtualSlide is 0: they are runtime). */
  kaslr: KaslrResult;
  /** Runtime − link-time addresses. */
  virtualSlide: bigint;
  /** Guest-physical address of kallsyms_token_index. */
  tokenIndexPhysical: bigint;
  tables: Omit<KallsymsTables, 'entries'>;
}

async function readOrNull(phys: PhysicalMemory, address: bigint, length: number, opts: CallOptions): Promise<Buffer | null> {
  try {
    return await phys.read(address, length, opts);
  } catch (err) {
    if (isFatalReadError(err)) throw err;
    return null;
  }
}

function indexByName(entries: KallsymsEntry[]): Map<string, KallsymsEntry> {
  const out = new Map<string, KallsymsEntry>();
  for (const e of entries) {
    const prev = out.get(e.name);
    const global = e.type >= 'A' && e.type <= 'Z';
    if (!prev || (global && !(prev.type >= 'A' && prev.type <= 'Z'))) out.set(e.name, e);
  }
  return out;
}

/** Scans guest RAM for the kernel's kallsyms and decodes them; see the file comment. */
export async function findKallsyms(phys: PhysicalMemory, ram: readonly PhysicalRange[], opts: CallOptions = {}): Promise<GuestKallsyms> {
  let candidates = 0;
  for (const r of ram) {
    const rEnd = r.address + BigInt(r.length);
    for (let at = r.address; at < rEnd; at += BigInt(CHUNK)) {
      opts.signal?.throwIfAborted();
      const from = at - BigInt(LOOK_BEHIND) > r.address ? at - BigInt(LOOK_BEHIND) : r.address;
      const to = at + BigInt(CHUNK + 512) < rEnd ? at + BigInt(CHUNK + 512) : rEnd;
      const buf = await readOrNull(phys, from, Number(to - from), opts);
      if (!buf) continue;
      for (const ix of tokenIndexCandidates(buf, Number(at - from))) {
        if (!tokenTableBefore(buf, ix)) continue;
        candidates++;
        const found = await decodeAround(phys, r, from + BigInt(ix), opts);
        if (found) return found;
      }
    }
  }
  throw new KallsymsNotFoundError(`no kallsyms tables in guest memory (${candidates} token tables looked at)`);
}

async function decodeAround(phys: PhysicalMemory, r: PhysicalRange, ixPhys: bigint, opts: CallOptions): Promise<GuestKallsyms | null> {
  const rEnd = r.address + BigInt(r.length);
  const from = ixPhys - BigInt(WINDOW_BEFORE) > r.address ? ixPhys - BigInt(WINDOW_BEFORE) : r.address;
  const to = ixPhys + BigInt(WINDOW_AFTER) < rEnd ? ixPhys + BigInt(WINDOW_AFTER) : rEnd;
  const w = await readOrNull(phys, from, Number(to - from), opts);
  if (!w) return null;
  const tables = decodeKallsyms(w, Number(ixPhys - from));
  if (!tables) return null;
  let byName = indexByName(tables.entries);
  for (const needed of ['_text', 'linux_banner', 'phys_base', 'init_top_pgt']) {
    if (!byName.has(needed)) return null;
  }
  const symbols = {
    symbol(name: string): bigint {
      const e = byName.get(name);
      if (!e) throw new KallsymsNotFoundError(`kallsyms has no ${name}`);
      return e.address;
    },
    hasSymbol: (name: string) => byName.has(name),
  };
  let kaslr: KaslrResult;
  try {
    kaslr = await findKaslr(phys, symbols, { ...opts, ram: [r] });
  } catch (err) {
    if (err instanceof VmiError && (err.code === 'EKASLR' || err.code === 'EINVALID')) return null;
    throw err;
  }
  const { entries: decoded, ...rest } = tables;
  let entries = decoded;
  if (!tables.runtimeAddresses) {
    // link-time addresses: the slide findKaslr found for them makes them runtime ones
    const slide = kaslr.virtualSlide;
    entries = decoded.map((e) => ({ ...e, address: BigInt.asUintN(64, e.address + slide) }));
    byName = indexByName(entries);
    kaslr = { ...kaslr, virtualSlide: 0n };
  }
  return {
    entries,
    byName,
    kaslr,
    virtualSlide: byName.get('_text')!.address - LINK_TEXT,
    tokenIndexPhysical: ixPhys,
    tables: rest,
  };
}
