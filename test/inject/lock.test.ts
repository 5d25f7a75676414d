/**
 * One injector per VM: the lock file (keyed by the QMP socket's inode) is shared by the sessions
 * of one process, refuses another live process before the VM is touched (checked on the bytes a
 * fake QMP server receives), and is taken over from an owner that is gone.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { InjectorBusyError, lockVm, openInjection } from '../../lib/inject';
import { lockPathFor } from '../../lib/inject/lock';
import { FakeQmpServer } from '../helpers/fake-qmp';

const root = mkdtempSync(join(tmpdir(), 'vmictl-lock-test-'));
const saved = process.env.XDG_RUNTIME_DIR;
process.env.XDG_RUNTIME_DIR = root;
t.teardown(() => {
  if (saved === undefined) delete process.env.XDG_RUNTIME_DIR;
  else process.env.XDG_RUNTIME_DIR = saved;
  rmSync(root, { recursive: true, force: true });
});

t.test('the lock of one VM', async (t) => {
  const server = await FakeQmpServer.start();
  t.teardown(() => server.close());
  const qmp = server.address;
  const path = lockPathFor(qmp);
  const other = qmp.replace(/\/qmp\.sock$/, '/./qmp.sock');
  t.not(other, qmp);
  t.equal(lockPathFor(other), path, 'two spellings of one socket path share the lock');

  const a = lockVm(qmp);
  const b = lockVm(other);
  t.ok(existsSync(path), 'held');
  a();
  t.ok(existsSync(path), 'still held by the second session of this process');
  b();
  t.notOk(existsSync(path), 'released by the last');

  const alive = spawn('sleep', ['60']);
  t.teardown(() => alive.kill());
  writeFileSync(path, `${alive.pid}\n`);
  t.throws(() => lockVm(qmp), InjectorBusyError, 'a live owner in another process keeps it');
  const vm = await Vm.connect({ qmp });
  t.teardown(() => vm.close());
  const conn = await server.connection();
  const err = await openInjection(vm, { container: 'ticker' }, { journal: join(root, 'j') }).catch((e: unknown) => e);
  t.ok(err instanceof InjectorBusyError, 'openInjection is refused');
  t.match((err as Error).message, `pid ${alive.pid}`, 'naming the other vmictl');
  t.notMatch(conn.received, /"stop"|query-status/, 'before the VM is touched');

  writeFileSync(path, `${spawnSync('true').pid}\n`);
  const c = lockVm(qmp);
  t.ok(existsSync(path), 'an owner that is gone loses it');
  c();
});
