// A hostile or corrupt task list: cycles, pointers into nowhere, and lists too long to walk. The
// walk must end, keep what it read before the damage, and say what it saw.
import t from 'tap';
import { collectTasks } from '../../lib/containers/collect';
import { forEachProcess } from '../../lib/kernel/helpers/task';
import { PAGE_OFFSET, SyntheticGuest, UNMAPPED_KERNEL, type TaskHandle } from '../helpers/synthetic-kernel';

/** A guest with init and `n` more host processes (pids 100, 101, ...). */
function guest(n: number): { g: SyntheticGuest; tasks: TaskHandle[] } {
  const g = new SyntheticGuest();
  const tasks = [g.addTask({ pid: 1, comm: 'init', cmdline: ['/sbin/init'] })];
  for (let i = 0; i < n; i++) tasks.push(g.addTask({ pid: 100 + i, comm: `worker-${i}`, cmdline: ['worker', String(i)], parent: tasks[0] }));
  return { g, tasks };
}

async function timed<T>(f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await f();
  return { value, ms: performance.now() - start };
}

t.test('a task list that loops back to an earlier task', async (t) => {
  const { g, tasks } = guest(3); // init, 100, 101, 102
  // 102.next -> 100 instead of the head; every prev on the way is as the walk expects, so only the
  // cycle check can notice
  g.writeU64(tasks[3]!.tasks, tasks[1]!.tasks);
  const kernel = await g.open();
  const { value: r, ms } = await timed(() => collectTasks(kernel));
  t.same(r.processes.map((p) => p.pid), [1, 100, 101, 102], 'the tasks before the loop closes');
  t.equal(r.warnings.length, 1);
  t.match(r.warnings[0], /^task list: .*loops back to 0x[0-9a-f]+/);
  t.match(r.warnings[0], tasks[1]!.tasks.toString(16), 'names where it loops');
  t.same(r.processes.find((p) => p.pid === 102)!.cmdline, ['worker', '2'], 'the last task before the loop is complete');
  t.ok(ms < 3000, `bounded time (${ms.toFixed(0)} ms)`);
});

t.test('a task whose next is itself', async (t) => {
  const { g, tasks } = guest(2);
  g.writeU64(tasks[1]!.tasks, tasks[1]!.tasks);
  const r = await collectTasks(await g.open());
  t.same(r.processes.map((p) => p.pid), [1, 100]);
  t.match(r.warnings, [/loops back/]);
});

t.test('a loop through a thread list', async (t) => {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init' });
  const app = g.addTask({ pid: 50, comm: 'app', parent: init });
  const t51 = g.addThread(app, { pid: 51, comm: 'app-t1' });
  g.addThread(app, { pid: 52, comm: 'app-t2' });
  g.addTask({ pid: 60, comm: 'after', parent: init });
  // 52's thread_node.next -> 51's again (not back to signal->thread_head)
  g.writeU64(app.group[2]!.threadNode, t51.threadNode);
  const r = await collectTasks(await g.open());
  t.same(r.processes.map((p) => p.pid), [1, 50, 60], 'the task list itself is whole');
  t.same(r.processes.find((p) => p.pid === 50)!.threads.map((x) => x.pid), [50, 51, 52]);
  t.match(r.warnings, [new RegExp(`^threads of 0x${app.address.toString(16)}: .*loops back`)]);
});

t.test('a next pointer that leads nowhere', async (t) => {
  const cases: Array<[string, bigint, RegExp]> = [
    ['unmapped kernel memory', UNMAPPED_KERNEL, /0xffffc90000123000/],
    ['a non-canonical address', 0xdead000000000100n, /bad next pointer 0xdead000000000100/],
    ['a user address', 0x00007ffd12345000n, /bad next pointer 0x7ffd12345000/],
    ['NULL', 0n, /bad next pointer 0x0\b/],
    ['zeroed memory in the direct map', PAGE_OFFSET + 0x1f000000n, /prev is 0x0, expected/],
  ];
  for (const [what, next, message] of cases) {
    t.test(what, async (t) => {
      const { g, tasks } = guest(4); // init, 100..103
      g.writeU64(tasks[2]!.tasks, next); // 101.next
      const r = await collectTasks(await g.open());
      t.same(r.processes.map((p) => p.pid), [1, 100, 101], 'the valid part');
      t.equal(r.warnings.length, 1);
      t.match(r.warnings[0], /^task list: /);
      t.match(r.warnings[0], message);
      t.match(r.warnings[0], /showing the part before it/);
    });
  }
});

t.test('a thread list head in unmapped memory (signal points nowhere)', async (t) => {
  const { g, tasks } = guest(2);
  g.set('task_struct', tasks[1]!.address, 'signal', UNMAPPED_KERNEL);
  const r = await collectTasks(await g.open());
  t.same(r.processes.map((p) => p.pid), [1, 100, 101], 'every process, the damaged one with itself as its only thread');
  t.same(r.processes.find((p) => p.pid === 100)!.threads.map((x) => x.pid), [100]);
  t.match(r.warnings, [new RegExp(`^threads of 0x${tasks[1]!.address.toString(16)}: `)]);
});

t.test('the walk helper stops where the collector does, and fails loudly without onCorruption', async (t) => {
  const { g, tasks } = guest(3);
  g.writeU64(tasks[2]!.tasks, UNMAPPED_KERNEL);
  const kernel = await g.open();
  const seen: bigint[] = [];
  const errors: Error[] = [];
  for await (const task of forEachProcess(kernel, { onCorruption: (e) => errors.push(e) })) seen.push(task);
  t.same(seen, tasks.slice(0, 3).map((x) => x.address));
  t.equal(errors.length, 1);
  t.equal((errors[0] as Error & { code: string }).code, 'EINVALID');
  const walk = async () => { for await (const _ of forEachProcess(kernel)) { /* walk */ } };
  await t.rejects(walk(), { code: 'EFAULT' }, 'without onCorruption the fault itself is thrown');
});

t.test('a task list caught in the middle of a change is not corruption', async (t) => {
  t.test('__list_del() half done: next->prev written, prev->next not yet', async (t) => {
    const { g, tasks } = guest(3); // init, 100, 101, 102
    // 101 leaves: 102.prev already points at 100, 100.next still at 101
    g.writeU64(tasks[3]!.tasks + 8n, tasks[1]!.tasks);
    const r = await collectTasks(await g.open());
    t.same(r.processes.map((p) => p.pid), [1, 100, 101, 102], 'every task, the leaving one too');
    t.same(r.warnings, [], 'no warning');
  });
  t.test('__list_add_rcu() at the front half done: prev->next published, next->prev not yet', async (t) => {
    const { g, tasks } = guest(3);
    // 102 goes in between 100 and 101: 100.next = 102 is published, 101.prev is still 100
    g.linkTasks([tasks[0]!, tasks[1]!, tasks[3]!, tasks[2]!]);
    g.writeU64(tasks[2]!.tasks + 8n, tasks[1]!.tasks);
    const r = await collectTasks(await g.open());
    t.same(r.processes.map((p) => p.pid), [1, 100, 101, 102], 'every task, the new one too');
    t.same(r.warnings, [], 'no warning');
  });
  t.test('a prev that fits neither is still reported', async (t) => {
    const { g, tasks } = guest(3);
    g.writeU64(tasks[3]!.tasks + 8n, tasks[0]!.tasks);
    const r = await collectTasks(await g.open());
    t.same(r.processes.map((p) => p.pid), [1, 100, 101]);
    t.match(r.warnings, [/102|prev is 0x[0-9a-f]+, expected/]);
  });
});
