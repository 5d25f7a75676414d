/**
 * ELF dumps (dump-guest-memory) as a hostile file: header, program headers (PT_XNUM counts,
 * offsets and sizes near 2^64), notes (QEMU CPU state, NT_PRSTATUS, VMCOREINFO), reads at segment
 * edges, and the KASLR search and banner scan a command runs over the dump's RAM.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VmiError } from '../../../lib/errors';
import { findKaslr, scanForBanner } from '../../../lib/kernel/kaslr';
import { ElfDumpMemory } from '../../../lib/memory/elf-dump';
import { syntheticProfile } from '../../helpers/synthetic-kernel';
import { buildElfCore, prstatus64, qemuCpuState } from '../../memory/helpers/elf-writer';
import type { Harness } from '../engine';

let dir: string | undefined;
let counter = 0;
const profile = syntheticProfile();

function fill(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed) & 0xff;
  return b;
}

async function expectTyped<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof VmiError) return undefined;
    throw err;
  }
}

export const elfDump: Harness = {
  name: 'elf-dump',
  maxLength: 1 << 15,
  seeds: () => [
    buildElfCore({
      notes: [
        { name: 'CORE', type: 1, desc: prstatus64(1, { rip: 0x1111n }) },
        { name: 'QEMU', type: 0, desc: qemuCpuState({ rip: 0xffffffff81001234n, cr3: 0x10a000n | (1n << 12n), cr4: 0x3406f0n }) },
        { name: 'VMCOREINFO', type: 0, desc: Buffer.from('OSRELEASE=6.1.0\nKERNELOFFSET=1c000000\n\0') },
      ],
      loads: [{ paddr: 0n, data: fill(0x1000, 1) }, { paddr: 0x100000000n, data: fill(0x800, 2) }],
    }),
    buildElfCore({ notes: [{ name: 'CORE', type: 1, desc: prstatus64(2, { rsp: 0x7ffdn }) }], loads: [{ paddr: 0x200000n, vaddr: 0xffffffff81000000n, data: fill(0x400, 3) }], xnum: true }),
    buildElfCore({ is64: false, machine: 3, notes: [{ name: 'QEMU', type: 0, desc: qemuCpuState({ rip: 0x7c00n }, 432) }], loads: [{ paddr: 0x1000n, data: fill(0x200, 4) }] }),
  ],
  dictionary: ['\x7fELF', 'CORE\0', 'QEMU\0', 'VMCOREINFO\0', 'Linux version '].map((s) => Buffer.from(s, 'latin1')),
  async run(input) {
    dir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-fuzz-dump-'));
    const file = path.join(dir, `dump-${counter++ % 4}.elf`);
    fs.writeFileSync(file, input);
    let dump: ElfDumpMemory;
    try {
      dump = await ElfDumpMemory.open(file);
    } catch (err) {
      if (err instanceof VmiError) return;
      throw err;
    }
    try {
      dump.vcpus();
      dump.vmcoreinfo();
      const segments = dump.segments().slice(0, 64);
      for (const s of segments) {
        await expectTyped(dump.read(s.physical, 16));
        await expectTyped(dump.read(s.physical + s.size - 8n, 16));
        await expectTyped(dump.readRanges([{ address: s.physical, length: 8 }, { address: s.physical + s.size / 2n, length: 4096 }]));
      }
      // what `vmictl ps --dump` does first: the dump's RAM as Vm.ram() gives it, searched for a kernel
      const ram = dump.ram();
      await expectTyped(findKaslr(dump, profile, { ram, expectBanner: profile.banner }));
      await expectTyped(scanForBanner(dump, ram, { maxBytes: 1 << 24 }));
    } finally {
      await dump.close();
    }
  },
  close() {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  },
};
