/**
 * Syscall injection against the real test VM, compared with what the guest says about itself:
 * getpid in a container answers the pid its namespace gives the target, uname the container's
 * hostname, openat+read of /etc/hostname the container's file, getdents64 its root directory. The
 * target keeps running unharmed afterwards (the ticker's counter goes on), the breakpoint is gone,
 * the VM runs, the journal is removed; an abort in the middle of a sequence, and a target that
 * never comes back from its syscall, leave the guest running too.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { AbortError } from '../../lib/errors';
import { AcquireTimeoutError, openInjection, recoverAll, SyscallError, TargetGoneError } from '../../lib/inject';
import { guestRun, readGroundTruth, testVm, type VmEnv } from '../helpers/vm';
import { killMidInjection } from '../helpers/kill-mid-injection';

const journalDir = mkdtempSync(join(tmpdir(), 'vmictl-journal-'));
t.teardown(() => rmSync(journalDir, { recursive: true, force: true }));

async function counter(env: VmEnv): Promise<number> {
  // the ticker rewrites the file in place: an empty read caught it in between, read again
  for (let i = 0; ; i++) {
    const r = await guestRun(env, 'runc exec ticker cat /tmp/counter');
    if (r.output.trim() !== '' || i >= 5) return Number(r.output.trim() || NaN);
  }
}

/** The ticker's counter goes up over a second: its shell loop runs (and so does the VM). */
async function tickerAlive(t: Test, env: VmEnv, what: string): Promise<void> {
  const a = await counter(env);
  await new Promise((r) => setTimeout(r, 1000));
  const b = await counter(env);
  t.ok(Number.isFinite(a) && Number.isFinite(b) && b > a, `${what}: the ticker's counter keeps increasing (${a} → ${b})`);
}

async function vmRunning(vm: Vm): Promise<boolean> {
  return ((await vm.qmp!.execute('query-status')) as { running: boolean }).running;
}

t.test('syscall injection into containers of the test VM', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');
  const gt = readGroundTruth(env.groundTruthFile);

  for (const returnBy of ['auto', 'breakpoint'] as const) await t.test(`getpid, uname, openat+read, getdents64 in ticker (returnBy: ${returnBy})`, async (t) => {
    // what the guest itself says, asked while it runs (a session keeps the VM stopped)
    const inside = await guestRun(env, 'runc exec ticker cat /etc/hostname');
    const ls = await guestRun(env, 'runc exec ticker ls -a /');
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    const s = await openInjection(vm, { container: 'ticker' }, { journal: journalDir, timeout: 20_000, returnBy });
    let journal: string | undefined;
    try {
      journal = s.journalPath;
      if (returnBy === 'breakpoint' || (await vm.accelerator()) === 'kvm') {
        t.equal(s.returnBy, 'breakpoint', 'calls come back by the breakpoint at R');
        t.same(s.breakpoints, [s.returnAddress], 'which stays inserted');
      } else {
        // the ticker's busybox has syscall wrappers ending in `syscall; ret`
        t.equal(s.returnBy, 'watchpoint', 'under TCG calls come back by a read watchpoint');
        const gadget = await s.engine.space.read(s.gadget!, 3);
        t.equal(gadget.toString('hex'), '0f05c3', 'the gadget is a syscall; ret of the target');
        t.same(s.watchpoints, [s.callSp - 8n], 'on the slot below the data area');
        t.same(s.breakpoints, [], 'and no breakpoint at R between calls (a watch hit landing on one leaves a stop pending)');
      }
      t.ok(journal && existsSync(journal), 'a journal is written before the first register changes');
      const truth = gt.tasks.find((x) => x.pid === s.target.pid);
      t.ok(truth, `the target (host pid ${s.target.pid}) is a guest task`);
      t.equal(truth?.cgroup, gt.containers.find((c) => c.name === 'ticker')?.cgroup, 'the target is in the ticker container');

      const pid = await s.getpid();
      t.equal(pid, truth?.nspid, `getpid() answers the pid in the container's namespace (${truth?.nspid}), not the host pid`);
      t.equal(Number(await s.syscall('gettid')), truth?.nspid, 'raw gettid through syscall() by name');

      const u = await s.uname();
      t.equal(u.nodename, gt.containers.find((c) => c.name === 'ticker')?.hostname, 'uname().nodename is the container hostname');
      t.equal(u.sysname, 'Linux');
      t.equal(u.release, gt.kernel.release, 'uname().release is the running kernel');

      const file = await s.readFile('/etc/hostname');
      t.equal(file.toString('utf8'), inside.output.replace(/\r\n/g, '\n'), 'openat+read of /etc/hostname gives the container file');

      const names = (await s.listDirectory('/')).map((e) => e.name);
      for (const want of ['bin', 'etc', 'workload.sh']) t.ok(names.includes(want), `getdents64 of / lists ${want}`);
      const expected = ls.output.split(/\s+/).filter((n) => n && n !== '.' && n !== '..').sort();
      t.same([...names].sort(), expected, 'getdents64 of / lists what ls -a inside the container lists');

      const err = await s.openat(-100, '/no/such/file').then(() => null, (e: unknown) => e);
      t.ok(err instanceof SyscallError, 'a failing syscall is a SyscallError');
      t.equal((err as SyscallError).errnoName, 'ENOENT', 'with the errno name');
      t.equal(await s.syscall('close', 9999n), -9n, 'raw syscall() returns -errno (EBADF)');

      const chain = 50;
      const started = Date.now();
      for (let i = 0; i < chain; i++) await s.syscall('getpid');
      t.comment(`${chain} injected getpid: ${((Date.now() - started) / chain).toFixed(1)} ms each; acquired in ${s.stats.acquireMs} ms; ${s.stats.stepOvers} step-overs`);
    } finally {
      await s.close();
    }
    t.equal(s.leftState, 'restored', 'the target is restored');
    t.same(s.breakpoints, [], 'no breakpoint is left inserted');
    t.same(s.watchpoints, [], 'no watchpoint is left');
    t.notOk(journal && existsSync(journal), 'the journal is removed');
    t.ok(await vmRunning(vm), 'the VM runs again after the session');
    await tickerAlive(t, env, 'after the session');
  });

  await t.test('a second session on the same connection, and uname in another container', async (t) => {
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    for (let i = 0; i < 2; i++) {
      const s = await openInjection(vm, { container: 'nested' }, { journal: journalDir, timeout: 20_000 });
      try {
        t.equal((await s.uname()).nodename, 'nested', `session ${i + 1}: uname in nested`);
        const truth = gt.tasks.find((x) => x.pid === s.target.pid);
        t.equal(await s.getpid(), truth?.nspid, `session ${i + 1}: getpid in a nested pid namespace is the innermost pid`);
      } finally {
        await s.close();
      }
      t.ok(await vmRunning(vm), `session ${i + 1}: VM running afterwards`);
    }
  });

  await t.test('abort in the middle of a sequence', async (t) => {
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    const ac = new AbortController();
    const s = await openInjection(vm, { container: 'ticker' }, { journal: journalDir, signal: ac.signal, timeout: 20_000 });
    const journal = s.journalPath;
    let done = 0;
    setTimeout(() => ac.abort(new Error('test abort')), 400).unref();
    const err = await (async () => {
      for (;;) {
        await s.getpid();
        done++;
      }
    })().then(() => null, (e: unknown) => e);
    t.ok(err instanceof AbortError, `the sequence ends with an AbortError after ${done} calls`);
    t.ok(s.closed, 'the session is over');
    t.equal(s.leftState, 'restored', 'the target was restored');
    t.same(s.breakpoints, [], 'no breakpoint left');
    t.same(s.watchpoints, [], 'no watchpoint left');
    t.notOk(journal && existsSync(journal), 'journal removed');
    await s.close();
    t.ok(await vmRunning(vm), 'the VM runs');
    await tickerAlive(t, env, 'after the abort');
  });

  await t.test('a target that never comes back from its syscall', async (t) => {
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    // the tree container's shell waits for children that sleep for days
    const err = await openInjection(vm, { container: 'tree' }, { journal: journalDir, timeout: 1500 }).then(() => null, (e: unknown) => e);
    t.ok(err instanceof AcquireTimeoutError, 'a typed timeout error');
    t.match((err as Error).message, /sh|sleep/, 'naming the processes tried');
    t.equal((err as AcquireTimeoutError).state, 'untouched', 'nothing was changed');
    t.ok(await vmRunning(vm), 'the VM runs');
    t.same(readdirSync(journalDir), [], 'no journal left behind');
    await tickerAlive(t, env, 'after the timeout');
  });

  await t.test('large buffers go to a scratch mapping that is unmapped at the end', async (t) => {
    const pid = gt.containers.find((c) => c.name === 'ticker')!.initPid;
    const before = await guestRun(env, `cat /proc/${pid}/maps`);
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    const s = await openInjection(vm, { pid }, { journal: journalDir, timeout: 20_000 });
    try {
      const fd = await s.openat(-100, '/bin/busybox');
      const data = await s.read(fd, 100_000);
      await s.closeFd(fd);
      t.equal(data.length, 100_000, 'a 100 000-byte read in one call');
      t.same(data.subarray(0, 4), Buffer.from('\x7fELF', 'latin1'), 'the file read is an ELF executable');
    } finally {
      await s.close();
    }
    t.equal(s.leftState, 'restored');
    const after = await guestRun(env, `cat /proc/${pid}/maps`);
    t.equal(after.output, before.output, "the target's memory map is as before (the scratch mapping is gone)");
  });

  await t.test('a server blocked in accept for good, reached by freezing and thawing its cgroup', async (t) => {
    const web = gt.containers.find((c) => c.hostname === 'web')!;
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    const s = await openInjection(vm, { container: 'web' }, { journal: journalDir, timeout: 30_000, wake: 'freeze' });
    try {
      t.equal(s.target.pid, web.initPid, 'the target is httpd');
      t.equal(s.caughtAt, s.returnAddress - 2n, 'caught at its syscall instruction, on the way to restart accept');
      t.equal((await s.uname()).nodename, web.hostname, 'uname in web');
      t.equal(await s.getpid(), 1, 'getpid in web');
    } finally {
      await s.close();
    }
    t.equal(s.leftState, 'restored');
    const events = await guestRun(env, `cat /sys/fs/cgroup${web.cgroup}/cgroup.events`);
    t.match(events.output, /^frozen 0$/m, 'the cgroup is thawed');
    const served = await guestRun(env, `nsenter -t ${web.initPid} -n wget -q -O - http://127.0.0.1/index.html`);
    t.equal(served.output.trim(), 'hello from the web container', 'httpd still serves (its accept was restarted)');
    const open = await guestRun(env, "ls -l /proc/[0-9]*/fd/ 2>/dev/null | grep -c 'cgroup[.]freeze'");
    t.equal(open.output.trim(), '0', 'no process keeps cgroup.freeze open (the helper closed its descriptor)');
  });

  await t.test('an acquisition cut short after it froze the cgroup leaves the cgroup thawed', async (t) => {
    const web = gt.containers.find((c) => c.hostname === 'web')!;
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    const ac = new AbortController();
    let woke = '';
    const opening = openInjection(vm, { container: 'web' }, { journal: journalDir, timeout: 30_000, wake: 'freeze', signal: ac.signal, onWake: (cg) => { woke = cg; ac.abort(new Error('cut short by the test')); } });
    await t.rejects(opening, 'the acquisition fails');
    t.equal(woke, web.cgroup, 'it had frozen the container to wake httpd');
    const events = await guestRun(env, `cat /sys/fs/cgroup${web.cgroup}/cgroup.events`);
    t.match(events.output, /^frozen 0$/m, 'the cgroup is thawed');
    const served = await guestRun(env, `nsenter -t ${web.initPid} -n wget -q -O - http://127.0.0.1/index.html`);
    t.equal(served.output.trim(), 'hello from the web container', 'httpd still serves');
    t.equal((await vm.qmp!.execute('query-status') as { running: boolean }).running, true, 'the VM runs');
  });

  await t.test('the target killed from inside the guest during a blocking injected syscall', async (t) => {
    const start = await guestRun(env, "runc exec -d ticker /bin/sh -c 'mkfifo /tmp/victim.fifo; while :; do read -t 0.05 x <> /tmp/victim.fifo; done'");
    t.equal(start.status, 0, 'a victim process started in ticker');
    let pid = 0;
    for (let i = 0; i < 50 && !pid; i++) {
      // [.] keeps this command's own shell from matching
      const r = await guestRun(env, "for p in $(pidof sh); do grep -q 'victim[.]fifo' /proc/$p/cmdline 2>/dev/null && echo $p; done");
      pid = Number(r.output.trim().split(/\s+/)[0]) || 0;
      if (!pid) await new Promise((r) => setTimeout(r, 200));
    }
    t.ok(pid > 0, `victim pid ${pid}`);
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    const s = await openInjection(vm, { pid }, { journal: journalDir, timeout: 20_000, callTimeout: 60_000 });
    const journal = s.journalPath;
    const ts = Buffer.alloc(16);
    ts.writeBigInt64LE(30n, 0);
    const call = s.syscallWith('nanosleep', [{ in: ts }, 0n]).then(() => null, (e: unknown) => e);
    await new Promise((r) => setTimeout(r, 1500));
    await guestRun(env, `kill -9 ${pid}`);
    const started = Date.now();
    const err = await call;
    t.ok(err instanceof TargetGoneError, `the call ends with TargetGoneError (${(err as Error)?.message})`);
    t.ok(Date.now() - started < 15_000, 'soon after the kill');
    t.ok(s.closed, 'the session is over');
    t.same(s.breakpoints, [], 'no breakpoint left');
    t.same(s.watchpoints, [], 'no watchpoint left');
    t.notOk(journal && existsSync(journal), 'no journal left');
    t.ok(await vmRunning(vm), 'the VM runs');
    await tickerAlive(t, env, 'after the victim was killed');
  });

  await t.test('injections into a canary that receives signals all the time', async (t) => {
    // the canary counts, and has a trap for USR1 (a real handler in the shell); a second process
    // sends it USR1 every 20 ms
    // (single-quoted for the control shell; the trap's \$ is expanded when the trap runs, not when set)
    const canary = 'trap "s=\\$((s+1))" USR1; mkfifo /tmp/canary.fifo; n=0; s=0; while :; do read -t 0.05 x <> /tmp/canary.fifo; n=$((n+1)); echo $n $s > /tmp/canary.new; mv /tmp/canary.new /tmp/canary; done';
    t.equal((await guestRun(env, `runc exec -d ticker /bin/sh -c '${canary}'`)).status, 0, 'canary started');
    let pid = 0;
    for (let i = 0; i < 50 && !pid; i++) {
      const r = await guestRun(env, "for p in $(pidof sh); do grep -q 'canary[.]fifo' /proc/$p/cmdline 2>/dev/null && echo $p; done");
      pid = Number(r.output.trim().split(/\s+/)[0]) || 0;
      if (!pid) await new Promise((r) => setTimeout(r, 200));
    }
    t.ok(pid > 0, `canary pid ${pid}`);
    t.teardown(() => guestRun(env, `kill -9 ${pid}; kill $(cat /run/canary-signaller.pid) 2>/dev/null; true`));
    await guestRun(env, `(while kill -USR1 ${pid} 2>/dev/null; do usleep 20000; done) </dev/null >/dev/null 2>&1 & echo $! > /run/canary-signaller.pid`);
    const read = async () => {
      const [n, sig] = (await guestRun(env, `cat /proc/${pid}/root/tmp/canary`)).output.trim().split(/\s+/).map((x) => Number(x || NaN));
      return { n, sig };
    };
    const before = await read();
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    let calls = 0;
    let interrupted = 0;
    const wrong: number[] = [];
    const wrongSleeps: bigint[] = [];
    // 1000 injections in 10 sessions (a new catch each time: in and out of the canary's read)
    for (let session = 0; session < 10; session++) {
      const s = await openInjection(vm, { pid }, { journal: journalDir, timeout: 20_000 });
      try {
        for (let i = 0; i < 100; i++) {
          const got = await s.getpid();
          if (got !== s.target.nspid) wrong.push(got);
          calls++;
          if (i % 10 === 0) {
            // a 30 ms sleep that a signal may cut short: -EINTR after the shell's handler ran
            const ts = Buffer.alloc(16);
            ts.writeBigInt64LE(30_000_000n, 8);
            const { result } = await s.syscallWith('nanosleep', [{ in: ts }, 0n]);
            if (result !== 0n && result !== -4n) wrongSleeps.push(result);
            if (result === -4n) interrupted++;
          }
        }
      } finally {
        await s.close();
      }
      t.equal(s.leftState, 'restored', `session ${session + 1} restored`);
    }
    t.same(wrong, [], `every one of ${calls} injected getpid answered the canary's pid`);
    t.same(wrongSleeps, [], 'every injected nanosleep answered 0 or -EINTR');
    t.comment(`${calls} injected getpid, ${interrupted} injected nanosleeps cut short by a signal`);
    await new Promise((r) => setTimeout(r, 1500));
    const after = await read();
    t.ok(after.n > before.n, `the canary keeps counting (${before.n} → ${after.n})`);
    t.ok(after.sig > before.sig, `and keeps taking its signals in its own handler (${before.sig} → ${after.sig})`);
    const state = await guestRun(env, `cat /proc/${pid}/stat | cut -d' ' -f3`);
    t.match(state.output.trim(), /^[SR]$/, 'the canary is alive (sleeping or running)');

    // the gdbstub connection dropped in the middle of a sequence of injections into the canary
    // (QEMU serves one QMP client at a time: each Vm below has the socket to itself)
    await vm.close();
    const dir = mkdtempSync(join(tmpdir(), 'vmictl-drop-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const vm2 = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm2.close());
    const s = await openInjection(vm2, { pid }, { journal: dir, timeout: 20_000 });
    const gdb = await vm2.gdb();
    let done = 0;
    setTimeout(() => void gdb.close(), 700).unref();
    const err = await (async () => {
      for (;;) {
        await s.getpid();
        done++;
      }
    })().then(() => null, (e: unknown) => e);
    t.ok(err instanceof Error, `the sequence fails when the connection drops, after ${done} calls (${(err as Error)?.message})`);
    t.equal(s.leftState, 'unknown', 'the session says the target could not be restored');
    t.equal(readdirSync(dir).length, 1, 'its journal is kept');
    await vm2.close();
    const vm3 = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm3.close());
    // (a drop while the VM ran: QEMU stops it at the next hit of the breakpoint it keeps)
    let stopped = false;
    for (let i = 0; i < 50 && !stopped; i++) {
      stopped = !(await vmRunning(vm3));
      if (!stopped) await new Promise((r) => setTimeout(r, 100));
    }
    t.ok(stopped, 'the VM is left stopped (the canary must not run with injected registers)');
    const outcomes = await recoverAll(vm3, { dir, timeout: 30_000, force: true });
    t.equal(outcomes[0]?.action, 'restored', `recover puts the canary back: ${outcomes[0]?.detail}`);
    t.same(readdirSync(dir), [], 'the journal is removed');
    t.ok(await vmRunning(vm3), 'the VM runs');
    const before2 = await read();
    await new Promise((r) => setTimeout(r, 1500));
    const after2 = await read();
    t.ok(after2.n > before2.n && after2.sig > before2.sig, `after the drop and recover the canary counts and takes its signals (${before2.n} → ${after2.n}, ${before2.sig} → ${after2.sig})`);
    const s2 = await openInjection(vm3, { pid }, { journal: journalDir, timeout: 20_000 });
    try {
      t.equal(await s2.getpid(), s2.target.nspid, 'and answers injected syscalls again');
    } finally {
      await s2.close();
    }
  });

  for (const [mode, what] of [['park', 'with the target stopped between two syscalls'], ['sleep:6', 'while the target is inside a blocking injected syscall']] as const) {
    await t.test(`kill -9 of vmictl ${what}, then recover`, async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'vmictl-recover-'));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      const journal = await killMidInjection(env, dir, mode, 1500);
      t.ok(existsSync(journal), 'the killed vmictl left its journal');
      const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
      t.teardown(() => vm.close());
      const outcomes = await recoverAll(vm, { dir, timeout: 30_000 });
      t.equal(outcomes.length, 1, 'one injection to recover');
      t.equal(outcomes[0]?.action, 'restored', `recovered: ${outcomes[0]?.detail}`);
      t.same(readdirSync(dir), [], 'the journal is removed');
      t.ok(await vmRunning(vm), 'the VM runs');
      await vm.close();
      await tickerAlive(t, env, `after recovery (${mode})`);
      // a new session works: the breakpoint of the dead vmictl is gone too
      const vm2 = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
      t.teardown(() => vm2.close());
      const s = await openInjection(vm2, { container: 'ticker' }, { journal: dir, timeout: 20_000 });
      try {
        t.equal((await s.uname()).nodename, 'ticker', 'the target answers injected syscalls again');
      } finally {
        await s.close();
      }
    });
  }
});
