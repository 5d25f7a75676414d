/**
 * An aborted cp against the real test VM: the abort comes after the first chunk of a 3 MiB file;
 * checked from inside the guest, every fd the copy opened in the container process (its root's
 * O_PATH fd, the file) is closed again, and on the host no partial or temporary file is left.
 */
import t from 'tap';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { AbortError } from '../../lib/errors';
import { copyFromContainer } from '../../lib/ops';
import { guestRun, testVm, type VmEnv } from '../helpers/vm';

const journal = mkdtempSync(join(tmpdir(), 'vmictl-cp-abort-journal-'));
const local = mkdtempSync(join(tmpdir(), 'vmictl-cp-abort-'));
t.teardown(() => {
  rmSync(journal, { recursive: true, force: true });
  rmSync(local, { recursive: true, force: true });
});

async function sh(env: VmEnv, cmd: string): Promise<string> {
  const r = await guestRun(env, cmd, 120_000);
  if (r.status !== 0) throw new Error(`guest command failed (${r.status}): ${cmd}\n${r.output}`);
  return r.output;
}

/** pid → number of open fds, for every process of the ticker container. */
async function tickerFds(env: VmEnv): Promise<Map<number, number>> {
  const out = await sh(env, 'for p in $(cat /sys/fs/cgroup/ticker/cgroup.procs); do echo "$p $(ls /proc/$p/fd 2>/dev/null | wc -l)"; done');
  return new Map(out.split('\n').filter(Boolean).map((l) => l.split(' ').map(Number) as [number, number]));
}

t.test('an aborted cp closes every fd it opened in the container', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');
  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm.close());
  const pid = Number(/"pid":\s*(\d+)/.exec(await sh(env, 'runc state ticker; echo'))![1]);
  await sh(env, `dd if=/dev/urandom of=/proc/${pid}/root/tmp/big bs=1M count=3 2>/dev/null`);
  t.teardown(() => sh(env, `rm -f /proc/${pid}/root/tmp/big`).catch(() => undefined));
  const before = await tickerFds(env);
  const ac = new AbortController();
  const err = await copyFromContainer(vm, 'ticker', '/tmp/big', join(local, 'big'), {
    journal, timeout: 60_000, callTimeout: 30_000, signal: ac.signal,
    onProgress: () => ac.abort(new Error('test abort')),
  }).then(() => null, (e: unknown) => e);
  t.ok(err instanceof AbortError, `the copy ends in an AbortError (${(err as Error)?.message})`);
  t.same(readdirSync(local), [], 'no partial or temporary file on the host');
  t.same([...(await tickerFds(env))].sort(), [...before].sort(), 'every container process has the fds it had before');
  t.same(readdirSync(journal), [], 'no journal left');
});
