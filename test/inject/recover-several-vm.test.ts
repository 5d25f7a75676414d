/**
 * Two vmictls killed (-9) in the middle of injections into two containers: the first while its
 * target (nested's shell) sits in an injected pause(), which recovery can only end by running the
 * VM (a freeze and thaw of its cgroup, from a root helper); the second while its target (ticker's
 * shell) is parked between two calls, stopped on a vCPU with injected registers. `recover` takes
 * the first one first: while the VM runs for it, the second target must not run its own code with
 * injected registers (it is kept asleep in the kernel, and no vCPU is kept stopped for it, which
 * would stall the helper). Both end restored, and ticker's loop, read from inside the guest, goes on.
 */
import t from 'tap';
import { mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Vm } from '../../lib/vm';
import { recoverAll } from '../../lib/inject';
import { testVm } from '../helpers/vm';
import { answersAgain, killMidInjection, tickerCounts } from '../helpers/kill-mid-injection';

t.test('recover with two dead injections keeps one target asleep while it runs the VM for the other', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-recover-several-'));
  const other = mkdtempSync(join(tmpdir(), 'vmictl-recover-several-'));
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(other, { recursive: true, force: true });
  });
  const blocked = await killMidInjection(env, dir, 'pause', 1500, 'nested');
  // the second one writes its journal elsewhere: the first one's would stop it (a stale journal)
  const parkedAt = await killMidInjection(env, other, 'park', 500, 'ticker');
  const parked = join(dir, basename(parkedAt));
  renameSync(parkedAt, parked);
  t.same(readdirSync(dir).filter((n) => n.startsWith('inject-')).map((n) => join(dir, n)).sort(), [blocked, parked].sort(), 'two journals to recover');

  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm.close());
  const outcomes = await recoverAll(vm, { dir, timeout: 5_000 });
  t.same(outcomes.map((o) => o.journal), [blocked, parked], 'the blocked target is recovered first, while the parked one waits');
  t.same(outcomes.map((o) => o.action), ['restored', 'restored'], `both restored: ${outcomes.map((o) => `${o.comm}: ${o.action} (${o.detail})`).join('; ')}`);
  t.same(readdirSync(dir).filter((n) => n.startsWith('inject-')), [], 'the journals are removed');
  t.ok(await vm.runState!.running(), 'the VM runs again');
  await vm.close();

  const [a, b] = await tickerCounts(env);
  t.ok(b > a, `ticker's loop goes on (${a} → ${b})`);
  await answersAgain(t, env, dir, ['ticker', 'nested']);
});
