/**
 * ps/top/inspect against the real test VM, compared with the ground truth the guest wrote about
 * itself at boot: every container, its hostname, init pid, processes (host and container pids),
 * namespace inodes and cgroup path; and the same from an ELF dump of the VM.
 */
import t from 'tap';
import { Vm } from '../../lib/vm';
import type { ContainerList } from '../../lib/containers/list';
import { compareWithGroundTruth } from '../helpers/ground-truth-compare';
import { dumpVm, guestRun, readGroundTruth, testVm } from '../helpers/vm';

t.test('containers read from outside match the ground truth', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  const gt = readGroundTruth(env.groundTruthFile);

  await t.test('live VM', async (t) => {
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    const list = await vm.listContainers();
    t.same(list.warnings, [], 'no warnings on a healthy guest');
    compareWithGroundTruth(t, gt, list, { root: true });
    t.equal(list.host.initPid, 1, 'the host row is headed by pid 1');
    t.notOk(list.host.pids.includes(0), 'the idle task (pid 0) is not listed, as in ps');
    const nested = list.containers.find((c) => c.hostname === 'nested')!;
    t.ok(nested.processes.some((p) => p.nspids.length === 3), 'the nested pid namespace is seen (three levels of pids)');
    const web = list.containers.find((c) => c.hostname === 'web')!;
    t.same(web.processes[0].cmdline, ['httpd', '-f', '-p', '80', '-h', '/www'], 'httpd command line from its own address space');
    t.equal(web.processes[0].exe, '/bin/busybox', 'executable path inside the container');
  });

  await t.test('a process started in a container after boot appears on the next ps', async (t) => {
    if (!env.control) return t.fail('the test VM has no control channel');
    // runc exec -d returns once runc's init runs; wait (bounded) until it has become the sleep
    const started = await guestRun(env, "runc exec -d ticker /bin/sleep 4242 && i=0 && while [ $i -lt 100 ] && ! (for p in $(pidof sleep); do tr '\\0' ' ' < /proc/$p/cmdline; echo; done | grep -q '^/bin/sleep 4242'); do sleep 0.1; i=$((i+1)); done");
    t.equal(started.status, 0, `runc exec inside the guest: ${started.output.trim()}`);
    t.teardown(() => guestRun(env, 'for p in $(pidof sleep); do grep -q 4242 /proc/$p/cmdline && kill $p; done; true'));
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    let list: ContainerList;
    try {
      list = await vm.listContainers();
    } finally {
      await vm.close();
    }
    const ticker = list.containers.find((c) => c.hostname === 'ticker')!;
    const sleeper = ticker.processes.find((p) => p.cmdline?.join(' ') === '/bin/sleep 4242');
    t.ok(sleeper, 'the new process is listed in its container');
    const inside = await guestRun(env, 'for p in $(pidof sleep); do grep -q 4242 /proc/$p/cmdline && echo $p; done');
    t.equal(sleeper?.pid, Number(inside.output.trim()), 'with the host pid the guest gives it');
  });

  await t.test('ELF dump of the VM', async (t) => {
    const file = await dumpVm(t, env);
    const vm = await Vm.connect({ dump: file });
    t.teardown(() => vm.close());
    compareWithGroundTruth(t, gt, await vm.listContainers(), { root: true });
  });
});
