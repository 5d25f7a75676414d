/**
 * A session that cannot put its thread back (here: the parked vCPU made to look like kernel mode
 * behind the engine's back, as another gdbstub user could) leaves the VM stopped and the journal
 * in place, saying so and naming `vmictl recover`, instead of letting the thread run its own code
 * with injected registers. Once the vCPU is as it was, recover restores the target and the
 * ticker counts again (checked from inside the guest).
 */
import t from 'tap';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { InjectionError } from '../../lib/errors';
import { openInjection, recoverAll } from '../../lib/inject';
import { guestRun, testVm } from '../helpers/vm';

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
