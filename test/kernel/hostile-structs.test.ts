// Hostile values inside the structures a task points to: kernfs parent chains that loop or never
// end, absurd pid levels, dentry chains that never reach a root, strings with no NUL. Each one is
// a warning on its task (or a bounded result), never a hang or a throw out of the collection.
import t from 'tap';
import { collectTasks } from '../../lib/containers/collect';
import { kernfsPath } from '../../lib/kernel/helpers/kernfs';
import { dPath } from '../../lib/kernel/helpers/dcache';
import { SyntheticGuest } from '../helpers/synthetic-kernel';

function base() {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init', cmdline: ['/sbin/init'], exe: '/sbin/init', cgroup: '/init.scope' });
  return { g, init };
}

async function collectTimed(g: SyntheticGuest) {
  const kernel = await g.open();
  const start = performance.now();
  const r = await collectTasks(kernel);
  return { ...r, ms: performance.now() - start, kernel };
}

t.test('a kernfs parent chain that loops', async (t) => {
  const { g, init } = base();
  const a = g.kernfsNode('/loop.slice');
  const b = g.kernfsNode('/loop.slice/inner.scope');
  g.addTask({ pid: 10, comm: 'in-b', cgroup: '/loop.slice/inner.scope', parent: init });
  g.addTask({ pid: 11, comm: 'in-a', cgroup: '/loop.slice', parent: init });
  g.addTask({ pid: 12, comm: 'fine', cgroup: '/system.slice/fine.service', parent: init });
  g.set('kernfs_node', a, 'parent', b); // a -> b -> a -> ...

  const r = await collectTimed(g);
  t.ok(r.ms < 3000, `bounded (${r.ms.toFixed(0)} ms)`);
  t.same(r.warnings, []);
  t.same(r.processes.map((p) => p.pid), [1, 10, 11, 12]);
  for (const pid of [10, 11]) {
    const p = r.processes.find((x) => x.pid === pid)!;
    t.equal(p.cgroup, '', `pid ${pid}: no cgroup path`);
    t.match(p.warnings, [/^cgroup: kernfs parent chain loops/], `pid ${pid}: warned`);
  }
  t.match(r.processes.find((x) => x.pid === 12), { cgroup: '/system.slice/fine.service', warnings: [] });
  t.match(r.processes.find((x) => x.pid === 1), { cgroup: '/init.scope', warnings: [] });
  await t.rejects(kernfsPath(r.kernel, b), { code: 'EINVALID', message: /loops/ }, 'the helper throws a ValidationError');
});

t.test('a kernfs node that is its own parent', async (t) => {
  const { g, init } = base();
  const n = g.kernfsNode('/self');
  g.set('kernfs_node', n, 'parent', n);
  g.addTask({ pid: 10, comm: 'self', cgroup: '/self', parent: init });
  const r = await collectTimed(g);
  t.match(r.processes.find((x) => x.pid === 10)!.warnings, [/loops/]);
});

t.test('a kernfs chain deeper than any cgroup tree', async (t) => {
  const { g, init } = base();
  const deep = '/' + Array.from({ length: 200 }, (_, i) => `d${i}`).join('/');
  g.addTask({ pid: 10, comm: 'deep', cgroup: deep, parent: init });
  const r = await collectTimed(g);
  t.ok(r.ms < 3000);
  t.match(r.processes.find((x) => x.pid === 10), { cgroup: '', warnings: [/^cgroup: kernfs path deeper than 64/] });
});

t.test('a kernfs name with no NUL is cut', async (t) => {
  const { g, init } = base();
  const n = g.kernfsNode('/x');
  const huge = Buffer.alloc(64 * 1024, 'A'); // no terminator anywhere near
  const name = g.alloc(huge.length + 4096, 4096n);
  g.writeBytes(name, huge);
  g.set('kernfs_node', n, 'name', name);
  g.addTask({ pid: 10, comm: 'long', cgroup: '/x', parent: init });
  const r = await collectTimed(g);
  const p = r.processes.find((x) => x.pid === 10)!;
  t.same(p.warnings, []);
  t.equal(p.cgroup, '/' + 'A'.repeat(256), 'cut at the name bound');
});

t.test('a pid.level of 1000000', async (t) => {
  const { g, init } = base();
  const v = g.addTask({ pid: 10, comm: 'deep-pid', cmdline: ['deep'], parent: init });
  const w = g.addTask({ pid: 11, comm: 'max-pid', cmdline: ['max'], parent: init });
  g.addTask({ pid: 12, comm: 'fine', parent: init });
  g.set('pid', v.pidStruct, 'level', 1_000_000);
  g.set('pid', w.pidStruct, 'level', 0xffffffff);
  const r = await collectTimed(g);
  t.ok(r.ms < 3000, `bounded (${r.ms.toFixed(0)} ms)`);
  t.same(r.processes.map((p) => p.pid), [1, 10, 11, 12]);
  t.match(r.processes.find((x) => x.pid === 10), { nspids: [], cmdline: ['deep'], warnings: [/^pid: pid level 1000000/] });
  t.match(r.processes.find((x) => x.pid === 11), { nspids: [], warnings: [/^pid: pid level 4294967295/] });
  t.match(r.processes.find((x) => x.pid === 12), { nspids: [12], warnings: [] });
});

t.test('a dentry chain that never reaches the root', async (t) => {
  const { g, init } = base();
  g.addTask({ pid: 10, comm: 'lost', exe: '/a/b/lost', parent: init });
  g.addTask({ pid: 11, comm: 'found', exe: '/usr/bin/found', parent: init });
  const a = g.dentry('/a');
  const b = g.dentry('/a/b');
  g.set('dentry', a, 'd_parent', b); // lost -> b -> a -> b -> ...
  const r = await collectTimed(g);
  t.ok(r.ms < 3000, `bounded (${r.ms.toFixed(0)} ms)`);
  t.match(r.processes.find((x) => x.pid === 10), { exe: null, cmdline: ['lost'], warnings: [/^exe: path longer than 256 components/] });
  t.match(r.processes.find((x) => x.pid === 11), { exe: '/usr/bin/found', warnings: [] });
  await t.rejects(dPath(r.kernel, { mnt: g.rootMnt, dentry: g.dentry('/a/b/lost') }, { mnt: g.rootMnt, dentry: g.rootDentry }), { code: 'EINVALID' });
});

t.test('a dentry name length of 4 GiB is clamped', async (t) => {
  const { g, init } = base();
  g.addTask({ pid: 10, comm: 'big', exe: '/bin/big', parent: init });
  const d = g.dentry('/bin/big');
  g.set('dentry', d, 'd_name.len', 0xffffffff);
  g.set('dentry', d, 'd_name.name', g.cString('big' + 'z'.repeat(5000)));
  const r = await collectTimed(g);
  const p = r.processes.find((x) => x.pid === 10)!;
  t.same(p.warnings, []);
  t.equal(p.exe, '/bin/big' + 'z'.repeat(252), 'read up to NAME_MAX (255) bytes');
});

t.test('comm and nodename filled to the brim with no NUL', async (t) => {
  const { g, init } = base();
  const ns = g.namespaces({ inums: { uts: 4026532999 }, hostname: 'h'.repeat(100) });
  g.addTask({ pid: 10, comm: 'c'.repeat(40), ns, parent: init });
  const r = await collectTimed(g);
  const p = r.processes.find((x) => x.pid === 10)!;
  t.equal(p.comm, 'c'.repeat(16), 'comm is its 16 bytes');
  t.equal(p.hostname, 'h'.repeat(65), 'nodename is its 65 bytes');
  t.same(p.warnings, []);
});
