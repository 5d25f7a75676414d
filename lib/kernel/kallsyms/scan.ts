/**
 * Finding kallsyms in guest-physical memory with nothing known about the kernel: scan RAM for the
 * token index (the most regular of the tables), decode everything around it, then place the
 * kernel image with the decoded symbols the way a profile would (findKaslr).
 *
 * kallsyms_relative_base is relocated when KASLR moves the kernel, so the addresses decoded are
 * runtime ones. The link-time addresses a profile keeps are those minus the virtual slide; the
 * link-time _text is __START_KERNEL (__START_KERNEL_map + CONFIG_PHYSICAL_START, 16 MiB on every
 * x86-64 distribution kernel), which memory cannot tell us.
 */
import { isFatalReadError, VmiError } from '../../errors';
import type { CallOptions } from '../../util/deadline';
import type { PhysicalMemory, PhysicalRange } from '../../memory/physical';
import { findKaslr, type KaslrResult } from '../kaslr';
import { decodeKallsyms, tokenIndexCandidates, tokenTableBefore, type KallsymsEntry, type KallsymsTables } from './tables';

/** __START_KERNEL with the default CONFIG_PHYSICAL_START of 16 MiB. */
export const LINK_TEXT = 0xffffffff81000000n;

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
  const byName = indexByName(tables.entries);
  const runtime = {
    symbol(name: string): bigint {
      const e = byName.get(name);
      if (!e) throw new KallsymsNotFoundError(`kallsyms has no ${name}`);
      return e.address;
    },
    hasSymbol: (name: string) => byName.has(name),
  };
  for (const needed of ['_text', 'linux_banner', 'phys_base', 'init_top_pgt']) {
    if (!byName.has(needed)) return null;
  }
  let kaslr: KaslrResult;
  try {
    kaslr = await findKaslr(phys, runtime, { ...opts, ram: [r] });
  } catch (err) {
    if (err instanceof VmiError && (err.code === 'EKASLR' || err.code === 'EINVALID')) return null;
    throw err;
  }
  const { entries, ...rest } = tables;
  return {
    entries,
    byName,
    kaslr,
    virtualSlide: runtime.symbol('_text') - LINK_TEXT,
    tokenIndexPhysical: ixPhys,
    tables: rest,
  };
}
