// The kernel's address ranges (lib/kernel/layout.ts) on synthetic guests: under 5-level paging the
// direct map, vmalloc and vmemmap lie where the kernel's own variables say, all outside the 4-level
// kernel half, and user space reaches 2^56; a whole listing must read as it does under 4-level.
import t from 'tap';
import { collectTasks } from '../../lib/containers/collect';
import { ValidationError } from '../../lib/errors';
import { pointsAt } from '../../lib/integrity/kallsyms-checks';
import { SymbolMap } from '../../lib/integrity/symbol-map';
import {
  ARG_START, LA57_PAGE_OFFSET, LA57_VMALLOC_BASE, LA57_VMEMMAP_BASE, PAGE_OFFSET, ROOT_INUMS, START_KERNEL_MAP, SyntheticGuest, VMALLOC_BASE,
} from '../helpers/synthetic-kernel';

/** A command-line address only 5-level paging has (above the 47-bit user space). */
const HIGH_ARGS = ARG_START << 8n;

function build(opts: ConstructorParameters<typeof SyntheticGuest>[0]) {
  const g = new SyntheticGuest(opts);
  const init = g.addTask({ pid: 1, comm: 'init', cmdline: ['/sbin/init', 'splash'], cgroup: '/init.scope' });
  g.addTask({ pid: 2, comm: 'kthreadd', kernelThread: true });
  const ns = g.namespaces({ inums: { pid: 4026532301, mnt: 4026532298, uts: 4026532299 }, hostname: 'web-1' });
  const nginx = g.addTask({ pid: 1000, nsPids: [1], ns, comm: 'nginx', cmdline: ['nginx', '-g', 'daemon off;'], exe: '/usr/sbin/nginx', cgroup: '/web', parent: init });
  g.addThread(nginx, { pid: 1001, nsPids: [2], ns, comm: 'nginx-io', cgroup: '/web', parent: init });
  g.buildPidIdr();
  return g;
}

t.test('a 5-level guest: the bases come from its variables and a listing reads in full', async (t) => {
  const g = build({ pagingLevels: 5, argStart: HIGH_ARGS });
  const k = await g.open();
  t.equal(k.pagingLevels, 5);
  t.same(k.layout.bases, { pageOffset: LA57_PAGE_OFFSET, vmallocStart: LA57_VMALLOC_BASE, vmemmapStart: LA57_VMEMMAP_BASE }, 'page_offset_base, vmalloc_base, vmemmap_base');
  t.equal(k.layout.userTop, 1n << 56n, 'user space is 56 bits wide');
  const { processes, warnings } = await collectTasks(k);
  t.same(warnings, [], 'no pointer of the LA57 direct map taken for corruption');
  t.same(processes.map((p) => p.pid), [1, 2, 1000]);
  const by = new Map(processes.map((p) => [p.pid, p]));
  t.match(by.get(1), { comm: 'init', cmdline: ['/sbin/init', 'splash'], cgroup: '/init.scope', hostname: 'synthetic', namespaces: ROOT_INUMS });
  t.match(by.get(1000), { comm: 'nginx', cmdline: ['nginx', '-g', 'daemon off;'], exe: '/usr/sbin/nginx', hostname: 'web-1', nspids: [1000, 1], cgroup: '/web' });
  t.same(by.get(1000)!.threads.map((x) => x.pid), [1000, 1001], 'the thread list too');
});

t.test('the pointer rule and the regions follow the running kernel', async (t) => {
  const l5 = (await build({ pagingLevels: 5 }).open()).layout;
  const l4 = (await build({}).open()).layout;

  t.ok(l5.isKernelPointer(LA57_PAGE_OFFSET + 0x1234000n), 'LA57: a direct-map pointer is a kernel pointer');
  t.ok(l5.isKernelPointer(LA57_VMALLOC_BASE + 0x5000n), 'LA57: a vmalloc pointer is a kernel pointer');
  t.notOk(l5.isKernelPointer(0xff10000000001000n), 'LA57: below the direct map (the LDT remap) is no pointer to kernel data');
  t.notOk(l5.isKernelPointer(0x00ff000000001000n), 'LA57: a high user address is none either');
  t.notOk(l4.isKernelPointer(LA57_PAGE_OFFSET + 0x1234000n), '4-level: the same address is not even canonical');
  t.notOk(l4.isKernelPointer(0xffff800000001000n), '4-level: below page_offset_base (the guard hole)');
  t.ok(l4.isKernelPointer(PAGE_OFFSET + 0x1234000n));

  t.equal(l5.regionOf(LA57_PAGE_OFFSET + 0x1000n), 'direct map');
  t.equal(l5.regionOf(LA57_VMALLOC_BASE + 0x1000n), 'vmalloc space');
  t.equal(l5.regionOf(LA57_VMEMMAP_BASE + 0x40n), 'vmemmap');
  t.not(l5.regionOf(PAGE_OFFSET), 'direct map', "LA57: the 4-level PAGE_OFFSET is not the direct map");
  t.equal(l5.regionOf(START_KERNEL_MAP + 0x1000000n), 'kernel image');
  t.equal(l5.regionOf(0xffffffffc0400000n), 'module space');
  t.equal(l5.regionOf(0x00ff7ffd4a200000n), 'user space', 'LA57: user space above 2^47');
  t.equal(l4.regionOf(0x00ff7ffd4a200000n), 'non-canonical', '4-level: the same is no address at all');
  t.equal(l4.regionOf(PAGE_OFFSET + 0x1000n), 'direct map');
  t.equal(l4.regionOf(VMALLOC_BASE + 0x1000n), 'vmalloc space');
  t.ok(l5.isUserAddress((1n << 56n) - 4096n) && !l4.isUserAddress(1n << 47n), 'the user top is the mode\'s');

  const symbols = new SymbolMap([{ name: '_stext', address: START_KERNEL_MAP + 0x1000000n }], START_KERNEL_MAP + 0x1000000n, START_KERNEL_MAP + 0x2000000n);
  t.equal(pointsAt(symbols, l5, LA57_VMALLOC_BASE + 0x7000n), 'points outside core kernel text (vmalloc space)', 'a finding names the LA57 region');
  t.equal(pointsAt(symbols, l5, 0x1000n), 'points outside core kernel text (not a kernel address: user space)');
});

t.test('corrupt layout variables are a clear error naming the variable', async (t) => {
  const cases: Array<[string, 'page_offset_base' | 'vmalloc_base' | 'vmemmap_base', bigint, RegExp]> = [
    ['an unaligned direct map', 'page_offset_base', LA57_PAGE_OFFSET + 0x1000n, /page_offset_base holds 0xff3686ad80001000/],
    ['a user address', 'vmemmap_base', 0x7fff00000000n, /vmemmap_base holds 0x7fff00000000/],
    ['the kernel image', 'vmalloc_base', START_KERNEL_MAP, /vmalloc_base holds/],
    ['out of order', 'vmalloc_base', LA57_PAGE_OFFSET - (1n << 30n), /not in the kernel's order/],
  ];
  for (const [what, name, value, message] of cases) {
    const g = build({ pagingLevels: 5 });
    g.writeU64(g.symbol(name), value);
    const err = await g.open().then(() => null, (e: unknown) => e);
    t.type(err, ValidationError, what);
    t.match((err as Error).message, message, what);
  }
});

t.test('a kernel without the variables (fixed layout): only the halves are known, and that suffices', async (t) => {
  const g = build({ layoutVariables: false });
  const k = await g.open();
  t.equal(k.layout.bases, undefined);
  t.ok(k.isKernelPointer(0xffff800000001000n), 'the whole kernel half is taken');
  t.equal(k.layout.regionOf(PAGE_OFFSET), 'kernel half', 'no region named that the kernel did not say');
  const { processes, warnings } = await collectTasks(k);
  t.same(warnings, []);
  t.same(processes.map((p) => p.pid), [1, 2, 1000]);
});
