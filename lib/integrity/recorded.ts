/**
 * A baseline recorded from the running guest at a moment the user trusts (`check --baseline FILE`):
 * the exact bytes of the watched functions, sys_call_table and the IDT, and a hash of every page
 * of .text. Valid for that boot only (the KASLR slide is recorded and checked).
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { VmiError } from '../errors';
import type { CallOptions } from '../util/deadline';
import type { Kernel } from '../kernel/kernel';
import type { CodeRegion, KernelBaseline } from './baseline';
import type { Finding } from './finding';

const PAGE = 4096;
const hex = (v: bigint) => `0x${v.toString(16)}`;

interface RecordedFile {
  version: 1;
  banner: string;
  virtualSlide: string;
  /** name → { address (run time), hex bytes } */
  regions: Record<string, { address: string; bytes: string }>;
  /** sha256 of each 4 KiB page of .text, from its start */
  textStart: string;
  textPages: string[];
}

async function snapshot(kernel: Kernel, base: KernelBaseline, regions: readonly CodeRegion[], opts: CallOptions): Promise<RecordedFile> {
  const slide = kernel.kaslr.virtualSlide;
  const all = [
    ...regions.map((r) => ({ name: r.name, address: r.address + slide, size: r.size })),
    { name: 'sys_call_table', address: base.syscallTable.address + slide, size: base.syscallTable.entries * 8 },
    { name: 'idt_table', address: kernel.symbol('idt_table'), size: 4096 },
  ];
  const bufs = await kernel.space.readMany(all.map((r) => ({ address: r.address, length: r.size })), opts);
  const text = base.image.section('.text')!;
  const textPages: string[] = [];
  for (let off = 0; off < text.size; off += 1 << 20) {
    const len = Math.min(1 << 20, text.size - off);
    const b = await kernel.space.read(text.addr + slide + BigInt(off), len, opts);
    for (let p = 0; p < len; p += PAGE) textPages.push(createHash('sha256').update(b.subarray(p, Math.min(len, p + PAGE))).digest('hex'));
  }
  return {
    version: 1,
    banner: kernel.kaslr.banner,
    virtualSlide: hex(slide),
    regions: Object.fromEntries(all.map((r, i) => [r.name, { address: hex(r.address), bytes: bufs[i].toString('hex') }])),
    textStart: hex(text.addr + slide),
    textPages,
  };
}

export async function recordBaseline(file: string, kernel: Kernel, base: KernelBaseline, regions: readonly CodeRegion[], opts: CallOptions = {}): Promise<void> {
  writeFileSync(file, JSON.stringify(await snapshot(kernel, base, regions, opts)) + '\n', { mode: 0o600 });
}

/** Differences between the guest now and the recorded baseline. */
export async function compareWithRecorded(file: string, kernel: Kernel, base: KernelBaseline, regions: readonly CodeRegion[], opts: CallOptions = {}): Promise<Finding[]> {
  let rec: RecordedFile;
  try {
    rec = JSON.parse(readFileSync(file, 'utf8')) as RecordedFile;
  } catch (err) {
    throw new VmiError('EBASELINE', `cannot read the recorded baseline ${file}: ${(err as Error).message}`);
  }
  if (rec.version !== 1 || rec.banner !== kernel.kaslr.banner || rec.virtualSlide !== hex(kernel.kaslr.virtualSlide)) {
    throw new VmiError('EBASELINE', `${file} was recorded for another kernel or boot (slide ${rec.virtualSlide}, now ${hex(kernel.kaslr.virtualSlide)}): record it again`);
  }
  const now = await snapshot(kernel, base, regions, opts);
  const out: Finding[] = [];
  for (const [name, r] of Object.entries(rec.regions)) {
    const cur = now.regions[name];
    if (!cur || cur.bytes === r.bytes) continue;
    const a = Buffer.from(r.bytes, 'hex'), b = Buffer.from(cur.bytes, 'hex');
    let i = 0;
    while (i < a.length && a[i] === b[i]) i++;
    let j = Math.min(a.length, b.length);
    while (j > i && a[j - 1] === b[j - 1]) j--;
    out.push({ kind: 'baseline', address: BigInt(r.address) + BigInt(i), symbol: `${name}+0x${i.toString(16)}`, expected: a.subarray(i, Math.max(j, i + 1)).toString('hex'), found: b.subarray(i, Math.max(j, i + 1)).toString('hex') });
  }
  rec.textPages.forEach((h, i) => {
    if (now.textPages[i] === h) return;
    const address = BigInt(rec.textStart) + BigInt(i * PAGE);
    out.push({ kind: 'baseline', address, symbol: `.text page ${base.describe(address - kernel.kaslr.virtualSlide)}`, expected: `sha256 ${h}`, found: `sha256 ${now.textPages[i]}` });
  });
  return out;
}
