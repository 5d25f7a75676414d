// The pid IDR of init_pid_ns (an xarray of struct pid *), which collectTasks reads first so that
// the task-list walk runs from the cache: it must name exactly the tasks the guest has, save round
// trips, and, damaged or cyclic, neither hang nor change the listing — only say what it saw.
import t from 'tap';
import { collectTasks } from '../../lib/containers/collect';
import { pidNamespaceEntries, pidTasksCached } from '../../lib/kernel/helpers/pid';
import type { Kernel } from '../../lib/kernel/kernel';
import type { PageCache } from '../../lib/memory/page-cache';
import { SyntheticGuest, UNMAPPED_KERNEL, type TaskHandle } from '../helpers/synthetic-kernel';

/** init (pid 1), `n` host processes from pid 100 on (more than 64: a two-level tree), each fifth with a thread. */
function guest(n: number): { g: SyntheticGuest; tasks: TaskHandle[] } {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init', cmdline: ['/sbin/init'] });
  const tasks = [init];
  for (let i = 0; i < n; i++) {
    const p = g.addTask({ pid: 100 + i * 2, comm: `worker-${i}`, parent: init });
    tasks.push(p);
    if (i % 5 === 0) tasks.push(g.addThread(p, { pid: 101 + i * 2, comm: `worker-${i}-t` }));
  }
  return { g, tasks };
}

function backendCalls(k: Kernel): number {
  return (k.physical as PageCache).stats().backendCalls;
}

const sorted = (xs: Iterable<bigint>) => [...xs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

t.test('the IDR names the struct pid of every task but init_task, and each leads to its task', async (t) => {
  const { g, tasks } = guest(80);
  const nodes = g.buildPidIdr();
  t.equal(nodes[0]!.shift, 6, 'pids up to 259: a root of shift 6 over nodes of shift 0');
  const k = await g.open();
  const pids = await pidNamespaceEntries(k, k.symbol('init_pid_ns'));
  t.same(sorted(pids), sorted(tasks.map((x) => x.pidStruct)), 'every pid, threads included, and nothing else');
  await k.prefetch(pids.map((address) => ({ address, length: 128 })));
  t.same(sorted(pidTasksCached(k, pids)), sorted(tasks.map((x) => x.address)), 'pid->tasks[PIDTYPE_PID] names each task');
});

t.test('collectTasks warms the task list from the IDR: the same listing in a few round trips', async (t) => {
  const { g } = guest(80);
  // brief, as ps reads: command lines would add round trips of their own (one address space each)
  const plain = await g.open();
  const without = await collectTasks(plain, { brief: true });
  const callsWithout = backendCalls(plain);
  g.buildPidIdr();
  const warm = await g.open();
  const withIdr = await collectTasks(warm, { brief: true });
  const callsWith = backendCalls(warm);
  t.same(withIdr.processes, without.processes, 'the same processes and threads, in full');
  t.same(withIdr.warnings, []);
  t.same(without.warnings, [], 'an empty IDR (head 0) is no damage');
  t.ok(callsWithout > 80, `walking the list alone costs a round trip per process (${callsWithout})`);
  t.ok(callsWith < 30, `with the IDR, a few per tree level and stage (${callsWith})`);
});

t.test('a cyclic IDR: a node that points back to the root, and one to itself', async (t) => {
  const { g, tasks } = guest(80);
  const reference = await collectTasks(await g.open());
  const nodes = g.buildPidIdr();
  const root = nodes[0]!;
  const leaf = nodes[1]!;
  const slots = g.offset('xa_node', 'slots');
  // an empty slot of the last leaf points back up to the root; a slot of the root to the root itself
  const last = nodes[nodes.length - 1]!;
  g.writeU64(last.node + slots + 63n * 8n, root.node | 2n);
  g.writeU64(root.node + slots + 63n * 8n, root.node | 2n);
  const k = await g.open();
  const pids = await pidNamespaceEntries(k, k.symbol('init_pid_ns'), { onCorruption: () => undefined });
  t.equal(new Set(pids).size, pids.length, 'no pid twice');
  t.equal(pids.length, tasks.length, 'every pid still found once');
  const start = performance.now();
  const r = await collectTasks(k);
  t.same(r.processes, reference.processes, 'the listing is whole and unchanged');
  t.equal(r.warnings.length, 1);
  t.match(r.warnings[0], /^pid IDR of init_pid_ns: 2 node pointers back to nodes already walked \(a cycle\), the first at 0x[0-9a-f]+; listed from the task list alone$/);
  t.match(r.warnings[0], root.node.toString(16), 'names the node met again');
  t.ok(leaf.shift === 0, 'the tree had leaves below the root');
  t.comment(`took ${(performance.now() - start).toFixed(0)} ms`);
});

t.test('every slot of the root pointing at itself: walked once, reported once', async (t) => {
  const { g } = guest(10);
  const reference = await collectTasks(await g.open());
  const nodes = g.buildPidIdr();
  t.equal(nodes[0]!.shift, 6, 'the root');
  const slots = g.offset('xa_node', 'slots');
  for (let i = 0n; i < 64n; i++) g.writeU64(nodes[0]!.node + slots + i * 8n, nodes[0]!.node | 2n);
  const k = await g.open();
  const r = await collectTasks(k);
  t.same(r.processes, reference.processes);
  t.match(r.warnings, [/^pid IDR of init_pid_ns: 64 node pointers back to nodes already walked \(a cycle\)/]);
});

t.test('IDR slots into nowhere, bogus node pointers and an unreadable head', async (t) => {
  const { g } = guest(80);
  const reference = await collectTasks(await g.open());
  const nodes = g.buildPidIdr();
  const slots = g.offset('xa_node', 'slots');
  const root = nodes[0]!.node;
  // a subtree moved to unmapped memory, and a node pointer in the user half
  g.writeU64(root + slots + 1n * 8n, UNMAPPED_KERNEL | 2n);
  g.writeU64(root + slots + 2n * 8n, 0x7f0000001000n | 2n);
  const k = await g.open();
  const r = await collectTasks(k);
  t.same(r.processes, reference.processes, 'the tasks the IDR lost are still listed');
  t.equal(r.warnings.length, 2);
  // in the order the walk meets them: bad pointers while taking a level, unreadable nodes after its fetch
  t.match(r.warnings, [
    /^pid IDR of init_pid_ns: 1 node pointers that are not kernel pointers, the first at 0x7f0000001002; /,
    /^pid IDR of init_pid_ns: 1 unreadable nodes, the first at 0xffffc90000123000; /,
  ]);

  g.writeU64(g.symbol('init_pid_ns') + g.offset('pid_namespace', 'idr.idr_rt.xa_head'), UNMAPPED_KERNEL | 2n);
  const r2 = await collectTasks(await g.open());
  t.same(r2.processes, reference.processes);
  t.match(r2.warnings, [/^pid IDR of init_pid_ns: 1 unreadable nodes/]);
});

t.test('a chain of nodes deeper than any real tree stops at the depth bound', async (t) => {
  const { g } = guest(3);
  const reference = await collectTasks(await g.open());
  const nodes = g.buildPidIdr();
  const slots = g.offset('xa_node', 'slots');
  // 20 fresh nodes, each the only child of the one before, hung from the root's last slot
  let parent = nodes[0]!.node;
  for (let i = 0; i < 20; i++) {
    const n = g.alloc('xa_node');
    g.writeU64(parent + slots + 63n * 8n, n | 2n);
    parent = n;
  }
  const r = await collectTasks(await g.open());
  t.same(r.processes, reference.processes);
  t.match(r.warnings, [/^pid IDR of init_pid_ns: 1 deeper than 12 levels \(not walked further\)/]);
});
