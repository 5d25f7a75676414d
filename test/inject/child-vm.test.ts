/**
 * Child processes of a hijacked thread, against the real test VM: vm.inject() with `await using`,
 * a vforked child caught at its first instruction and driven on its own (its pid, a file it
 * writes, its exit status reaped by the parent), a grandchild with CLONE_PARENT, a failure inside
 * the child's work (the child is made to exit, and reaped), a child stuck in a blocking read that
 * times out or is aborted (killed from a root-namespace helper, reaped), and the parent carrying on
 * unharmed.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { AbortError } from '../../lib/errors';
import { CLONE_PARENT, exitStatus, reapChild, vfork, type ChildProcess } from '../../lib/inject/child';
import { SyscallTimeoutError } from '../../lib/inject';
import { guestRun, testVm, type VmEnv } from '../helpers/vm';

const journal = mkdtempSync(join(tmpdir(), 'vmictl-journal-'));
t.teardown(() => rmSync(journal, { recursive: true, force: true }));

async function counter(env: VmEnv): Promise<number> {
  for (let i = 0; ; i++) {
    const r = await guestRun(env, 'runc exec ticker cat /tmp/counter');
    if (r.output.trim() !== '' || i >= 5) return Number(r.output.trim() || NaN);
  }
}

/** In the child: a pipe whose write end it keeps, and a read of it that never ends. */
async function readForever(child: ChildProcess): Promise<void> {
  const { out } = await child.syscallWith('pipe2', [{ out: 8 }, 0n]);
  const readEnd = out[0].readInt32LE(0);
  const [buf] = await child.place([16]);
  await child.syscall('read', BigInt(readEnd), buf, 1n);
}

/** Host pids of the processes whose parent is `pid`, zombies included. */
async function childrenOf(env: VmEnv, pid: number): Promise<string> {
  return (await guestRun(env, `grep -l '^PPid:[[:space:]]*${pid}$' /proc/[0-9]*/status 2>/dev/null | wc -l`)).output.trim();
}

t.test('vfork from an injection session', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');
  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm.close());

  await t.test('a child and a grandchild, driven on their own, exit codes reaped', async (t) => {
    let parentPid = 0;
    let childNsPid = 0;
    let grandchildNsPid = 0;
    let statuses: number[] = [];
    let target = 0;
    {
      await using s = await vm.inject({ container: 'ticker' }, { journal, timeout: 30_000, callTimeout: 30_000 });
      target = s.target.pid;
      parentPid = await s.getpid();
      const { pid, value } = await vfork(s, s.engine, async (child) => {
        childNsPid = Number(await child.call('getpid'));
        const fd = await child.openat(-100, '/tmp/child-was-here', 0o1 | 0o100 | 0o1000 | 0o2000000, 0o644);
        await child.write(fd, Buffer.from(`child ${childNsPid}\n`));
        await child.call('close', BigInt(fd));
        const g = await vfork(child, s.engine, async (grandchild) => {
          grandchildNsPid = Number(await grandchild.call('getpid'));
          t.equal(Number(await grandchild.call('getppid')), parentPid, 'CLONE_PARENT: the grandchild\'s parent is the session\'s process');
          await grandchild.exit(4);
        }, { flags: CLONE_PARENT });
        await child.exit(3);
        return g.pid;
      });
      await s.remakeScratchWritable();
      statuses = [(await reapChild(s, pid)).status, (await reapChild(s, value)).status];
      t.equal(await s.getpid(), parentPid, 'the parent answers injected syscalls after the children');
      t.equal((await s.uname()).nodename, 'ticker');
    }
    t.not(childNsPid, parentPid, `the child has a pid of its own (${childNsPid})`);
    t.ok(grandchildNsPid > 0 && grandchildNsPid !== childNsPid, `so has the grandchild (${grandchildNsPid})`);
    t.same(statuses.map(exitStatus), [3, 4], 'the parent reaps both, with their exit codes');
    const file = await guestRun(env, 'runc exec ticker cat /tmp/child-was-here');
    t.equal(file.output.trim(), `child ${childNsPid}`, 'the child wrote its file inside the container');
    await guestRun(env, 'runc exec ticker rm -f /tmp/child-was-here');
    const zombies = await guestRun(env, `grep -l '^PPid:[[:space:]]*${target}$' /proc/[0-9]*/status 2>/dev/null | wc -l`);
    t.equal(zombies.output.trim(), '0', 'the target has no child left (no zombie)');
    const a = await counter(env);
    await new Promise((r) => setTimeout(r, 1000));
    t.ok((await counter(env)) > a, 'the ticker keeps counting');
  });

  await t.test('a failure inside the child\'s work: the child exits 127 and is reaped', async (t) => {
    await using s = await vm.inject({ container: 'ticker' }, { journal, timeout: 30_000, callTimeout: 30_000 });
    let pid = 0;
    const err = await vfork(s, s.engine, async (child) => {
      await child.openat(-100, '/no/such/dir/file', 0);
    }, { onForked: (p) => { pid = p; } }).then(() => null, (e: unknown) => e);
    t.match((err as Error)?.message, /ENOENT/, 'the child\'s error comes out');
    t.ok(pid > 0, `the child (pid ${pid} in the container) was caught`);
    await s.remakeScratchWritable();
    const { status } = await reapChild(s, pid);
    t.equal(exitStatus(status), 127, 'it exited with 127');
    t.equal((await s.uname()).nodename, 'ticker', 'the parent carries on');
  });

  await t.test('a child stuck in a blocking read times out: it is killed, reaped, nothing is left', async (t) => {
    let target = 0;
    let pid = 0;
    let hostPid = 0;
    {
      await using s = await vm.inject({ container: 'ticker' }, { journal, timeout: 30_000, callTimeout: 3_000 });
      target = s.target.pid;
      const parentPid = await s.getpid();
      const err = await vfork(s, s.engine, readForever, { onChild: (p) => { hostPid = p; }, onForked: (p) => { pid = p; } }).then(() => null, (e: unknown) => e);
      t.ok(err instanceof SyscallTimeoutError, `the stuck read ends in a SyscallTimeoutError (${(err as Error)?.message})`);
      t.ok(pid > 0, `the parent's vfork came back with the child (pid ${pid} in the container, ${hostPid} on the host)`);
      await s.remakeScratchWritable();
      const { status } = await reapChild(s, pid);
      t.equal(exitStatus(status), 128 + 9, 'the child was killed by SIGKILL');
      t.equal(await s.getpid(), parentPid, 'the parent answers injected syscalls after it');
    }
    t.equal(await childrenOf(env, target), '0', 'the target has no child left (no zombie)');
    t.equal((await guestRun(env, `test -d /proc/${hostPid} && echo alive || echo gone`)).output.trim(), 'gone', 'the child is gone from the guest');
    const a = await counter(env);
    await new Promise((r) => setTimeout(r, 1000));
    t.ok((await counter(env)) > a, 'the ticker keeps counting');
  });

  await t.test('an abort between two calls of the child: it exits and vfork reaps it (no zombie)', async (t) => {
    const ac = new AbortController();
    const s = await vm.inject({ container: 'ticker' }, { journal, timeout: 30_000, callTimeout: 30_000, signal: ac.signal });
    const target = s.target.pid;
    let forked = 0;
    try {
      const err = await vfork(s, s.engine, async (child) => {
        await child.call('getpid');
        ac.abort(new Error('test abort'));
        await child.call('getpid');
      }, { onForked: (p) => { forked = p; } }).then(() => null, (e: unknown) => e);
      t.ok(err instanceof AbortError, `the child's work ends in an AbortError (${(err as Error)?.message})`);
      t.equal(forked, 0, 'the child is not handed to the caller to reap: vfork reaped it');
    } finally {
      await s.close();
    }
    t.equal(s.leftState, 'restored', 'the parent is restored');
    t.equal(await childrenOf(env, target), '0', 'the target has no child left (no zombie)');
  });

  await t.test('an abort while a child is stuck in a blocking read: killed and reaped by vfork, the parent restored', async (t) => {
    const ac = new AbortController();
    const s = await vm.inject({ container: 'ticker' }, { journal, timeout: 30_000, callTimeout: 60_000, signal: ac.signal });
    const target = s.target.pid;
    let hostPid = 0;
    let forked = 0;
    try {
      const err = await vfork(s, s.engine, async (child) => {
        setTimeout(() => ac.abort(new Error('test abort')), 1500).unref();
        await readForever(child);
      }, { onChild: (p) => { hostPid = p; }, onForked: (p) => { forked = p; } }).then(() => null, (e: unknown) => e);
      t.ok(err instanceof AbortError, `the stuck read ends in an AbortError (${(err as Error)?.message})`);
      t.equal(forked, 0, 'the child is not handed to the caller to reap: vfork reaped it');
    } finally {
      await s.close();
    }
    t.equal(s.leftState, 'restored', 'the parent is restored');
    t.same(s.breakpoints, [], 'no breakpoint left');
    t.same(s.watchpoints, [], 'no watchpoint left');
    t.ok(hostPid > 0, `the child (host pid ${hostPid}) had been caught`);
    t.equal(await childrenOf(env, target), '0', 'the target has no child left (no zombie)');
    t.equal((await guestRun(env, `test -d /proc/${hostPid} && echo alive || echo gone`)).output.trim(), 'gone', 'the child is gone from the guest');
    const a = await counter(env);
    await new Promise((r) => setTimeout(r, 1000));
    t.ok((await counter(env)) > a, 'the ticker keeps counting');
  });
});
