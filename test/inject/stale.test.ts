/**
 * A new injection does not start over a dead vmictl's unfinished one: openInjection finds this
 * VM's journals whose writer is gone and refuses, naming `vmictl recover`, before it stops the VM
 * (checked on the bytes a fake QMP server receives). Journals of another VM, or of a vmictl that
 * still runs, do not stop it.
 */
import t from 'tap';
import { spawnSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { openInjection, StaleInjectionError } from '../../lib/inject';
import { Journal, type JournalEntry } from '../../lib/inject/journal';
import { staleJournals } from '../../lib/inject/stale';
import { FakeQmpServer } from '../helpers/fake-qmp';

const root = mkdtempSync(join(tmpdir(), 'vmictl-stale-test-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

function entry(writer: number, qmp: string, pid = 42): JournalEntry {
  return {
    version: 1,
    createdAt: new Date(0).toISOString(),
    writer,
    qmp,
    target: { task: 'ffff888001234000', pid, tgid: pid, comm: 'sh' },
    returnAddress: '47cc80',
    callSp: '7ffd0000e000',
    vcpu: '01',
    registers: { rax: '0', rip: '47cc80', rsp: '7ffd0000f008', cr3: '1000' },
    restore: ['rax', 'rip', 'rsp'],
  };
}

/** The pid of a process that has exited (and been reaped). */
function deadPid(): number {
  return spawnSync('true').pid!;
}

t.test('openInjection refuses over a dead vmictl\'s journal of this VM', async (t) => {
  const server = await FakeQmpServer.start();
  t.teardown(() => server.close());
  const vm = await Vm.connect({ qmp: server.address });
  t.teardown(() => vm.close());
  const conn = await server.connection();
  const dir = mkdtempSync(join(root, 'j-'));

  const alive = spawn('sleep', ['60']);
  t.teardown(() => alive.kill());
  Journal.create(entry(alive.pid!, server.address, 1), dir);
  Journal.create(entry(deadPid(), 'unix:/elsewhere/qmp.sock', 2), dir);
  t.same(staleJournals(vm, dir), [], 'a live writer\'s journal and another VM\'s are not stale');

  const dead = Journal.create(entry(deadPid(), server.address, 3), dir);
  t.same(staleJournals(vm, dir), [dead.path], 'a dead writer\'s journal of this VM is');
  const err = await openInjection(vm, { container: 'ticker' }, { journal: dir }).catch((e: unknown) => e);
  t.ok(err instanceof StaleInjectionError, 'refused');
  t.equal((err as StaleInjectionError).code, 'ESTALE');
  t.match((err as Error).message, /vmictl recover/, 'naming vmictl recover');
  t.match((err as Error).message, dead.path);
  t.notMatch(conn.received, /"stop"/, 'the VM was not stopped');
  t.notMatch(conn.received, /query-status/, 'nor even looked at');
});
