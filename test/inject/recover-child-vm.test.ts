/**
 * A vmictl killed (-9) while it drives a child it forked off its target (vfork, as exec does
 * before execve): the child stands at the target's return address, in a copy of its address
 * space, and the target waits in clone() for it. The session's journal names the child before it
 * runs anything; `recover` makes it exit before it recovers the target, so that it never runs the
 * target's code, and the target is restored. Checked from inside the guest: ticker's cgroup holds
 * its one process again, and its loop goes on.
 */
import t from 'tap';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { recoverAll } from '../../lib/inject';
import { readJournal } from '../../lib/inject/journal';
import { guestRun, testVm, type VmEnv } from '../helpers/vm';
import { answersAgain, killMidInjection, tickerCounts } from '../helpers/kill-mid-injection';

async function tickerProcs(env: VmEnv): Promise<string[]> {
  const r = await guestRun(env, 'cat /sys/fs/cgroup/ticker/cgroup.procs', 30_000);
  return r.output.split('\n').map((l) => l.trim()).filter(Boolean);
}

t.test('kill -9 of vmictl while it drives a forked child, then recover', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-recover-child-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const journal = await killMidInjection(env, dir, 'child', 500);
  const children = readJournal(journal).children ?? [];
  t.equal(children.length, 1, 'the journal names the child being driven');

  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm.close());
  const outcomes = await recoverAll(vm, { dir, timeout: 5_000 });
  t.equal(outcomes.length, 1, 'one injection to recover');
  t.equal(outcomes[0]?.action, 'restored', `the target is restored: ${outcomes[0]?.detail}`);
  t.match(outcomes[0]?.detail ?? '', new RegExp(`forked child ${children[0]?.pid} made to exit`), 'and the child made to exit first');
  t.same(readdirSync(dir).filter((n) => n.startsWith('inject-')), [], 'the journal is removed');
  await vm.close();

  const procs = await tickerProcs(env);
  t.equal(procs.length, 1, `ticker's cgroup holds its one process again (${procs.join(' ')})`);
  t.notOk(procs.includes(String(children[0]?.pid)), 'not the child');
  const [a, b] = await tickerCounts(env);
  t.ok(b > a, `ticker's loop goes on (${a} → ${b})`);
  await answersAgain(t, env, dir, ['ticker']);
});
