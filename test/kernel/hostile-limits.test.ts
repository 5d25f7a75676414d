// Bounds on how much of a guest is walked: a task list longer than maxTasks (a corrupt one can be
// endless) is cut there with a warning, in bounded time.
import t from 'tap';
import { collectTasks } from '../../lib/containers/collect';
import { SyntheticGuest } from '../helpers/synthetic-kernel';

async function timed<T>(f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await f();
  return { value, ms: performance.now() - start };
}

t.test('maxTasks: 5000 tasks, stopped at 1000 with a warning', async (t) => {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init', cmdline: ['/sbin/init'] });
  for (let i = 0; i < 4999; i++) g.addTask({ pid: 2 + i, comm: 'sleeper', shareMm: init, parent: init });
  const kernel = await g.open();
  g.mem.calls.length = 0;
  const { value: r, ms } = await timed(() => collectTasks(kernel, { maxTasks: 1000 }));
  t.equal(r.processes.length, 1000);
  t.same(r.processes.map((p) => p.pid), Array.from({ length: 1000 }, (_, i) => 1 + i), 'the first 1000 on the list');
  t.match(r.warnings, [/more than 1000 tasks: stopped there/]);
  // the tasks beyond the 1001st (and all they point to) were allocated after it, one after the
  // other: not one byte of them may have been read. Of the 1001st itself only its list link is
  // read (that is how the list is known to go on), so the pages up to that link's may be shared.
  const link = g.taskList[1000]!.address + BigInt(kernel.profile.fieldOffset('task_struct', 'tasks')) + 15n;
  const from = (g.physOf(link) | 0xfffn) + 1n;
  const to = g.physOf(g.taskList[4999]!.address) + 9728n;
  const touched = g.mem.calls.flat().filter((c) => c.address < to && c.address + BigInt(c.length) > from);
  t.same(touched, [], 'nothing past the 1001st task was read');
  // a loose guard against a hang (the machine may be loaded); the check above is the real bound
  t.ok(ms < 30_000, `bounded time (${ms.toFixed(0)} ms)`);
});

t.test('maxTasks counts threads too', async (t) => {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init' });
  let tid = 1000;
  for (let p = 0; p < 4; p++) {
    const leader = g.addTask({ pid: tid++, comm: `pool-${p}`, parent: init, shareMm: init });
    for (let i = 0; i < 99; i++) g.addThread(leader, { pid: tid++, comm: `pool-${p}` });
  }
  const r = await collectTasks(await g.open(), { maxTasks: 250 });
  const total = r.processes.reduce((n, p) => n + p.threads.length, 0);
  t.equal(total, 250, 'the leaders and threads taken add up to maxTasks');
  t.same(r.processes.map((p) => p.pid), [1, 1000, 1100, 1200]);
  t.equal(r.processes[3]!.threads.length, 49);
  t.match(r.warnings, [/more than 250 tasks/]);
});
