import t from 'tap';
import { findKaslr, KaslrNotFoundError, scanForBanner, type LinkTimeSymbols } from '../../lib/kernel/kaslr';
import { SparseMemory } from '../helpers/sparse-memory';
import { MiB2, PageTableBuilder } from '../helpers/page-tables';

// Link-time layout of a small fictional kernel (offsets as a real one would have them).
const LINK: Record<string, bigint> = {
  _text: 0xffffffff81000000n,
  linux_banner: 0xffffffff81f1ffe0n,
  phys_base: 0xffffffff82a1a010n,
  init_top_pgt: 0xffffffff82a10000n,
  __pgtable_l5_enabled: 0xffffffff82a1a100n,
};
const syms: LinkTimeSymbols = {
  symbol: (n) => { const v = LINK[n]; if (v === undefined) throw new Error(`no ${n}`); return v; },
  hasSymbol: (n) => n in LINK,
};
const BANNER = 'Linux version 6.1.0-test (synthetic) #1 SMP';
const IMAGE = 0x2000000n; // 32 MiB of image, enough for the symbols above

/** Places a kernel image at `base` with virtual slide `vslide`, with its own page tables. */
function guest(base: bigint, vslide: bigint, levels: 4 | 5 = 4, decoyAt?: bigint) {
  const mem = new SparseMemory(1n << 30n);
  const phys = (n: string) => base + (LINK[n] - LINK._text);
  mem.writeSync(phys('linux_banner'), Buffer.from(BANNER + '\n\0'));
  const physBase = base - vslide - (LINK._text - 0xffffffff80000000n);
  mem.writeU64(phys('phys_base'), physBase);
  mem.writeSync(phys('__pgtable_l5_enabled'), Buffer.from([levels === 5 ? 1 : 0, 0, 0, 0]));
  // page tables: root is init_top_pgt itself; further tables come from a spare area inside the image
  const pt = new PageTableBuilder(mem, levels, phys('init_top_pgt'));
  for (let off = 0n; off < IMAGE; off += 0x200000n) pt.map(LINK._text + vslide + off, base + off, MiB2);
  if (decoyAt !== undefined) mem.writeSync(decoyAt + (LINK.linux_banner - LINK._text), Buffer.from('Linux version decoy\0'));
  return mem;
}

t.test('finds physical and virtual slides from memory alone', async (t) => {
  const base = 0x7400000n, vslide = 0x2c000000n;
  const mem = guest(base, vslide);
  const r = await findKaslr(mem, syms, { ram: [{ address: 0n, length: 512 * 1024 * 1024 }] });
  t.equal(r.physicalBase, base);
  t.equal(r.virtualSlide, vslide);
  t.equal(r.physicalSlide, base - 0x1000000n);
  t.equal(r.pageTableRoot, base + (LINK.init_top_pgt - LINK._text));
  t.equal(r.pagingLevels, 4);
  t.equal(r.banner, BANNER);
});

t.test('5-level paging and no slide at all', async (t) => {
  const mem = guest(0x1000000n, 0n, 5);
  const r = await findKaslr(mem, syms, { ram: [{ address: 0n, length: 256 * 1024 * 1024 }] });
  t.equal(r.virtualSlide, 0n);
  t.equal(r.physicalSlide, 0n);
  t.equal(r.pagingLevels, 5);
});

t.test('a decoy banner without a consistent image is passed over', async (t) => {
  const mem = guest(0x9000000n, 0x4000000n, 4, 0x3000000n);
  const r = await findKaslr(mem, syms, { ram: [{ address: 0n, length: 512 * 1024 * 1024 }] });
  t.equal(r.physicalBase, 0x9000000n);
});

t.test('the profile banner must match', async (t) => {
  const mem = guest(0x7400000n, 0x200000n);
  await t.rejects(findKaslr(mem, syms, { ram: [{ address: 0n, length: 512 * 1024 * 1024 }], expectBanner: 'Linux version 5.10' }), KaslrNotFoundError);
  const ok = await findKaslr(mem, syms, { ram: [{ address: 0n, length: 512 * 1024 * 1024 }], expectBanner: BANNER });
  t.equal(ok.virtualSlide, 0x200000n);
});

t.test('no kernel, or a corrupt phys_base, is a clear error', async (t) => {
  await t.rejects(findKaslr(new SparseMemory(1n << 30n), syms, { ram: [{ address: 0n, length: 64 * 1024 * 1024 }] }), { code: 'EKASLR' });
  const mem = guest(0x7400000n, 0x200000n);
  mem.writeU64(0x7400000n + (LINK.phys_base - LINK._text), 0x123n);
  await t.rejects(findKaslr(mem, syms, { ram: [{ address: 0n, length: 512 * 1024 * 1024 }] }), /impossible virtual slide/);
});

t.test('scanForBanner names the running kernel without a profile', async (t) => {
  const mem = guest(0x7400000n, 0x200000n);
  const found = await scanForBanner(mem, [{ address: 0n, length: 256 * 1024 * 1024 }]);
  t.equal(found, BANNER);
  t.equal(await scanForBanner(new SparseMemory(1n << 26n), [{ address: 0n, length: 64 * 1024 * 1024 }]), null);
});
