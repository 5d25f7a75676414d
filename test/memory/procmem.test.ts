import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryReadError, VmiError } from '../../lib/errors';
import { openProcMem } from '../../lib/memory/procmem-backend';
import { parseGpa2hva, parseMtreeFlat } from '../../lib/memory/qemu-ram-map';
import { FakeQmp, MTREE_PC_128M, fakeProc, guestBytes, pcRegions } from './helpers/fake-qemu';
import { SparseMemory } from '../helpers/sparse-memory';
import { expectError } from './helpers/expect';

const dir = mkdtempSync(join(tmpdir(), 'vmictl-procmem-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
/** A fresh fake /proc holding guestBytes() for the regions. */
function proc(regions = pcRegions(), tid = 4242): string {
  const root = join(dir, `proc${n++}`);
  fakeProc(root, tid, regions, guestBytes);
  return root;
}

t.test('gpa2hva replies', async (t) => {
  t.same(parseGpa2hva('Host virtual address for 0x1000 (pc.ram) is 0x7f4267e01000\r\n'), { guest: 0x1000n, region: 'pc.ram', host: 0x7f4267e01000n });
  t.same(parseGpa2hva('Host virtual address for 0x100000000 (pc.ram) is 0x7f42a7e00000'), { guest: 0x100000000n, region: 'pc.ram', host: 0x7f42a7e00000n });
  t.equal(parseGpa2hva('No memory is mapped at address 0x8000000\r\n'), undefined);
  t.equal(parseGpa2hva('Memory at address 0xfee00000 is not RAM\r\n'), undefined);
  t.equal(parseGpa2hva("unknown command: 'gpa2hva'\r\n"), undefined);
});

t.test('info mtree -f: host-backed ranges of the system address space', async (t) => {
  const r = parseMtreeFlat(MTREE_PC_128M);
  t.same(r.map((x) => [x.start, x.end, x.kind, x.name]), [
    [0x0n, 0xc0000n, 'ram', 'pc.ram'],
    [0xc0000n, 0xe0000n, 'rom', 'pc.rom'],
    [0xe0000n, 0x100000n, 'rom', 'pc.bios'],
    [0x100000n, 0x8000000n, 'ram', 'pc.ram'],
    [0xfffc0000n, 0x100000000n, 'rom', 'pc.bios'],
  ]);
  // KVM suffix, RAM above 4 GiB, device RAM (ramd) and pflash (romd)
  const kvm = `FlatView #0
 AS "memory", root: system
 Root memory region: system
  0000000000000000-000000000009ffff (prio 0, ram): pc.ram KVM
  00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem
  0000000000100000-00000000bfffffff (prio 0, ram): pc.ram @0000000000100000 KVM
  00000000fd000000-00000000fdffffff (prio 1, ramd): 0000:00:02.0 BAR 2 mmaps[0] KVM
  00000000ffc00000-00000000ffffffff (prio 0, romd): system.flash0 KVM
  0000000100000000-000000023fffffff (prio 0, ram): pc.ram @00000000c0000000 KVM
`;
  t.same(parseMtreeFlat(kvm).map((x) => [x.start, x.end, x.kind]), [
    [0x0n, 0xa0000n, 'ram'],
    [0x100000n, 0xc0000000n, 'ram'],
    [0xffc00000n, 0x100000000n, 'romd'],
    [0x100000000n, 0x240000000n, 'ram'],
  ]);
  t.same(parseMtreeFlat('garbage'), []);
});

t.test('reads across regions through the host mapping', async (t) => {
  const qmp = new FakeQmp();
  const { memory, reason } = await openProcMem(qmp, { procRoot: proc() });
  t.equal(reason, undefined);
  t.ok(memory);
  if (!memory) return;
  t.teardown(() => memory.close());
  t.match(memory.name, /^procmem:.*\/4242\/mem$/);
  t.equal(memory.regions().length, 5);
  t.same(await memory.read(0x1000n, 64), guestBytes(0x1000n, 64));
  // pc.ram → pc.rom → ... are at unrelated host addresses
  t.same(await memory.read(0xbfff0n, 0x20), guestBytes(0xbfff0n, 0x20));
  t.same(await memory.read(0xffff0n, 16), guestBytes(0xffff0n, 16));
  t.same(await memory.read(0xfffffff0n, 16), guestBytes(0xfffffff0n, 16));
  const [a, b] = await memory.readRanges([{ address: 0x100000n, length: 8 }, { address: 0xe0000n, length: 8 }]);
  t.same(a, guestBytes(0x100000n, 8));
  t.same(b, guestBytes(0xe0000n, 8));
  const hole = await expectError(memory.read(0x7fffff8n, 16));
  t.type(hole, MemoryReadError);
  t.match(hole.message, /0x8000000 is not RAM or ROM/);
  t.type(await expectError(memory.read(0xfec00000n, 4)), MemoryReadError);
  // One gpa2hva at each end of each region, no more.
  t.equal(qmp.hmpLog.filter((c) => c.startsWith('gpa2hva')).length, 10);
});

t.test('verified against a fallback backend', async (t) => {
  const fallback = new SparseMemory(0x8000000n);
  fallback.writeSync(0n, guestBytes(0n, 4096));
  const ok = await openProcMem(new FakeQmp(), { procRoot: proc(), fallback });
  t.ok(ok.memory);
  await ok.memory?.close();
  t.equal(fallback.callCount, 1);

  const liar = new SparseMemory(0x8000000n);
  const bad = await openProcMem(new FakeQmp(), { procRoot: proc(), fallback: liar });
  t.equal(bad.memory, null);
  t.match(bad.reason, /procmem:.* and sparse disagree on page 0x0/);
  t.equal(liar.callCount, 3, 'tried three times, in case the VM was running');

  const other = new SparseMemory(0x8000000n);
  other.writeSync(0x100000n, guestBytes(0x100000n, 4096));
  const chosen = await openProcMem(new FakeQmp(), { procRoot: proc(), fallback: other, verifyAddress: 0x100000n });
  t.ok(chosen.memory);
  await chosen.memory?.close();
});

t.test('not available: a one-line reason instead of an exception', async (t) => {
  const root = proc();
  const denied = await openProcMem(new FakeQmp(), {
    procRoot: root,
    open: async (path) => {
      throw Object.assign(new Error(`EACCES: permission denied, open '${path}'`), { code: 'EACCES' });
    },
  });
  t.equal(denied.memory, null);
  t.match(denied.reason, /cannot open .*\/4242\/mem: EACCES \(needs QEMU's user and ptrace permission, or root\)/);
  t.notMatch(denied.reason, /\n/);

  const noGpa = new FakeQmp();
  noGpa.gpa2hvaMissing = true;
  const r2 = await openProcMem(noGpa, { procRoot: root });
  t.equal(r2.memory, null);
  t.match(r2.reason, /^gpa2hva unavailable: unknown command: 'gpa2hva'$/);

  const elsewhere = new FakeQmp();
  elsewhere.tids = [999999];
  const r3 = await openProcMem(elsewhere, { procRoot: root });
  t.match(r3.reason, /no .*\/999999: QEMU runs on another host or in another PID namespace/);

  const noTids = new FakeQmp();
  noTids.tids = [null];
  t.match((await openProcMem(noTids, { procRoot: root })).reason, /no vCPU thread ids/);

  const noMtree = new FakeQmp();
  noMtree.mtree = "unknown command: 'info'";
  t.match((await openProcMem(noMtree, { procRoot: root })).reason, /listed no RAM/);
});

t.test('a thread whose maps do not hold the RAM is not QEMU', async (t) => {
  const root = join(dir, 'wrongproc');
  // The tid's mem file exists but its maps cover only some other range.
  const regions = pcRegions();
  fakeProc(root, 4242, regions.map((r) => ({ ...r, host: r.host + 0x40000000n })), guestBytes);
  const r = await openProcMem(new FakeQmp(regions), { procRoot: root });
  t.equal(r.memory, null);
  t.match(r.reason, /pc.ram at host 0x10000000 is not mapped in thread 4242/);
});

t.test('writes: off by default, RAM only when on', async (t) => {
  const ro = await openProcMem(new FakeQmp(), { procRoot: proc() });
  const e = await expectError(ro.memory!.write(0x1000n, Buffer.from('x')));
  t.type(e, VmiError);
  t.equal((e as VmiError).code, 'ENOTSUP');
  await ro.memory!.close();

  const rw = await openProcMem(new FakeQmp(), { procRoot: proc(), writable: true });
  const m = rw.memory!;
  t.teardown(() => m.close());
  // the last bytes of low RAM, then into ROM
  const rom = await expectError(m.write(0xbfffen, Buffer.from('abcd')));
  t.match(rom.message, /pc.rom is rom, not writable/);
  await m.write(0x2000n, Buffer.from('hello'));
  t.equal((await m.read(0x2000n, 5)).toString(), 'hello');
});
