/**
 * A vmictl that is killed in the middle of an injection, for the recovery tests: it opens a session
 * in the ticker container, runs a few syscalls, prints `READY <journal>` and then either waits with
 * the target stopped (`park`), runs an injected nanosleep of N seconds (`sleep:N`) or an injected
 * pause() that never ends (`pause`), or forks a child (vfork) that makes one call and waits parked
 * (`child`), until killed. `wake` instead opens an injection into the web
 * container, whose only process sleeps in accept, and stops dead (READY <cgroup>) once the
 * acquisition has frozen web's cgroup to wake it.
 * Usage: hold-injection.ts QMP GDB JOURNAL_DIR MODE [CONTAINER] (ticker unless named)
 */
import { writeSync } from 'node:fs';
import { Vm } from '../../../lib/vm';
import { openInjection, vfork } from '../../../lib/inject';

async function main(): Promise<void> {
  const [qmp, gdb, dir, mode, container = 'ticker'] = process.argv.slice(2);
  if (!mode) {
    // run by a test runner that was given the whole directory: not a test
    process.stdout.write('1..0 # a helper of inject-vm.test.ts, not a test\n');
    return;
  }
  const vm = await Vm.connect({ qmp, gdb });
  if (mode === 'wake') {
    // the web container's httpd sleeps in accept for good: it is woken by a freeze of its
    // cgroup; stop dead while that cgroup is frozen, to be killed there
    await openInjection(vm, { container: 'web' }, {
      journal: dir, timeout: 60_000, wake: 'freeze',
      onWake: (cgroup) => {
        writeSync(1, `READY ${cgroup}\n`);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
      },
    });
    throw new Error('the acquisition ended without waking web');
  }
  const s = await openInjection(vm, { container }, { journal: dir, timeout: 30_000, callTimeout: 120_000 });
  await s.getpid();
  await s.uname();
  if (mode === 'child') {
    await vfork(s, s.engine, async (child) => {
      await child.getpid();
      process.stdout.write(`READY ${s.journalPath}\n`);
      await new Promise(() => undefined);
    });
  }
  process.stdout.write(`READY ${s.journalPath}\n`);
  const sleep = /^sleep:(\d+)$/.exec(mode ?? '');
  if (sleep) {
    const ts = Buffer.alloc(16);
    ts.writeBigInt64LE(BigInt(sleep[1]), 0);
    await s.syscallWith('nanosleep', [{ in: ts }, 0n]);
  }
  if (mode === 'pause') await s.syscall('pause');
  await new Promise(() => undefined);
}

main().catch((err) => {
  process.stderr.write(`hold-injection: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
