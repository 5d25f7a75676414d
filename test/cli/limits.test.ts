// Resource limits from the command line, on a synthetic guest written as an ELF dump: the memory a
// command reads (--max-read), the time it takes (--time-limit), the tasks and command-line bytes it
// walks (--max-tasks, --max-cmdline). Reaching one says which flag raises it; bad values are
// usage errors.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { LimitExceededError, MemoryReadError } from '../../lib/errors';
import { serializeProfile } from '../../lib/kernel/profile';
import { ReadBudgetMemory } from '../../lib/memory/read-budget';
import { SyntheticGuest } from '../helpers/synthetic-kernel';
import { SparseMemory } from '../helpers/sparse-memory';
import { runCli, writeDump } from '../helpers/synthetic-dump';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-limits-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const dump = path.join(dir, 'guest.elf');
const profile = path.join(dir, 'synthetic.json');
{
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init', cmdline: ['/sbin/init'] });
  const ns = g.namespaces({ inums: { pid: 4026532601, mnt: 4026532602, uts: 4026532603 }, hostname: 'box' });
  g.addTask({ pid: 300, nsPids: [1], ns, comm: 'long', cmdline: ['/bin/long', 'x'.repeat(8000)], cgroup: `/system.slice/docker-${'ab'.repeat(32)}.scope`, parent: init });
  for (let i = 0; i < 30; i++) g.addTask({ pid: 500 + i, nsPids: [2 + i], ns, comm: 'worker', cgroup: `/system.slice/docker-${'ab'.repeat(32)}.scope`, parent: init, shareMm: init });
  writeDump(g, dump);
  fs.writeFileSync(profile, serializeProfile(g.profile.doc));
}
const vmictl = (...args: string[]) => runCli(...args, '--dump', dump, '--profile', profile);

t.test('the read budget: a wrapper that counts backend bytes', async (t) => {
  const mem = new SparseMemory(1n << 20n);
  const b = new ReadBudgetMemory(mem, 10_000);
  await b.read(0n, 4096);
  await b.readRanges([{ address: 4096n, length: 4096 }]);
  t.equal(b.used, 8192);
  const err = await b.read(0n, 4096).catch((e: unknown) => e);
  t.type(err, LimitExceededError);
  t.match((err as LimitExceededError).message, /raise it with --max-read/);
  t.equal((err as LimitExceededError).code, 'ELIMIT');
  t.equal(mem.calls.length, 2, 'the read past the budget was not made');
  t.type(await b.read(1n << 30n, 4096).catch((e: unknown) => e), LimitExceededError, 'checked before the backend, whatever the address');
  t.type(await new ReadBudgetMemory(mem, 1 << 30).read(1n << 30n, 1).catch((e: unknown) => e), MemoryReadError, 'within budget, the backend answers');
});

t.test('--max-read: ps stops with a message naming the flag', async (t) => {
  const r = await vmictl('ps', '--max-read', '0.05');
  t.equal(r.code, 1);
  t.match(r.stderr, /guest memory read by this command: the limit of 0 MiB was reached \(raise it with --max-read\) \[ELIMIT\]/);
  t.equal(r.stdout, '');
  const ok = await vmictl('ps', '--max-read', '64');
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, /box/);
});

t.test('--time-limit: a command past it stops with a message naming the flag', async (t) => {
  // a QMP socket that accepts and never greets: only the time limit can end the wait
  const sock = path.join(dir, 'silent-qmp.sock');
  const held: net.Socket[] = [];
  const server = net.createServer((c) => { held.push(c); });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  t.teardown(() => { for (const c of held) c.destroy(); server.close(); });
  const r = await runCli('ps', '--qmp', `unix:${sock}`, '--time-limit', '0.5');
  t.equal(r.code, 1);
  t.match(r.stderr, /time taken by this command: the limit of 0\.5 s was reached \(raise it with --time-limit\) \[ELIMIT\]/);
  t.equal(held.length, 1, 'vmictl had connected and was waiting for the greeting');
});

t.test('--max-tasks: the list is cut with a warning naming the flag', async (t) => {
  const r = await vmictl('ps', '--json', '--max-tasks', '5');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /more than 5 tasks: stopped there \(raise --max-tasks\)/);
  const list = JSON.parse(r.stdout) as Array<{ pids: number[] }>;
  t.ok(list.every((c) => c.pids.length <= 5));
});

t.test('--max-cmdline: a longer command line is cut, with a warning in the process', async (t) => {
  const r = await vmictl('inspect', 'box', '--max-cmdline', '100');
  t.equal(r.code, 0, r.stderr);
  const c = JSON.parse(r.stdout) as { processes: Array<{ pid: number; cmdline: string[]; warnings: string[] }> };
  const p = c.processes.find((x) => x.pid === 300)!;
  t.equal(p.cmdline.join('\0').length, 100, 'cut at 100 bytes');
  t.match(p.warnings, [/command line of \d+ bytes cut to 100/]);
});

t.test('bad limit values are usage errors', async (t) => {
  for (const [flag, value] of [['--max-tasks', 'abc'], ['--max-tasks', '0'], ['--max-tasks', '1.5'], ['--max-cmdline', '-1'], ['--max-read', 'x'], ['--time-limit', '0']]) {
    const r = await vmictl('ps', flag!, value!);
    t.equal(r.code, 2, `${flag} ${value}`);
    t.match(r.stderr, new RegExp(`^vmictl: ${flag} needs a positive .*\nRun 'vmictl ps --help' for usage\\.\n$`));
  }
});
