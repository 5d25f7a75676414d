/**
 * A fake QEMU for the procmem backend: a QMP port answering query-cpus-fast, `info mtree -f` and
 * `gpa2hva` like QEMU 7.2, and a fake procfs directory whose `<tid>/mem` is a sparse regular file in
 * which the "host addresses" are file offsets.
 */
import { mkdirSync, openSync, closeSync, writeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { QmpPort } from '../../../lib/memory/procmem-backend';

export interface FakeRegion {
  start: bigint;
  end: bigint;
  kind: string;
  name: string;
  host: bigint;
}

/** QEMU 7.2's `info mtree -f` for `-machine pc -m 128`, with the I/O address space cut short. */
export const MTREE_PC_128M = `FlatView #0
 AS "memory", root: system
 AS "cpu-memory-0", root: system
 Root memory region: system
  0000000000000000-00000000000bffff (prio 0, ram): pc.ram
  00000000000c0000-00000000000dffff (prio 1, rom): pc.rom
  00000000000e0000-00000000000fffff (prio 0, rom): pc.bios @0000000000020000
  0000000000100000-0000000007ffffff (prio 0, ram): pc.ram @0000000000100000
  00000000fec00000-00000000fec00fff (prio 0, i/o): ioapic
  00000000fed00000-00000000fed003ff (prio 0, i/o): hpet
  00000000fee00000-00000000feefffff (prio 4096, i/o): apic-msi
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios

FlatView #1
 AS "cpu-smm-0", root: memory
 Root memory region: memory
  0000000000000000-00000000000bffff (prio 0, ram): pc.ram

FlatView #2
 AS "I/O", root: io
 Root memory region: io
  0000000000000000-0000000000000007 (prio 0, i/o): dma-chan
`;

/**
 * Regions matching MTREE_PC_128M, with small fake host addresses so the fake mem file stays sparse.
 * (In real QEMU the two pc.bios ranges share host memory; here they are apart so each has its own bytes.)
 */
export function pcRegions(): FakeRegion[] {
  return [
    { start: 0x0n, end: 0xc0000n, kind: 'ram', name: 'pc.ram', host: 0x10000000n },
    { start: 0xc0000n, end: 0xe0000n, kind: 'rom', name: 'pc.rom', host: 0x20000000n },
    { start: 0xe0000n, end: 0x100000n, kind: 'rom', name: 'pc.bios', host: 0x30020000n },
    { start: 0x100000n, end: 0x8000000n, kind: 'ram', name: 'pc.ram', host: 0x10100000n },
    { start: 0xfffc0000n, end: 0x100000000n, kind: 'rom', name: 'pc.bios', host: 0x30040000n },
  ];
}

export class FakeQmp implements QmpPort {
  regions: FakeRegion[];
  mtree = MTREE_PC_128M;
  tids: unknown[] = [4242];
  gpa2hvaMissing = false;
  readonly hmpLog: string[] = [];

  constructor(regions: FakeRegion[] = pcRegions()) {
    this.regions = regions;
  }

  async execute(command: string): Promise<unknown> {
    if (command === 'query-cpus-fast') {
      return this.tids.map((tid, i) => ({ 'thread-id': tid, 'cpu-index': i, 'qom-path': `/machine/unattached/device[${i}]`, target: 'x86_64' }));
    }
    throw new Error(`fake QMP: unexpected ${command}`);
  }

  async hmp(command: string): Promise<string> {
    this.hmpLog.push(command);
    if (command === 'info mtree -f') return this.mtree;
    const m = /^gpa2hva (0x[0-9a-f]+)$/.exec(command);
    if (m) {
      if (this.gpa2hvaMissing) return "unknown command: 'gpa2hva'\r\n";
      const gpa = BigInt(m[1]);
      const r = this.regions.find((x) => x.start <= gpa && gpa < x.end);
      if (!r) return `No memory is mapped at address 0x${gpa.toString(16)}\r\n`;
      return `Host virtual address for 0x${gpa.toString(16)} (${r.name}) is 0x${(r.host + gpa - r.start).toString(16)}\r\n`;
    }
    return `unknown command: '${command.split(' ')[0]}'\r\n`;
  }
}

/**
 * Lays out `<root>/<tid>/mem` holding each region's bytes (from `content(gpa)`) at its host
 * offset, and `<root>/<tid>/maps` covering them.
 */
export function fakeProc(root: string, tid: number, regions: FakeRegion[], content: (gpa: bigint, length: number) => Buffer): void {
  mkdirSync(join(root, String(tid)), { recursive: true });
  const fd = openSync(join(root, String(tid), 'mem'), 'w');
  // only the first 1 MiB of each region gets data: enough for the tests, keeps the file small
  for (const r of regions) {
    const n = Number(r.end - r.start < 0x100000n ? r.end - r.start : 0x100000n);
    writeSync(fd, content(r.start, n), 0, n, Number(r.host));
  }
  closeSync(fd);
  const maps = regions
    .map((r) => `${r.host.toString(16)}-${(r.host + r.end - r.start).toString(16)} rw-p 00000000 00:00 0 \n`)
    .join('');
  writeFileSync(join(root, String(tid), 'maps'), maps);
}

/** Deterministic bytes for guest-physical addresses. */
export function guestBytes(gpa: bigint, length: number): Buffer {
  const b = Buffer.alloc(length);
  const base = Number(gpa); // test addresses stay far below 2^53
  for (let i = 0; i < length; i++) {
    const a = base + i;
    b[i] = (a ^ Math.floor(a / 0x100) ^ Math.floor(a / 0x10000)) & 0xff;
  }
  return b;
}
