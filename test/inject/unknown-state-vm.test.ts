/**
 * A session that cannot put its thread back (here: the parked vCPU made to look like kernel mode
 * behind the engine's back, as another gdbstub user could) leaves the VM stopped and the journal
 * in place, saying so and naming `vmictl recover`, instead of letting the thread run its own code
 * with injected registers. A recovery that fails then (a journal without the saved rip) leaves the
 * VM stopped too, and the journal kept. Once the vCPU and the journal are as they were, recover
 * restores the target and the ticker counts again (checked from inside the guest).
 * A VM run behind the session's back (another QMP client's `cont`, as `virsh resume`) is seen at
 * the next call, from the parked vCPU's registers: nothing is written to it, the VM is left
 * stopped and the journal kept.
 */
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { InjectionError } from '../../lib/errors';
import { openInjection, recoverAll } from '../../lib/inject';
import { guestRun, testVm } from '../helpers/vm';
import { guestPid } from '../helpers/kernel-poke';

t.test('a session that cannot restore its thread leaves the VM stopped', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-unknown-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm.close());
  const running = async () => ((await vm.qmp!.execute('query-status')) as { running: boolean }).running;

  const s = await openInjection(vm, { container: 'ticker' }, { journal: dir, timeout: 30_000 });
  t.equal(await s.getpid(), s.target.nspid, 'the session works');
  const journal = s.journalPath!;
  const gdb = s.engine.gdb;
  const vcpu = s.vcpu;
  const cs = (await gdb.readRegisters({ thread: vcpu })).get('cs')!;
  await gdb.writeRegisters(new Map([['cs', 0x10n]]), { thread: vcpu });
  const err = await s.end().then(() => null, (e: unknown) => e);
  t.ok(err instanceof InjectionError, 'ending fails');
  t.equal((err as InjectionError).state, 'unknown');
  t.match((err as Error).message, /left stopped for 'vmictl recover'/, 'saying the VM is left stopped, for recover');
  t.notOk(await running(), 'the VM is stopped');
  t.ok(existsSync(journal), 'the journal is kept');

  await gdb.writeRegisters(new Map([['cs', cs]]), { thread: vcpu });
  // a recovery that fails (here: the journal lost the saved rip it must write back) leaves the
  // VM stopped and the journal kept, and says how to go on
  const good = readFileSync(journal, 'utf8');
  const broken = JSON.parse(good) as { registers: Record<string, string> };
  delete broken.registers.rip;
  writeFileSync(journal, JSON.stringify(broken));
  const failed = await recoverAll(vm, { dir, force: true, timeout: 30_000 });
  t.same(failed.map((o) => o.action), ['failed'], `the recovery fails: ${failed[0]?.detail}`);
  t.match(failed[0]?.detail ?? '', /the VM is left stopped.*'vmictl recover --resume'/, 'saying the VM is left stopped, and how to go on');
  t.notOk(await running(), 'the VM is still stopped: the thread holds injected registers');
  t.ok(existsSync(journal), 'the journal is kept');
  writeFileSync(journal, good);
  // the journal's writer is this process, which still runs: force
  const outcomes = await recoverAll(vm, { dir, force: true, timeout: 30_000 });
  t.equal(outcomes[0]?.action, 'restored', `recovered: ${outcomes[0]?.detail}`);
  t.ok(await running(), 'the VM runs again');
  const read = async () => Number((await guestRun(env, 'runc exec ticker cat /tmp/counter', 30_000)).output.trim());
  const a = await read();
  await new Promise((r) => setTimeout(r, 1500));
  const b = await read();
  t.ok(b > a, `the ticker counts (${a} → ${b})`);
});

t.test('the VM run behind the session\'s back: the next call writes nothing and leaves the VM stopped', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-behind-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // a process of its own: it runs on from where it was parked, with injected registers, and may die
  const pid = await guestPid(env, "sh -c 'while :; do sleep 1; done'");
  t.teardown(() => guestRun(env, `kill -9 ${pid}`).then(() => undefined, () => undefined));
  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm.close());
  const running = async () => ((await vm.qmp!.execute('query-status')) as { running: boolean }).running;

  const s = await openInjection(vm, { pid }, { journal: dir, timeout: 30_000 });
  t.equal(await s.getpid(), pid, 'the session works');
  const journal = s.journalPath!;
  // as `virsh resume` would: another QMP client's cont, and a stop later
  await vm.qmp!.execute('cont');
  await new Promise((r) => setTimeout(r, 500));
  await vm.qmp!.execute('stop');
  const err = await s.getpid().then(() => null, (e: unknown) => e);
  t.ok(err instanceof InjectionError && err.state === 'unknown', `the next call fails, state unknown: ${(err as Error)?.message}`);
  t.match((err as Error)?.message ?? '', /is not as vmictl left it .*behind vmictl's back/, 'saying the VM ran behind its back');
  t.match((err as Error)?.message ?? '', /left stopped for 'vmictl recover'/, 'and that the VM is left stopped for recover');
  await s.close().catch(() => undefined);
  t.equal(s.leftState, 'unknown', 'the session ends in the unknown state');
  t.notOk(await running(), 'the VM is stopped');
  t.ok(existsSync(journal), 'the journal is kept');
  const outcomes = await recoverAll(vm, { dir, force: true, timeout: 10_000 });
  t.notOk(outcomes.some((o) => o.action === 'failed'), `recover: ${outcomes.map((o) => `${o.action} (${o.detail})`).join('; ')}`);
  t.ok(await running(), 'the VM runs again');
});
