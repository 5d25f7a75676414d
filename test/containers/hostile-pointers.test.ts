// A task whose pointers (nsproxy, real_cred, cgroups, thread_pid, mm, real_parent) lead into
// unmapped memory or garbage: it is still listed, with what could be read and a warning for each
// part that could not; every other task is complete.
import t, { type Test } from 'tap';
import { collectTasks } from '../../lib/containers/collect';
import { groupContainers } from '../../lib/containers/group';
import type { ProcessInfo } from '../../lib/containers/model';
import { Kernel } from '../../lib/kernel/kernel';
import type { PhysicalMemory } from '../../lib/memory/physical';
import { ROOT_INUMS, SyntheticGuest, UNMAPPED_KERNEL } from '../helpers/synthetic-kernel';

const CTR_ID = 'ab'.repeat(32);
const CTR_CG = `/system.slice/docker-${CTR_ID}.scope`;
const CTR_INUMS = { pid: 4026532501, mnt: 4026532502, uts: 4026532503, net: 4026532504, ipc: 4026532505 };

type Field = 'nsproxy' | 'real_cred' | 'cgroups' | 'thread_pid' | 'mm' | 'real_parent';

/** init, a healthy host task and a healthy container around `broken` (pid 500, in the container). */
function guest(broken: Partial<Record<Field, bigint>>) {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init', cmdline: ['/sbin/init'], exe: '/sbin/init', cgroup: '/init.scope' });
  const ns = g.namespaces({ inums: CTR_INUMS, hostname: 'box' });
  g.addTask({ pid: 400, nsPids: [1], ns, comm: 'box-init', cmdline: ['/box-init'], exe: '/box-init', cgroup: CTR_CG, parent: init });
  const victim = g.addTask({ pid: 500, nsPids: [7], ns, comm: 'victim', cmdline: ['/victim', '--serve'], exe: '/usr/bin/victim', cgroup: CTR_CG, parent: init, uid: 33, gid: 33 });
  g.addTask({ pid: 600, comm: 'cron', cmdline: ['/usr/sbin/cron', '-f'], exe: '/usr/sbin/cron', cgroup: '/system.slice/cron.service', parent: init });
  for (const [field, value] of Object.entries(broken)) g.set('task_struct', victim.address, field, value);
  return g;
}

function checkOthers(t: Test, processes: ProcessInfo[]): void {
  const by = new Map(processes.map((p) => [p.pid, p]));
  t.match(by.get(1), { comm: 'init', cmdline: ['/sbin/init'], exe: '/sbin/init', cgroup: '/init.scope', warnings: [] });
  t.match(by.get(400), { comm: 'box-init', nspids: [400, 1], hostname: 'box', cgroup: CTR_CG, cmdline: ['/box-init'], warnings: [] });
  t.same(by.get(400)!.namespaces, { ...ROOT_INUMS, ...CTR_INUMS });
  t.match(by.get(600), { comm: 'cron', cmdline: ['/usr/sbin/cron', '-f'], exe: '/usr/sbin/cron', ppid: 1, warnings: [] });
}

const BAD: Array<[string, bigint]> = [
  ['unmapped kernel memory', UNMAPPED_KERNEL],
  ['a non-canonical address', 0x4141414141414141n],
  ['a user address', 0x00007ffd00001000n],
];

for (const [what, bad] of BAD) {
  t.test(`nsproxy into ${what}`, async (t) => {
    const { processes, warnings } = await collectTasks(await guest({ nsproxy: bad }).open());
    t.same(warnings, []);
    t.same(processes.map((p) => p.pid), [1, 400, 500, 600]);
    const v = processes.find((p) => p.pid === 500)!;
    t.match(v.warnings, [/^namespaces: /]);
    t.equal(v.warnings!.length, 1);
    t.match(v, { comm: 'victim', cmdline: ['/victim', '--serve'], exe: '/usr/bin/victim', uid: 33, nspids: [500, 7], cgroup: CTR_CG, hostname: '' });
    t.same(v.namespaces, { pid: CTR_INUMS.pid, user: ROOT_INUMS.user, mnt: 0, uts: 0, net: 0, ipc: 0, cgroup: 0, time: 0 }, 'pid and user namespaces come from elsewhere');
    checkOthers(t, processes);
    // its own pid namespace still puts it in the container
    const { containers } = groupContainers(processes);
    t.same(containers.map((c) => [c.id, c.pids]), [[CTR_ID, [400, 500]]]);
  });

  t.test(`real_cred into ${what}`, async (t) => {
    const { processes } = await collectTasks(await guest({ real_cred: bad }).open());
    const v = processes.find((p) => p.pid === 500)!;
    t.match(v.warnings, [/^credentials: /]);
    t.equal(v.warnings!.length, 1);
    t.match(v, { uid: 0, gid: 0, euid: 0, egid: 0, hostname: 'box', cmdline: ['/victim', '--serve'] });
    t.equal(v.namespaces.user, 0, 'the user namespace is unknown');
    t.equal(v.namespaces.mnt, CTR_INUMS.mnt);
    checkOthers(t, processes);
  });

  t.test(`cgroups into ${what}`, async (t) => {
    const { processes } = await collectTasks(await guest({ cgroups: bad }).open());
    const v = processes.find((p) => p.pid === 500)!;
    t.match(v.warnings, [/^cgroup: /]);
    t.equal(v.warnings!.length, 1);
    t.match(v, { cgroup: '', uid: 33, hostname: 'box', nspids: [500, 7] });
    checkOthers(t, processes);
    const { containers } = groupContainers(processes);
    t.same(containers.map((c) => [c.id, c.pids]), [[CTR_ID, [400, 500]]], 'still grouped by its pid namespace');
  });

  t.test(`thread_pid into ${what}`, async (t) => {
    const { processes } = await collectTasks(await guest({ thread_pid: bad }).open());
    const v = processes.find((p) => p.pid === 500)!;
    t.match(v.warnings, [/^pid: /]);
    t.equal(v.warnings!.length, 1);
    t.match(v, { pid: 500, nspids: [], pidNamespaces: [], cgroup: CTR_CG, hostname: 'box' });
    t.equal(v.namespaces.pid, 0);
    checkOthers(t, processes);
    const { containers } = groupContainers(processes);
    t.same(containers.map((c) => [c.id, c.pids]), [[CTR_ID, [400, 500]]], 'its cgroup and mount namespace keep it in the container');
  });

  t.test(`mm and real_parent into ${what}`, async (t) => {
    const { processes } = await collectTasks(await guest({ mm: bad, real_parent: bad }).open());
    const v = processes.find((p) => p.pid === 500)!;
    // a real_parent that is not a kernel pointer at all is corrupt without reading; one into
    // unmapped kernel memory is read and fails: both are warned about (ppid 0 is not "no parent")
    const expected = ['cmdline', 'exe', 'parent'];
    t.same(v.warnings!.map((w) => w.split(':')[0]).sort(), expected);
    t.match(v, { cmdline: null, exe: null, ppid: 0, uid: 33, kernelThread: false, cgroup: CTR_CG });
    checkOthers(t, processes);
  });
}

t.test('every pointer broken at once', async (t) => {
  const g = guest({ nsproxy: UNMAPPED_KERNEL, real_cred: UNMAPPED_KERNEL + 0x1000n, cgroups: 0n, thread_pid: UNMAPPED_KERNEL + 0x2000n, mm: 0xdead4ead00000000n, real_parent: 0x1n });
  const start = performance.now();
  const { processes, warnings } = await collectTasks(await g.open());
  t.ok(performance.now() - start < 3000, 'bounded time');
  t.same(warnings, []);
  const v = processes.find((p) => p.pid === 500)!;
  t.match(v, { comm: 'victim', cmdline: null, exe: null, cgroup: '', hostname: '', nspids: [], uid: 0 });
  t.same(v.warnings!.map((w) => w.split(':')[0]).sort(), ['cgroup', 'cmdline', 'credentials', 'exe', 'namespaces', 'parent', 'pid']);
  t.same(Object.values(v.namespaces), [0, 0, 0, 0, 0, 0, 0, 0]);
  checkOthers(t, processes);
  // no namespace and no pid numbers: reported with the host, and grouping does not trip over it
  const { host, containers } = groupContainers(processes);
  t.same(containers.map((c) => [c.id, c.pids]), [[CTR_ID, [400]]]);
  t.same(host.pids, [1, 500, 600]);
});

t.test('a shared object that is broken shows on every task using it, each task listed', async (t) => {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init' });
  const ns = g.namespaces({ inums: CTR_INUMS, hostname: 'box' });
  for (let i = 0; i < 5; i++) g.addTask({ pid: 700 + i, nsPids: [1 + i], ns, comm: `w${i}`, cgroup: CTR_CG, parent: init });
  // the container's uts namespace object is unmapped: both its inode and its nodename fail
  g.set('nsproxy', ns.nsproxy, 'uts_ns', UNMAPPED_KERNEL);
  const { processes } = await collectTasks(await g.open());
  t.same(processes.map((p) => p.pid), [1, 700, 701, 702, 703, 704]);
  for (const p of processes.slice(1)) {
    t.match(p.warnings, [/^namespaces: /], `pid ${p.pid} warned`);
    t.equal(p.namespaces.mnt, CTR_INUMS.mnt, `pid ${p.pid}: the other namespaces are read`);
    t.equal(p.namespaces.uts, 0);
  }
  t.same(processes[0]!.warnings, []);
});

t.test('one unreadable namespace does not lose the others, however long they take', async (t) => {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init' });
  const outer = g.namespaces({ inums: CTR_INUMS, hostname: 'box' });
  // the victim's own mount namespace (and its nsproxy) on a page of their own
  g.alloc(4096, 4096n);
  const ns = g.namespaces({ parent: outer, inums: { mnt: 4026532777 } });
  g.alloc(4096, 4096n);
  const v = g.addTask({ pid: 500, nsPids: [1], ns, comm: 'victim', kernelThread: false, cgroup: CTR_CG, parent: init });
  g.set('nsproxy', ns.nsproxy, 'uts_ns', UNMAPPED_KERNEL); // fails at once
  // the mount namespace's inode sits on a page the backend is slow to answer
  const mntNs = g.mem.readU64(g.physOf(ns.nsproxy + g.offset('nsproxy', 'mnt_ns')));
  const slowPage = g.physOf(mntNs + g.offset('mnt_namespace', 'ns.inum')) >> 12n;
  const slow: PhysicalMemory = {
    name: 'slow',
    read: async (address, length) => (await slow.readRanges([{ address, length }]))[0]!,
    readRanges: async (ranges) => {
      if (ranges.some((r) => r.address >> 12n <= slowPage && (r.address + BigInt(r.length) - 1n) >> 12n >= slowPage)) {
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      return g.mem.readRanges(ranges);
    },
  };
  const { processes } = await collectTasks(await Kernel.open(slow, g.profile, { ram: g.ram }));
  const p = processes.find((x) => x.pid === v.pid)!;
  const atReturn = { ...p.namespaces };
  await new Promise((resolve) => setTimeout(resolve, 400));
  t.same(p.namespaces, atReturn, 'the result does not change after collectTasks returned');
  t.equal(atReturn.mnt, 4026532777, 'the mount namespace was read');
  t.equal(atReturn.uts, 0);
  t.match(p.warnings, [/^namespaces: /]);
});
