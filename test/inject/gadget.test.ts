/**
 * The `syscall; ret` gadget search on a synthetic address space: the return address's own page
 * first, then outwards; pages that are not present, not user or not executable are skipped (under
 * KPTI the kernel half of a process's page table marks its user pages NX, so the search must look
 * through the user half), and a page with no gadget is passed over.
 */
import t from 'tap';
import { AddressSpace } from '../../lib/memory/address-space';
import { findSyscallRet, GADGET_SEARCH_PAGES, SYSCALL_RET } from '../../lib/inject/gadget';
import { SparseMemory } from '../helpers/sparse-memory';
import { PageTableBuilder } from '../helpers/page-tables';

const TEXT = 0x400000n;
const R = TEXT + 0x10_000n + 0x123n;

function page(bytes: Array<[number, Buffer]>): Buffer {
  // int3 everywhere else: no 0f 05 c3 by accident
  const p = Buffer.alloc(4096, 0xcc);
  for (const [at, b] of bytes) b.copy(p, at);
  return p;
}

function setup(): { mem: SparseMemory; b: PageTableBuilder; frame: (n: bigint) => bigint } {
  const mem = new SparseMemory(64n << 20n);
  const b = new PageTableBuilder(mem, 4, 0x100000n);
  let next = 0x800000n;
  return { mem, b, frame: () => { const f = next; next += 4096n; return f; } };
}

function mapCode(s: ReturnType<typeof setup>, va: bigint, content: Buffer, flags = { user: true, nx: false, writable: false }): void {
  const pa = s.frame(0n);
  s.mem.writeSync(pa, content);
  s.b.map(va, pa, 4096n, flags);
}

t.test("the return address's page first, then the nearest pages", async (t) => {
  const s = setup();
  const home = R & ~0xfffn;
  mapCode(s, home, page([]));
  mapCode(s, home + 0x1000n, page([[0x800, SYSCALL_RET]]));
  mapCode(s, home - 0x1000n, page([[0x10, SYSCALL_RET]]));
  mapCode(s, home - 0x3000n, page([[0x20, SYSCALL_RET]]));
  const as = AddressSpace.fromCr3(s.mem, s.b.root);
  t.equal(await findSyscallRet(as, R), home - 0x1000n + 0x10n, 'one page below before one page above');
  mapCode(s, home, page([[0xff0, SYSCALL_RET]]));
  t.equal(await findSyscallRet(AddressSpace.fromCr3(s.mem, s.b.root), R), home + 0xff0n, 'its own page first');
});

t.test('pages that are not present, not user or not executable are skipped', async (t) => {
  const s = setup();
  const home = R & ~0xfffn;
  mapCode(s, home, page([]));
  mapCode(s, home - 0x1000n, page([[0x10, SYSCALL_RET]]), { user: true, nx: true, writable: false });
  mapCode(s, home + 0x1000n, page([[0x10, SYSCALL_RET]]), { user: false, nx: false, writable: false });
  // home + 0x2000 not mapped at all
  mapCode(s, home - 0x4000n, page([[0x30, SYSCALL_RET]]));
  const as = AddressSpace.fromCr3(s.mem, s.b.root);
  t.equal(await findSyscallRet(as, R), home - 0x4000n + 0x30n, 'the first executable user page with one');
});

t.test('none within reach: undefined, and the search is bounded', async (t) => {
  const s = setup();
  const home = R & ~0xfffn;
  for (let d = -GADGET_SEARCH_PAGES; d <= GADGET_SEARCH_PAGES; d++) mapCode(s, home + BigInt(d) * 0x1000n, page([]));
  mapCode(s, home + BigInt(GADGET_SEARCH_PAGES + 1) * 0x1000n, page([[0, SYSCALL_RET]]));
  const as = AddressSpace.fromCr3(s.mem, s.b.root);
  t.equal(await findSyscallRet(as, R), undefined, `nothing within ${GADGET_SEARCH_PAGES} pages either side`);
});
