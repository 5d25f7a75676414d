import t from 'tap';
import { PageFaultError, ValidationError } from '../../lib/errors';
import {
  X86PageTable, X86_64_4LEVEL, X86_64_5LEVEL, decodeCr3, isCanonical, canonicalize, pagingFormatForCr4, type MappedRange,
} from '../../lib/memory/x86-64';
import { SparseMemory } from '../helpers/sparse-memory';
import { GiB1, KiB4, MiB2, P, PageTableBuilder, PS, RW } from '../helpers/page-tables';
import { expectError, expectFault } from './helpers/expect';

const RAM = 64n << 20n;
const TABLES = 0x100000n;

function setup4() {
  const mem = new SparseMemory(RAM);
  const b = new PageTableBuilder(mem, 4, TABLES);
  return { mem, b, pt: new X86PageTable(mem, b.root) };
}

t.test('4 KiB, 2 MiB and 1 GiB pages with their rights', async (t) => {
  const { b, pt } = setup4();
  b.map(0xffff888000001000n, 0x200000n, KiB4, { writable: true, nx: true });
  b.map(0xffffffff81000000n, 0x1000000n, MiB2, { writable: false });
  b.map(0xffffc90000000000n, 0x40000000n, GiB1, { writable: true, nx: true });
  b.map(0x400000n, 0x300000n, KiB4, { user: true, writable: false });

  const small = await pt.translate(0xffff888000001123n);
  t.same(small, { physical: 0x200123n, pageSize: 4096, writable: true, user: false, nx: true, level: 1, entry: 0x200000n | P | RW | (1n << 63n) });

  const mid = await pt.translate(0xffffffff81012345n);
  t.equal(mid.physical, 0x1012345n);
  t.equal(mid.pageSize, 2 * 1024 * 1024);
  t.equal(mid.level, 2);
  t.equal(mid.writable, false);
  t.equal(mid.nx, false);

  const big = await pt.translate(0xffffc9000abcdef0n);
  t.equal(big.physical, 0x4abcdef0n);
  t.equal(big.pageSize, 1024 * 1024 * 1024);
  t.equal(big.level, 3);

  const user = await pt.translate(0x400ff8n);
  t.equal(user.physical, 0x300ff8n);
  t.equal(user.user, true);
  t.equal(user.writable, false);
});

t.test('a non-present entry at each level names the address, the level and the entry', async (t) => {
  const { b, pt } = setup4();
  const base = 0xffff888000000000n;
  b.map(base, 0x200000n);
  const cases: [bigint, number][] = [
    [0x0000700000000000n, 4],
    [base + GiB1, 3],
    [base + MiB2, 2],
    [base + KiB4 * 3n + 5n, 1],
  ];
  for (const [va, level] of cases) {
    const err = await expectFault(pt.translate(va));
    t.equal(err.address, va, `address at level ${level}`);
    t.equal(err.level, level);
    t.equal(err.entry, 0n);
    t.match(err.message, new RegExp(`0x${va.toString(16)} not present at level ${level}`));
    t.equal(err.code, 'EFAULT');
  }
  // A non-present entry that still has other bits keeps them in the error (guest data for debugging).
  b.setEntry(base, 1, 0x200000n | RW);
  const err = await expectFault(pt.translate(base));
  t.equal(err.entry, 0x200000n | RW);
  t.equal(err.level, 1);
});

t.test('effective rights: writable and user need every level, NX any level', async (t) => {
  const { b, pt } = setup4();
  const va = 0x7f0000001000n;
  b.map(va, 0x200000n, KiB4, { writable: true, user: true });
  t.equal((await pt.translate(va)).writable, true);
  t.equal((await pt.translate(va)).user, true);
  // Clear RW in the PD entry and set NX in the PDPT entry.
  const pde = b.getEntry(va, 2);
  b.setEntry(va, 2, pde & ~RW);
  const pdpte = b.getEntry(va, 3);
  b.setEntry(va, 3, pdpte | (1n << 63n));
  const t2 = await pt.translate(va);
  t.equal(t2.writable, false);
  t.equal(t2.nx, true);
  t.equal(t2.user, true);
  b.setEntry(va, 4, b.getEntry(va, 4) & ~(1n << 2n));
  t.equal((await pt.translate(va)).user, false);
});

t.test('5-level paging', async (t) => {
  const mem = new SparseMemory(RAM);
  const b = new PageTableBuilder(mem, 5, TABLES);
  const pt = new X86PageTable(mem, b.root, { cr4: 1n << 12n });
  t.equal(pt.format, X86_64_5LEVEL);
  const va = 0xff11000000400000n;
  b.map(va, 0x600000n, MiB2);
  b.map(0x00ff000000001000n, 0x700000n, KiB4, { user: true });
  t.equal((await pt.translate(va + 0x10n)).physical, 0x600010n);
  t.equal((await pt.translate(0x00ff000000001008n)).physical, 0x700008n);
  // 0x00ff... is not canonical with 48 bits, only with 57
  const four = new X86PageTable(mem, b.root);
  const nc = await expectFault(four.translate(0x00ff000000001008n));
  t.match(nc.message, /not canonical/);

  const e5 = await expectFault(pt.translate(0xfe00000000000000n));
  t.equal(e5.level, 5);
  const e4 = await expectFault(pt.translate(va + (1n << 39n)));
  t.equal(e4.level, 4);
  const e3 = await expectFault(pt.translate(va + GiB1));
  t.equal(e3.level, 3);
  const e2 = await expectFault(pt.translate(va + MiB2));
  t.equal(e2.level, 2);
  b.map(0xff11000080000000n, 0x800000n, KiB4);
  const e1 = await expectFault(pt.translate(0xff11000080001000n));
  t.equal(e1.level, 1);
  t.equal(e1.address, 0xff11000080001000n);
  const bad = await expectFault(pt.translate(0x0100000000000000n));
  t.match(bad.message, /not canonical for 57-bit/);
  t.equal(bad.level, 5);
});

t.test('non-canonical addresses fault before any read', async (t) => {
  const { mem, pt } = setup4();
  const before = mem.callCount;
  for (const va of [0x0000800000000000n, 0xffff7fffffffffffn, 0x8000000000000000n, 1n << 64n, -1n]) {
    const err = await expectFault(pt.translate(va));
    t.match(err.message, /not canonical for 48-bit/);
    t.equal(err.level, 4);
  }
  t.equal(mem.callCount, before);
  t.ok(isCanonical(0xffff800000000000n, 48));
  t.ok(isCanonical(0x00007fffffffffffn, 48));
  t.notOk(isCanonical(0x0000800000000000n, 48));
  t.equal(canonicalize(0x0000800000000000n, 48), 0xffff800000000000n);
  t.equal(canonicalize(0x1000n, 48), 0x1000n);
});

t.test('CR3: PCID and the KPTI user-half bit are masked', async (t) => {
  const mem = new SparseMemory(RAM);
  // 8 KiB aligned kernel PGD, the user PGD right after it (as Linux allocates them with PTI)
  const b = new PageTableBuilder(mem, 4, 0x200000n);
  const userPgd = b.alloc();
  t.equal(userPgd, b.root + 0x1000n);
  b.map(0xffffffff81000000n, 0x1000000n, MiB2);
  const cr3 = b.root | (1n << 12n) | 0x801n | (1n << 63n);
  const d = decodeCr3(cr3);
  t.same(d, { root: b.root, pcid: 0x801, kptiUser: true });
  const pt = new X86PageTable(mem, cr3);
  t.equal(pt.root, b.root);
  t.equal((await pt.translate(0xffffffff81000042n)).physical, 0x1000042n);
  // Keeping bit 12 walks the (empty) user copy
  const user = new X86PageTable(mem, cr3, { keepKptiBit: true });
  t.equal(user.root, userPgd);
  const err = await expectFault(user.translate(0xffffffff81000042n));
  t.equal(err.level, 4);
  t.same(decodeCr3(0x1234567000n, { physicalBits: 36 }), { root: 0x234566000n, pcid: 0, kptiUser: true });
});

t.test('reserved bits fault like on the CPU', async (t) => {
  const { b, mem } = setup4();
  const va = 0xffff888000000000n;
  b.map(va, 0x200000n);
  const pt40 = new X86PageTable(mem, b.root, { physicalBits: 40 });
  t.equal((await pt40.translate(va)).physical, 0x200000n);
  b.setEntry(va, 1, (1n << 45n) | 0x200000n | P);
  const r = await expectFault(pt40.translate(va));
  t.match(r.message, /reserved address bits/);
  t.equal(r.level, 1);
  // PS in a PML4 entry is reserved
  b.setEntry(va, 4, b.getEntry(va, 4) | PS);
  const ps = await expectFault(new X86PageTable(mem, b.root).translate(va));
  t.match(ps.message, /reserved bit 7/);
  t.equal(ps.level, 4);
  t.throws(() => new X86PageTable(mem, b.root, { physicalBits: 60 }), RangeError);
});

t.test('a table outside readable memory is a fault of the entry naming it', async (t) => {
  const { b, mem } = setup4();
  const va = 0xffff888000000000n;
  b.map(va, 0x200000n);
  b.setEntry(va, 2, 0x7000000000n | P | RW); // PT far beyond the 64 MiB of RAM
  const err = await expectFault(new X86PageTable(mem, b.root).translate(va));
  t.equal(err.level, 1);
  t.equal(err.entry, 0x7000000000n | P | RW);
  t.match(err.message, /table at 0x7000000000 is unreadable/);
});

t.test('paging format from CR4', async (t) => {
  t.equal(pagingFormatForCr4(0x3406e0n), X86_64_4LEVEL);
  t.equal(pagingFormatForCr4(0x3416e0n), X86_64_5LEVEL);
});

async function collect(it: AsyncIterable<MappedRange>): Promise<MappedRange[]> {
  const out: MappedRange[] = [];
  for await (const m of it) out.push(m);
  return out;
}

t.test('mappings() lists ranges in virtual order, merged and bounded', async (t) => {
  const { b, pt, mem } = setup4();
  b.map(0x400000n, 0x300000n, KiB4, { user: true });
  b.map(0x401000n, 0x301000n, KiB4, { user: true });
  b.map(0x402000n, 0x900000n, KiB4, { user: true }); // physically elsewhere: its own range
  b.map(0xffffffff81000000n, 0x1000000n, MiB2, { writable: false });
  b.map(0xffffffff81200000n, 0x1200000n, MiB2, { writable: false });
  b.map(0xffff888000000000n, 0n, GiB1, { nx: true });
  const all = await collect(pt.mappings());
  t.same(all.map((m) => [m.virtual, m.physical, m.size, m.pageSize]), [
    [0x400000n, 0x300000n, 0x2000n, 4096],
    [0x402000n, 0x900000n, 0x1000n, 4096],
    [0xffff888000000000n, 0n, GiB1, 1 << 30],
    [0xffffffff81000000n, 0x1000000n, 2n * MiB2, 1 << 21],
  ]);
  t.equal(all[0].user, true);
  t.equal(all[2].nx, true);
  t.equal(all[3].writable, false);

  const kernel = await collect(pt.mappings({ start: 0xffff800000000000n }));
  t.equal(kernel.length, 2);
  const one = await collect(pt.mappings({ maxMappings: 1 }));
  t.equal(one.length, 1);
  const unmerged = await collect(pt.mappings({ merge: false, end: 0x800000n }));
  t.equal(unmerged.length, 3);

  // A table pointing at itself forever is cut off by maxTables.
  const loop = new SparseMemory(RAM);
  const lb = new PageTableBuilder(loop, 4, TABLES);
  for (let i = 0n; i < 512n; i++) loop.writeU64(lb.root + i * 8n, lb.root | P | RW);
  const err = await expectError(collect(new X86PageTable(loop, lb.root).mappings({ maxTables: 100 })));
  t.type(err, ValidationError);
  t.match(err.message, /more than 100 tables/);
  void mem;
});

t.test('mappings() skips unreadable tables and reports them', async (t) => {
  const { b, pt } = setup4();
  b.map(0x400000n, 0x300000n);
  b.setEntry(0x40000000n, 3, 0x7000000000n | P);
  const skipped: string[] = [];
  const all = await collect(pt.mappings({ onSkip: (va, level, why) => skipped.push(`${va.toString(16)}@${level}: ${why}`) }));
  t.equal(all.length, 1);
  t.same(skipped, ['40000000@2: table at 0x7000000000 unreadable']);
});

t.test('PageFaultError is a VmiError with the layer name', async (t) => {
  const { pt } = setup4();
  const err = await expectFault(pt.translate(0x1000n));
  t.type(err, PageFaultError);
  t.equal(err.layer, pt.name);
  t.match(pt.name, /x86-64 4-level @0x100000/);
});
