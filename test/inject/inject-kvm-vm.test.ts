/**
 * Syscall injection under KVM: the test VM booted with -accel kvm, the core checks of
 * inject-vm.test.ts against the guest's own answers (getpid in the container's pid namespace,
 * uname's hostname, openat+read of /etc/hostname, getdents64 of /), and the limit KVM puts on
 * hardware breakpoints (4 debug registers): the engine's own stay within it, and the stub really
 * refuses a fifth.
 *
 * Where KVM is not usable the test is skipped with the reason: no /dev/kvm, /dev/kvm that cannot be
 * opened, or a guest not ready within VMICTL_KVM_READY_TIMEOUT seconds (default 45: a KVM boot takes
 * a few seconds; nested KVM, as on this project's CI machine, takes far longer, and the bounded boot
 * keeps the skip short).
 */
import t from 'tap';
import { closeSync, existsSync, openSync, constants } from 'node:fs';
import { Vm } from '../../lib/vm';
import { openInjection } from '../../lib/inject';
import { GdbBreakpointError } from '../../lib/transport/gdb';
import { bootVm, guestRun, readGroundTruth, skipWithReason, vmUnavailableReason, type VmEnv } from '../helpers/vm';

const READY_TIMEOUT = Number(process.env.VMICTL_KVM_READY_TIMEOUT ?? 45);

/** Why KVM cannot be used here, or null. */
function kvmUnusableReason(): string | null {
  if (!existsSync('/dev/kvm')) return 'no /dev/kvm on this machine';
  try {
    closeSync(openSync('/dev/kvm', constants.O_RDWR));
  } catch (err) {
    return `/dev/kvm cannot be opened: ${(err as Error).message}`;
  }
  return null;
}

t.test('syscall injection under KVM', async (t) => {
  const noVm = vmUnavailableReason();
  if (noVm) return skipWithReason(t, `no test VM: ${noVm}`);
  const noKvm = kvmUnusableReason();
  if (noKvm) return skipWithReason(t, `KVM is not usable: ${noKvm}`);
  let env: VmEnv | null;
  const started = Date.now();
  try {
    env = await bootVm(t, { env: { ACCEL: 'kvm', READY_TIMEOUT: String(READY_TIMEOUT) } });
  } catch (err) {
    const said = String((err as { stderr?: string }).stderr ?? (err as Error).message).split('\n');
    const tail = said.find((l) => /did not become ready|not usable|error/i.test(l))?.trim() ?? said.find((l) => l.trim())?.trim() ?? '';
    return skipWithReason(t, `KVM is not usable: the test VM under -accel kvm was not ready within ${READY_TIMEOUT} s (nested KVM is too slow for this test) [${tail}]`);
  }
  if (!env) return;
  t.comment(`booted under KVM in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  const gt = readGroundTruth(env.groundTruthFile);
  const ticker = gt.containers.find((c) => c.name === 'ticker');
  t.ok(ticker, 'the ground truth has the ticker container');

  const inside = await guestRun(env, 'runc exec ticker cat /etc/hostname');
  const ls = await guestRun(env, 'runc exec ticker ls -a /');
  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm.close());
  const kvm = (await vm.qmp!.execute('query-kvm')) as { enabled: boolean };
  t.ok(kvm.enabled, 'QEMU says KVM is enabled');

  const s = await openInjection(vm, { container: 'ticker' }, { journal: false, timeout: 20_000 });
  try {
    const truth = gt.tasks.find((x) => x.pid === s.target.pid);
    t.ok(truth, `the target (host pid ${s.target.pid}) is a guest task`);
    t.equal(await s.getpid(), truth?.nspid, 'getpid() answers the pid in the container namespace');
    t.equal((await s.uname()).nodename, ticker?.hostname, 'uname().nodename is the container hostname');
    t.equal((await s.readFile('/etc/hostname')).toString('utf8'), inside.output.replace(/\r\n/g, '\n'), 'openat+read of /etc/hostname gives the container file');
    const names = (await s.listDirectory('/')).map((e) => e.name).sort();
    const expected = ls.output.split(/\s+/).filter((n) => n && n !== '.' && n !== '..').sort();
    t.same(names, expected, 'getdents64 of / lists what ls -a inside the container lists');
    for (let i = 0; i < 20; i++) await s.syscall('getpid');
    t.comment(`acquired in ${s.stats.acquireMs} ms; ${s.stats.syscalls} syscalls in ${s.stats.syscallMs} ms; ${s.stats.stepOvers} step-overs`);

    // the debug registers: the engine's breakpoints plus ours never get past 4
    const mine = s.breakpoints.length;
    t.ok(mine >= 1 && mine <= 4, `the engine holds ${mine} hardware breakpoint(s), within the 4 debug registers`);
    const gdb = await vm.gdb();
    const extra: bigint[] = [];
    let refused: unknown;
    for (let i = 0; i < 5 && !refused; i++) {
      const at = s.returnAddress + 0x100n + BigInt(i) * 0x10n;
      try {
        await gdb.insertBreakpoint(1, at, 1, { timeout: 10_000 });
        extra.push(at);
      } catch (err) {
        refused = err;
      }
    }
    for (const at of extra) await gdb.removeBreakpoint(1, at, 1, { timeout: 10_000 });
    t.ok(refused instanceof GdbBreakpointError, `KVM refuses a hardware breakpoint beyond the debug registers (${(refused as Error)?.message})`);
    t.ok(mine + extra.length <= 4, `at most 4 hardware breakpoints were ever in place (${mine} of the engine + ${extra.length} of the test)`);
    t.equal(await s.getpid(), truth?.nspid, 'injection still works after the refusal');
  } finally {
    await s.close();
  }
  t.equal(s.leftState, 'restored', 'the target is restored');
  t.same(s.breakpoints, [], 'no breakpoint is left inserted');
  t.ok(((await vm.qmp!.execute('query-status')) as { running: boolean }).running, 'the VM runs again');
});
