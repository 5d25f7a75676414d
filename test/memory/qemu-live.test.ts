/**
 * Against a real QEMU (bare machine stopped at the reset vector): procmem through gpa2hva and
 * /proc/<tid>/mem, compared with HMP `xp`; and a real dump-guest-memory file read back.
 * Skipped, saying why, when QEMU is not installed.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ElfDumpMemory } from '../../lib/memory/elf-dump';
import { openProcMem } from '../../lib/memory/procmem-backend';
import { HmpXpMemory, parseXpBytes, qemuMissing, startQemu, type LiveQemu } from './helpers/live-qemu';

const missing = qemuMissing();
if (missing) {
  t.comment(`skipping live QEMU tests: ${missing}`);
  t.pass(`skipped: ${missing}`);
} else {
  let vm: LiveQemu;
  t.before(async () => {
    vm = await startQemu();
  });
  t.teardown(() => {
    vm?.qmp.close();
    vm?.stop();
  });

  t.test('procmem reads what HMP xp shows, and writes it sees', async (t) => {
    const fallback = new HmpXpMemory(vm.qmp);
    const { memory, reason } = await openProcMem(vm.qmp, { fallback, writable: true });
    if (!memory) {
      t.fail(`procmem not available: ${reason}`);
      return;
    }
    t.teardown(() => memory.close());
    const names = memory.regions().map((r) => `${r.name}:${r.kind}`);
    t.ok(names.includes('pc.ram:ram'), `regions: ${names.join(', ')}`);
    t.ok(names.includes('pc.bios:rom'));

    // The BIOS reset vector: a far jmp (0xea) at 0xffff0, and the same bytes at its alias below 4 GiB.
    const reset = await memory.read(0xffff0n, 16);
    t.same(reset, parseXpBytes(await vm.qmp.hmp('xp /16xb 0xffff0')));
    t.equal(reset[0], 0xea);
    t.same(await memory.read(0xfffffff0n, 16), reset);

    const pattern = Buffer.from('vmictl procmem!\0');
    await memory.write(0x1000n, pattern);
    t.same(parseXpBytes(await vm.qmp.hmp('xp /16xb 0x1000')), pattern);
    t.same(await memory.read(0x1000n, 16), pattern);
    // pc.ram above 1 MiB is a separate flat range
    await memory.write(0x7fffff0n, pattern);
    t.same(parseXpBytes(await vm.qmp.hmp('xp /16xb 0x7fffff0')), pattern);
    await t.rejects(memory.read(0x8000000n, 1), { code: 'EMEMREAD' });
  });

  t.test('dump-guest-memory: segments, notes and contents', async (t) => {
    const path = join(vm.dir, 'dump.elf');
    await vm.qmp.execute('dump-guest-memory', { paging: false, protocol: `file:${path}` });
    for (let i = 0; i < 100; i++) {
      const s = (await vm.qmp.execute('query-dump')) as { status: string };
      if (s.status !== 'active') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    t.ok(existsSync(path));
    const dump = await ElfDumpMemory.open(path);
    t.teardown(() => dump.close());
    // Not in long mode at the reset vector: QEMU says EM_386 (the file is ELF64 because RAM reaches 4 GiB).
    t.equal(dump.machine, '386');
    t.same(dump.segments().map((s) => s.physical), [0x0n, 0xc0000n, 0xe0000n, 0x100000n, 0xfffc0000n]);
    t.same(dump.notes().map((n) => n.name), ['CORE', 'QEMU']);
    const [cpu] = dump.vcpus();
    t.match(cpu, { source: 'qemu-note', rip: 0xfff0n, cr0: 0x60000010n, cr3: 0n, rdx: 0x60fb1n });
    t.equal(cpu.segments?.cs.base, 0xffff0000n);
    t.equal(cpu.segments?.cs.selector, 0xf000);
    t.equal(cpu.kernel_gs_base, 0n, 'QEMU 7.2 records kernel_gs_base');
    t.same(await dump.read(0x1000n, 16), Buffer.from('vmictl procmem!\0'));
    t.same(await dump.read(0x7fffff0n, 16), Buffer.from('vmictl procmem!\0'));
    t.same(await dump.read(0xffff0n, 16), await dump.read(0xfffffff0n, 16));
  });
}
