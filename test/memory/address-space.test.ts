import t from 'tap';
import { MemoryReadError, PageFaultError, VmiError } from '../../lib/errors';
import { AddressSpace } from '../../lib/memory/address-space';
import { PageCache } from '../../lib/memory/page-cache';
import { SparseMemory } from '../helpers/sparse-memory';
import { KiB4, MiB2, PageTableBuilder } from '../helpers/page-tables';
import { expectError, expectFault } from './helpers/expect';

const KERNEL = 0xffffffff81000000n;
const DIRECT = 0xffff888000000000n;

/** Kernel text as a read-only 2 MiB page at 16 MiB; two 4 KiB data pages that are physically apart. */
function setup() {
  const mem = new SparseMemory(64n << 20n);
  const b = new PageTableBuilder(mem, 4, 0x100000n);
  b.map(KERNEL, 0x1000000n, MiB2, { writable: false });
  b.map(DIRECT, 0x300000n, KiB4);
  b.map(DIRECT + 0x1000n, 0x500000n, KiB4);
  b.map(DIRECT + 0x2000n, 0x501000n, KiB4, { writable: false });
  const cache = new PageCache(mem);
  const as = AddressSpace.fromCr3(cache, b.root | 0x1000n);
  return { mem, b, cache, as };
}

t.test('reads split across pages that are physically apart', async (t) => {
  const { mem, as } = setup();
  mem.writeSync(0x300ffcn, Buffer.from('abcd'));
  mem.writeSync(0x500000n, Buffer.from('efgh'));
  t.equal((await as.read(DIRECT + 0xffcn, 8)).toString(), 'abcdefgh');
  t.equal((await as.read(DIRECT, 0)).length, 0);
});

t.test('a read into an unmapped page fails for the first unmapped address', async (t) => {
  const { as } = setup();
  const err = await expectFault(as.read(DIRECT + 0x2ff0n, 0x20));
  t.equal(err.address, DIRECT + 0x3000n);
  t.equal(err.level, 1);
  const first = await expectFault(as.read(DIRECT + 0x3010n, 4));
  t.equal(first.address, DIRECT + 0x3010n);
  // Same page asked at two offsets concurrently: each error names its own address.
  const [a, b] = await Promise.all([expectFault(as.read(DIRECT + 0x5008n, 1)), expectFault(as.read(DIRECT + 0x5010n, 1))]);
  t.equal(a.address, DIRECT + 0x5008n);
  t.equal(b.address, DIRECT + 0x5010n);
});

t.test('typed helpers', async (t) => {
  const { mem, as, cache } = setup();
  const b = Buffer.alloc(32);
  b.writeUInt8(0xab, 0);
  b.writeUInt16LE(0xbeef, 2);
  b.writeUInt32LE(0xdeadbeef, 4);
  b.writeBigUInt64LE(0xffffffff81234567n, 8);
  b.writeInt32LE(-5, 16);
  b.writeBigInt64LE(-2n, 24);
  mem.writeSync(0x300100n, b);
  t.equal(await as.readU8(DIRECT + 0x100n), 0xab);
  t.equal(await as.readU16(DIRECT + 0x102n), 0xbeef);
  t.equal(await as.readU32(DIRECT + 0x104n), 0xdeadbeef);
  t.equal(await as.readU64(DIRECT + 0x108n), 0xffffffff81234567n);
  t.equal(await as.readPointer(DIRECT + 0x108n), 0xffffffff81234567n);
  t.equal(await as.readI32(DIRECT + 0x110n), -5);
  t.equal(await as.readI64(DIRECT + 0x118n), -2n);
  // a u64 straddling two physically distant pages (changed behind the cache: as if the VM ran)
  mem.writeSync(0x300ffcn, Buffer.from([1, 2, 3, 4]));
  mem.writeSync(0x500000n, Buffer.from([5, 6, 7, 8]));
  cache.invalidate();
  t.equal(await as.readU64(DIRECT + 0xffcn), 0x0807060504030201n);
});

t.test('readCString is bounded and stops at NUL', async (t) => {
  const { mem, as, cache } = setup();
  mem.writeSync(0x300200n, Buffer.from('systemd\0junk'));
  t.equal(await as.readCString(DIRECT + 0x200n, 64), 'systemd');
  t.equal(await as.readCString(DIRECT + 0x200n, 3), 'sys');
  t.equal(await as.readCString(DIRECT + 0x200n, 0), '');
  // no NUL at all: cut at maxLength even across pages
  mem.writeSync(0x300f00n, Buffer.alloc(0x100, 0x41));
  mem.writeSync(0x500000n, Buffer.alloc(0x1000, 0x42));
  cache.invalidate();
  const s = await as.readCString(DIRECT + 0xf00n, 0x180);
  t.equal(s.length, 0x180);
  t.equal(s, 'A'.repeat(0x100) + 'B'.repeat(0x80));
  // A short string right before an unmapped page reads; one running into it fails.
  mem.writeSync(0x501ffcn, Buffer.from('ab\0\0'));
  cache.invalidate();
  t.equal(await as.readCString(DIRECT + 0x2ffcn, 4096), 'ab');
  mem.writeSync(0x501ffcn, Buffer.from('abcd'));
  cache.invalidate();
  const err = await expectFault(as.readCString(DIRECT + 0x2ffcn, 4096));
  t.equal(err.address, DIRECT + 0x3000n);
  // invalid UTF-8 does not throw
  mem.writeSync(0x300300n, Buffer.from([0xff, 0x41, 0]));
  cache.invalidate();
  t.equal(await as.readCString(DIRECT + 0x300n, 10), '\ufffdA');
  const bad = await expectError(as.readCString(DIRECT, -1));
  t.type(bad, MemoryReadError);
  t.equal((await as.readCBytes(DIRECT + 0x200n, 64)).toString(), 'systemd');
});

t.test('readMany batches every range into one physical call', async (t) => {
  const { mem, cache, as } = setup();
  mem.writeSync(0x1000000n + 0x1234n, Buffer.from('kernel'));
  mem.writeSync(0x300010n, Buffer.from('direct'));
  // warm the page tables
  await as.translate(KERNEL);
  await as.translate(DIRECT);
  await as.translate(DIRECT + 0x1000n);
  const before = mem.callCount;
  const [k, d, cross] = await as.readMany([
    { address: KERNEL + 0x1234n, length: 6 },
    { address: DIRECT + 0x10n, length: 6 },
    { address: DIRECT + 0xff0n, length: 0x20 },
  ]);
  t.equal(k.toString(), 'kernel');
  t.equal(d.toString(), 'direct');
  t.equal(cross.length, 0x20);
  t.equal(mem.callCount, before + 1, 'one backend call for all data pages');
  t.equal(cache.stats().backendCalls, mem.callCount);
});

t.test('write only to present, writable pages', async (t) => {
  const { mem, as } = setup();
  await as.write(DIRECT + 0xffen, Buffer.from('wxyz'));
  t.equal(mem.readSync(0x300ffen, 2).toString(), 'wx');
  t.equal(mem.readSync(0x500000n, 2).toString(), 'yz');
  t.equal((await as.read(DIRECT + 0xffen, 4)).toString(), 'wxyz', 'the cache saw the write');

  const ro = await expectFault(as.write(KERNEL + 0x10n, Buffer.from('no')));
  t.equal(ro.address, KERNEL + 0x10n);
  t.equal(ro.level, 2);
  t.match(ro.message, /is not writable/);

  // spanning a writable and a read-only page: nothing is written
  const writes = mem.writes.length;
  const span = await expectFault(as.write(DIRECT + 0x1ffen, Buffer.from('1234')));
  t.equal(span.address, DIRECT + 0x2000n);
  t.equal(mem.writes.length, writes);

  const unmapped = await expectFault(as.write(DIRECT + 0x4000n, Buffer.from('x')));
  t.match(unmapped.message, /not present at level 1/);

  const noWrite = AddressSpace.fromCr3({ name: 'ro', read: mem.read.bind(mem), readRanges: mem.readRanges.bind(mem) }, 0x100000n);
  const e = await expectError(noWrite.write(DIRECT, Buffer.from('x')));
  t.type(e, VmiError);
  t.match(e.message, /cannot write/);
});

t.test('translations are cached until the physical layer is invalidated', async (t) => {
  const { b, cache, as, mem } = setup();
  await as.read(DIRECT, 8);
  const calls = mem.callCount;
  await as.read(DIRECT + 8n, 8);
  t.equal(mem.callCount, calls);
  // Remap the page behind the address space's back; cached translation still wins...
  b.map(DIRECT, 0x700000n, KiB4);
  mem.writeSync(0x700000n, Buffer.from('moved'));
  t.not((await as.read(DIRECT, 5)).toString(), 'moved');
  // ...until the VM "runs" and the cache is invalidated.
  cache.invalidate();
  t.equal((await as.read(DIRECT, 5)).toString(), 'moved');
  t.equal((await as.translate(DIRECT + 3n)).physical, 0x700003n);
});

t.test('without a generation nothing is cached', async (t) => {
  const mem = new SparseMemory(64n << 20n);
  const b = new PageTableBuilder(mem, 4, 0x100000n);
  b.map(DIRECT, 0x300000n);
  const as = AddressSpace.fromCr3(mem, b.root);
  await as.read(DIRECT, 1);
  const calls = mem.callCount;
  b.map(DIRECT, 0x400000n);
  t.equal((await as.translate(DIRECT)).physical, 0x400000n);
  t.ok(mem.callCount > calls);
});

t.test('bad ranges are refused before any read', async (t) => {
  const { as } = setup();
  t.type(await expectError(as.read(DIRECT, -1)), MemoryReadError);
  t.type(await expectError(as.read(DIRECT, 1.5)), MemoryReadError);
  t.type(await expectError(as.read(0xfffffffffffffff0n, 0x20)), MemoryReadError);
  t.type(await expectError(as.read(0x0000800000000000n, 1)), PageFaultError);
});
