/**
 * Where guest-physical memory lives in QEMU's own address space, learned through HMP:
 * `info mtree -f` lists the flattened guest-physical map (which ranges are RAM/ROM and which are
 * devices), and `gpa2hva <addr>` names the host virtual address behind one guest-physical address.
 * A flat range is one slice of one RAMBlock, which QEMU maps contiguously, so one gpa2hva per range
 * maps all of it. RAM sits in several ranges (below the PCI hole, above 4 GiB, BIOS/option ROMs).
 */

/** A guest-physical range backed by host memory. */
export interface RamRegion {
  /** Guest-physical start and end (exclusive). */
  start: bigint;
  end: bigint;
  /** mtree's kind: 'ram', 'rom' or 'romd' (ROM device in ROM mode, e.g. pflash firmware). */
  kind: string;
  /** Memory-region name, e.g. pc.ram, pc.bios. */
  name: string;
}

/** Kinds whose bytes sit in host memory; 'i/o' and 'ramd' (device BARs such as VFIO) do not. */
const HOST_BACKED = new Set(['ram', 'rom', 'romd']);

const RANGE_LINE = /^\s*([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, ([a-z/]+)\): (\S+)/i;

/**
 * Host-backed ranges of the system memory address space from `info mtree -f` output: the FlatView
 * block that lists `AS "memory"` (the first block whose root is `system` on older QEMUs). Sorted,
 * adjacent ranges of the same region kept apart (each needs its own gpa2hva).
 */
export function parseMtreeFlat(text: string): RamRegion[] {
  const blocks = text.split(/^FlatView #\d+/m).slice(1);
  const block = blocks.find((b) => /AS "memory"/.test(b)) ?? blocks.find((b) => /Root memory region: system/.test(b));
  if (block === undefined) return [];
  const regions: RamRegion[] = [];
  for (const line of block.split(/\r?\n/)) {
    const m = RANGE_LINE.exec(line);
    if (!m || !HOST_BACKED.has(m[3])) continue;
    const start = BigInt(`0x${m[1]}`);
    const last = BigInt(`0x${m[2]}`);
    if (last < start) continue;
    regions.push({ start, end: last + 1n, kind: m[3], name: m[4] });
  }
  return regions.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
}

export interface Gpa2hvaReply {
  guest: bigint;
  region: string;
  host: bigint;
}

/**
 * Parses "Host virtual address for 0x1000 (pc.ram) is 0x7f4267e01000". Anything else (for example
 * "No memory is mapped at address 0x8000000", "Memory at address 0x… is not RAM", or
 * "unknown command: 'gpa2hva'" on a QEMU without it) gives undefined.
 */
export function parseGpa2hva(reply: string): Gpa2hvaReply | undefined {
  const m = /Host virtual address for 0x([0-9a-f]+) \((.*)\) is 0x([0-9a-f]+)/i.exec(reply);
  if (!m) return undefined;
  return { guest: BigInt(`0x${m[1]}`), region: m[2], host: BigInt(`0x${m[3]}`) };
}

/** First line of an HMP reply, for one-line reasons. */
export function firstLine(text: string): string {
  return (text.split(/\r?\n/).find((l) => l.trim() !== '') ?? '').trim().slice(0, 160);
}
