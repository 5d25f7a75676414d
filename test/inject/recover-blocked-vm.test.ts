/**
 * A vmictl killed (-9) while its target sits in an injected call that never ends by itself
 * (pause()): `recover` gets the target out of it (a freeze and thaw of its cgroup restarts the
 * call at the `syscall` instruction, where it is caught and restored), and the target's own loop
 * goes on, checked from inside the guest. Left redirected, it would stay in pause() for good.
 */
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { openInjection, recoverAll } from '../../lib/inject';
import { guestRun, testVm, type VmEnv } from '../helpers/vm';
import { killMidInjection } from '../helpers/kill-mid-injection';

async function counter(env: VmEnv): Promise<number> {
  for (let i = 0; ; i++) {
    const r = await guestRun(env, 'cat /proc/$(runc state ticker | sed -n \'s/.*"pid": *\\([0-9]*\\).*/\\1/p\')/root/tmp/counter', 30_000);
    if (r.output.trim() !== '' || i >= 5) return Number(r.output.trim() || NaN);
  }
}

async function counts(env: VmEnv): Promise<[number, number]> {
  const a = await counter(env);
  await new Promise((r) => setTimeout(r, 1500));
  return [a, await counter(env)];
}

t.test('kill -9 of vmictl during an injected pause(), then recover', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-recover-blocked-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const journal = await killMidInjection(env, dir, 'pause', 1500);
  t.ok(existsSync(journal), 'the killed vmictl left its journal');
  const [a, b] = await counts(env);
  t.equal(b, a, `the ticker is held in the injected pause() (${a} → ${b})`);

  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm.close());
  const outcomes = await recoverAll(vm, { dir, timeout: 5_000 });
  t.equal(outcomes.length, 1, 'one injection to recover');
  t.equal(outcomes[0]?.action, 'restored', `recovered: ${outcomes[0]?.detail}`);
  t.same(readdirSync(dir).filter((n) => n.startsWith('inject-')), [], 'the journal is removed');
  await vm.close();
  const [c, d] = await counts(env);
  t.ok(d > c, `the ticker's loop goes on (${c} → ${d})`);

  const vm2 = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm2.close());
  const s = await openInjection(vm2, { container: 'ticker' }, { journal: dir, timeout: 20_000 });
  try {
    t.equal((await s.uname()).nodename, 'ticker', 'the target answers injected syscalls again');
  } finally {
    await s.close();
  }
});
