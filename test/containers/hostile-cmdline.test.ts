// Command lines a guest can make absurd: mm->arg_end - mm->arg_start of 10 MiB (or 1 GiB) with
// only some pages present. Reading one must stay within maxCmdline (128 KiB by default) in bytes,
// time and memory, and say that it cut.
import t from 'tap';
import { collectTasks } from '../../lib/containers/collect';
import { ARG_START, SyntheticGuest } from '../helpers/synthetic-kernel';

const MiB = 1024 * 1024;
const KiB128 = 128 * 1024;

/** "arg\0" over and over: every argument is "arg", so a cut at a multiple of 4 bytes is exact. */
function args(length: number): Buffer {
  return Buffer.alloc(length, 'arg\0');
}

t.test('a 10 MiB command line with a few pages present', async (t) => {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init', cmdline: ['/sbin/init'] });
  const area = args(10 * MiB);
  const hogs = [];
  // sparse: the first 40 pages (160 KiB) and every 256th page after them
  for (let i = 0; i < 10; i++) {
    hogs.push(g.addTask({ pid: 100 + i, comm: `hog-${i}`, cmdline: area, argLength: 10 * MiB, presentPage: (p) => p < 40 || p % 256 === 0, parent: init }));
  }
  // dense: all but the last 16 pages, one address space for ten processes (were the length not
  // clamped, each would read its 10 MiB page by page up to the hole)
  const dense = g.addTask({ pid: 110, comm: 'hog-10', cmdline: area, argLength: 10 * MiB, presentPage: (p) => p < 2560 - 16, parent: init });
  hogs.push(dense);
  for (let i = 11; i < 20; i++) hogs.push(g.addTask({ pid: 100 + i, comm: `hog-${i}`, shareMm: dense, parent: init }));
  g.addTask({ pid: 200, comm: 'after', cmdline: ['/bin/after', 'x'], parent: init });
  const kernel = await g.open();

  global.gc?.();
  const rss0 = process.memoryUsage().rss;
  const start = performance.now();
  const r = await collectTasks(kernel);
  const ms = performance.now() - start;
  const grown = process.memoryUsage().rss - rss0;

  // unclamped, this takes tens of seconds and over a GiB; the bounds leave room for a loaded machine
  t.ok(ms < 8000, `finishes quickly (${ms.toFixed(0)} ms for 20 × 10 MiB)`);
  t.ok(grown < 200 * MiB, `memory stays bounded (rss grew ${(grown / MiB).toFixed(1)} MiB)`);
  t.same(r.warnings, []);
  t.same(r.processes.map((p) => p.pid), [1, ...hogs.map((h) => h.pid), 200]);
  for (const p of r.processes.filter((x) => x.pid >= 100 && x.pid < 200)) {
    t.equal(p.cmdline!.length, KiB128 / 4, `pid ${p.pid}: cut at 128 KiB`);
    t.ok(p.cmdline!.every((a) => a === 'arg'));
    t.same(p.warnings, [`command line of ${10 * MiB} bytes cut to ${KiB128}`]);
  }
  t.match(r.processes.find((p) => p.pid === 200), { cmdline: ['/bin/after', 'x'], warnings: [] });
});

t.test('a hole inside the part that is read', async (t) => {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init' });
  g.addTask({ pid: 100, comm: 'holey', cmdline: args(10 * MiB), argLength: 10 * MiB, presentPage: (i) => i < 10, parent: init });
  const r = await collectTasks(await g.open());
  const p = r.processes.find((x) => x.pid === 100)!;
  // ARG_START sits 0xc40 into its page: the 10 present pages hold 0x3c0 + 9 pages of it
  const kept = 0x3c0 + 9 * 4096;
  t.equal(p.cmdline!.length, kept / 4, 'the present part');
  const hole = (ARG_START & ~0xfffn) + 10n * 4096n;
  t.same(p.warnings, [
    `command line of ${10 * MiB} bytes cut to ${KiB128}`,
    `command line page at 0x${hole.toString(16)} not present`,
  ]);
});

t.test('maxCmdline is the caller\'s bound', async (t) => {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init', cmdline: ['/sbin/init', '--a-long-option'] });
  g.addTask({ pid: 100, comm: 'big', cmdline: args(10 * MiB), argLength: 10 * MiB, presentPage: (i) => i < 8, parent: init });
  const r = await collectTasks(await g.open(), { maxCmdline: 4096 });
  t.equal(r.processes.find((x) => x.pid === 100)!.cmdline!.length, 1024);
  t.same(r.processes.find((x) => x.pid === 100)!.warnings, [`command line of ${10 * MiB} bytes cut to 4096`]);
  t.same(r.processes.find((x) => x.pid === 1)!.cmdline, ['/sbin/init', '--a-long-option'], 'short ones are whole');
});

t.test('a 1 GiB argument area with nothing present but its first page', async (t) => {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init' });
  g.addTask({ pid: 100, comm: 'huge', cmdline: args(8192), argLength: 1024 * MiB, presentPage: (i) => i === 0, parent: init });
  const start = performance.now();
  const r = await collectTasks(await g.open());
  t.ok(performance.now() - start < 3000);
  const p = r.processes.find((x) => x.pid === 100)!;
  t.equal(p.cmdline!.length, 0x3c0 / 4);
  t.match(p.warnings, [/cut to 131072/, /not present/]);
});

t.test('arg_end before arg_start, or beyond user space', async (t) => {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init' });
  const a = g.addTask({ pid: 100, comm: 'backwards', cmdline: ['x'], parent: init });
  const b = g.addTask({ pid: 101, comm: 'kernelward', cmdline: ['x'], parent: init });
  g.set('mm_struct', a.mm, 'arg_end', ARG_START - 4096n);
  g.set('mm_struct', b.mm, 'arg_end', 0xffffffffffff0000n);
  const r = await collectTasks(await g.open());
  t.match(r.processes.find((x) => x.pid === 100), { cmdline: [], warnings: [] });
  t.match(r.processes.find((x) => x.pid === 101), { cmdline: [], warnings: [] });
});
