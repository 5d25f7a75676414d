import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryReadError } from '../../lib/errors';
import { ElfDumpMemory } from '../../lib/memory/elf-dump';
import { DumpFormatError } from '../../lib/memory/elf-core';
import { AddressSpace } from '../../lib/memory/address-space';
import { buildElfCore, prstatus64, qemuCpuState } from './helpers/elf-writer';
import { SparseMemory } from '../helpers/sparse-memory';
import { MiB2, PageTableBuilder } from '../helpers/page-tables';
import { expectError } from './helpers/expect';

const dir = mkdtempSync(join(tmpdir(), 'vmictl-elf-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function fill(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

async function open(name: string, image: Buffer): Promise<ElfDumpMemory> {
  const path = join(dir, name);
  writeFileSync(path, image);
  const d = await ElfDumpMemory.open(path);
  t.teardown(() => d.close());
  return d;
}

t.test('PT_LOADs map physical addresses; vCPU state from the QEMU notes', async (t) => {
  const low = fill(0xa0000, 1);
  const high = fill(0x20000, 2);
  const dump = await open('two.elf', buildElfCore({
    notes: [
      { name: 'CORE', type: 1, desc: prstatus64(1, { rip: 0x1111n }) },
      { name: 'CORE', type: 1, desc: prstatus64(2, { rip: 0x2222n }) },
      { name: 'QEMU', type: 0, desc: qemuCpuState({ rip: 0xffffffff81001234n, rsp: 0xffffc90000013e80n, cr3: 0x10a000n | (1n << 12n), cr4: 0x3406f0n, gsBase: 0xffff88807dc00000n, kernelGsBase: 0x7f0000001000n, rax: 7n, r15: 15n }) },
      { name: 'QEMU', type: 0, desc: qemuCpuState({ rip: 0x401000n, cr3: 0x20000n }, 432) },
      { name: 'VMCOREINFO', type: 0, desc: Buffer.from('OSRELEASE=6.1.0\nKERNELOFFSET=1c000000\n\0') },
    ],
    loads: [{ paddr: 0n, data: low }, { paddr: 0x100000000n, data: high }],
  }));
  t.equal(dump.machine, 'amd64');
  t.same(dump.segments().map((s) => [s.physical, s.size]), [[0n, 0xa0000n], [0x100000000n, 0x20000n]]);
  t.same(await dump.read(0x1234n, 16), low.subarray(0x1234, 0x1244));
  t.same(await dump.read(0x100000ff0n, 32), high.subarray(0xff0, 0x1010));
  const [a, b] = await dump.readRanges([{ address: 0x9fff0n, length: 16 }, { address: 0x10001fff0n, length: 16 }]);
  t.same(a, low.subarray(0x9fff0));
  t.same(b, high.subarray(0x1fff0));

  // across the hole, beyond the end
  const hole = await expectError(dump.read(0x9fff0n, 32));
  t.type(hole, MemoryReadError);
  t.match(hole.message, /0xa0000 is not in the dump/);
  t.type(await expectError(dump.read(0x100020000n, 1)), MemoryReadError);

  const vcpus = dump.vcpus();
  t.equal(vcpus.length, 2);
  t.match(vcpus[0], {
    index: 0, source: 'qemu-note', rip: 0xffffffff81001234n, rsp: 0xffffc90000013e80n, cr3: 0x10a000n | (1n << 12n), cr4: 0x3406f0n,
    gs_base: 0xffff88807dc00000n, kernel_gs_base: 0x7f0000001000n, rax: 7n, r15: 15n, rflags: 0x246n,
  });
  t.equal(vcpus[0].segments?.cs.selector, 0x10);
  t.equal(vcpus[1].rip, 0x401000n);
  t.equal(vcpus[1].kernel_gs_base, undefined, 'older QEMU: size says kernel_gs_base is absent');
  t.equal(dump.vmcoreinfo(), 'OSRELEASE=6.1.0\nKERNELOFFSET=1c000000\n');
  t.equal(dump.notes().length, 5);
});

t.test('only NT_PRSTATUS notes: registers without CR3', async (t) => {
  const dump = await open('prstatus.elf', buildElfCore({
    notes: [{ name: 'CORE', type: 1, desc: prstatus64(1, { rip: 0xffffffff81000000n, rsp: 0x1000n, rax: 3n, gsBase: 0xffff888000000000n }) }],
    loads: [{ paddr: 0n, data: fill(4096, 3) }],
  }));
  const [v] = dump.vcpus();
  t.match(v, { source: 'prstatus', rip: 0xffffffff81000000n, rsp: 0x1000n, rax: 3n, gs_base: 0xffff888000000000n, rflags: 0x202n });
  t.equal(v.cr3, undefined);
  t.equal(dump.vmcoreinfo(), undefined);
});

t.test('ELF32 dumps (guest not in long mode) and PN_XNUM program-header counts', async (t) => {
  const d32 = await open('32.elf', buildElfCore({ is64: false, machine: 3, notes: [], loads: [{ paddr: 0xf0000n, data: fill(0x10000, 4) }] }));
  t.equal(d32.machine, '386');
  t.same(await d32.read(0xffff0n, 16), fill(0x10000, 4).subarray(0xfff0));
  const dx = await open('xnum.elf', buildElfCore({ xnum: true, notes: [], loads: [{ paddr: 0x1000n, data: fill(4096, 5) }, { paddr: 0x3000n, data: fill(4096, 6) }] }));
  t.equal(dx.segments().length, 2);
  t.same(await dx.read(0x3000n, 4), fill(4, 6));
});

t.test('page tables inside a dump translate through AddressSpace', async (t) => {
  const mem = new SparseMemory(8n << 20n);
  const b = new PageTableBuilder(mem, 4, 0x100000n);
  b.map(0xffffffff81000000n, 0x400000n, MiB2, { writable: false });
  mem.writeSync(0x400100n, Buffer.from('Linux version 6.1.0\0'));
  const image = mem.readSync(0n, 8 << 20);
  const dump = await open('pt.elf', buildElfCore({
    notes: [{ name: 'QEMU', type: 0, desc: qemuCpuState({ cr3: b.root | 0x1000n | 5n }) }],
    loads: [{ paddr: 0n, data: image.subarray(0, 0xa0000) }, { paddr: 0x100000n, data: image.subarray(0x100000) }],
  }));
  const as = AddressSpace.fromCr3(dump, dump.vcpus()[0].cr3!);
  t.equal(await as.readCString(0xffffffff81000100n, 64), 'Linux version 6.1.0');
});

t.test('bad files are refused with DumpFormatError', async (t) => {
  const notElf = join(dir, 'not.elf');
  writeFileSync(notElf, 'KDUMP   ' + '\0'.repeat(100));
  t.type(await expectError(ElfDumpMemory.open(notElf)), DumpFormatError);
  const exec = buildElfCore({ notes: [], loads: [] });
  exec.writeUInt16LE(2, 16); // ET_EXEC
  const execPath = join(dir, 'exec.elf');
  writeFileSync(execPath, exec);
  const e = await expectError(ElfDumpMemory.open(execPath));
  t.match(e.message, /not a core dump/);
  const trunc = buildElfCore({ notes: [{ name: 'QEMU', type: 0, desc: qemuCpuState({}) }], loads: [] });
  const truncPath = join(dir, 'trunc.elf');
  writeFileSync(truncPath, trunc.subarray(0, trunc.length - 100));
  t.match((await expectError(ElfDumpMemory.open(truncPath))).message, /file ends inside the note segment/);
  // a load whose bytes are cut off: the header is fine, the read fails
  const cut = buildElfCore({ notes: [], loads: [{ paddr: 0n, data: fill(8192, 7) }] });
  const cutDump = await open('cut.elf', cut.subarray(0, cut.length - 4096));
  t.match((await expectError(cutDump.read(0x1000n, 16))).message, /truncated/);
});
