/**
 * A vmictl killed (-9) while its target sits in an injected call that never ends by itself
 * (pause()): `recover` gets the target out of it (a freeze and thaw of its cgroup restarts the
 * call at the `syscall` instruction, where it is caught and restored), and the target's own loop
 * goes on, checked from inside the guest. Left redirected, it would stay in pause() for good.
 * And a vmictl killed while its acquisition holds a container frozen (to wake a server asleep in
 * accept): its acquisition journal names the cgroup and its stop points, a new injection refuses
 * to start over it, and recover removes the points and thaws the cgroup.
 */
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { openInjection, recoverAll } from '../../lib/inject';
import { StaleInjectionError } from '../../lib/inject/errors';
import { guestRun, readGroundTruth, testVm, type VmEnv } from '../helpers/vm';
import { killMidInjection, tickerCounts } from '../helpers/kill-mid-injection';

t.test('kill -9 of vmictl during an injected pause(), then recover', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-recover-blocked-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const journal = await killMidInjection(env, dir, 'pause', 1500);
  t.ok(existsSync(journal), 'the killed vmictl left its journal');
  const [a, b] = await tickerCounts(env);
  t.equal(b, a, `the ticker is held in the injected pause() (${a} → ${b})`);

  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm.close());
  const outcomes = await recoverAll(vm, { dir, timeout: 5_000 });
  t.equal(outcomes.length, 1, 'one injection to recover');
  t.equal(outcomes[0]?.action, 'restored', `recovered: ${outcomes[0]?.detail}`);
  t.same(readdirSync(dir).filter((n) => n.startsWith('inject-')), [], 'the journal is removed');
  await vm.close();
  const [c, d] = await tickerCounts(env);
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

t.test('kill -9 of vmictl while its acquisition holds a container frozen, then recover', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');
  const gt = readGroundTruth(env.groundTruthFile);
  const web = gt.containers.find((c) => c.hostname === 'web');
  if (!web) return t.fail('no web container in the ground truth');
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-recover-frozen-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const frozenCgroup = await killMidInjection(env, dir, 'wake', 200);
  t.equal(frozenCgroup, web.cgroup, 'the killed vmictl had frozen web to wake httpd');
  const acquisitions = readdirSync(dir).filter((n) => n.startsWith('acquire-'));
  t.equal(acquisitions.length, 1, 'it left the journal of its acquisition');
  const entry = JSON.parse(readFileSync(join(dir, acquisitions[0]!), 'utf8')) as { frozen?: string; points: unknown[] };
  t.equal(entry.frozen, web.cgroup, 'which names the frozen cgroup');
  t.ok(entry.points.length > 0, `and its ${entry.points.length} stop points in QEMU`);

  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm.close());
  const refused = await openInjection(vm, { container: 'ticker' }, { journal: dir, timeout: 5_000 }).then((s) => s.close().then(() => null), (e: unknown) => e);
  t.ok(refused instanceof StaleInjectionError && refused.message.includes(acquisitions[0]!), `a new injection refuses to start over it: ${(refused as Error)?.message}`);
  const outcomes = await recoverAll(vm, { dir, timeout: 10_000 });
  const cleared = outcomes.find((o) => o.journal.endsWith(acquisitions[0]!));
  t.equal(cleared?.action, 'cleared', `recover clears the acquisition: ${cleared?.detail}`);
  t.match(cleared?.detail ?? '', `cgroup ${web.cgroup} thawed`, 'and thaws the cgroup');
  t.notOk(outcomes.some((o) => o.action === 'failed'), `nothing failed: ${outcomes.map((o) => `${o.action} ${o.detail}`).join('; ')}`);
  t.same(readdirSync(dir).filter((n) => n.endsWith('.json')), [], 'no journal is left');
  t.equal((await vm.qmp!.execute('query-status') as { running: boolean }).running, true, 'the VM runs');
  await vm.close();
  const events = await guestRun(env, `cat /sys/fs/cgroup${web.cgroup}/cgroup.freeze /sys/fs/cgroup${web.cgroup}/cgroup.events`);
  t.match(events.output, /^0\r?\n/, 'cgroup.freeze is 0');
  t.match(events.output, /^frozen 0$/m, 'and the kernel says web is not frozen');
  const served = await guestRun(env, `nsenter -t ${web.initPid} -n wget -q -O - http://127.0.0.1/index.html`);
  t.equal(served.output.trim(), 'hello from the web container', 'httpd serves');
});
