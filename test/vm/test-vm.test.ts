import t from 'tap';
import { readGroundTruth, testVm, qemuCommandLine, skipWithReason } from '../helpers/vm';

t.test('the test VM runs its containers (ground truth from inside the guest)', async (t) => {
  const vm = await testVm(t);
  if (!vm) return;
  const gt = readGroundTruth(vm.groundTruthFile);
  t.match(gt.kernel.release, /-cloud-amd64$/, 'the Debian cloud kernel');
  t.match(gt.kernel.banner, /^Linux version /);
  t.ok(BigInt(gt.kernel.kallsyms._text) >= 0xffffffff80000000n, '_text is a kernel address');
  t.ok(BigInt(gt.kernel.kallsyms.init_task) > BigInt(gt.kernel.kallsyms._text), 'init_task lies above _text');

  t.equal(gt.containers.length, 4, 'four containers');
  const hostnames = gt.containers.map((c) => c.hostname).sort();
  t.same(hostnames, ['nested', 'ticker', 'tree', 'web'], 'distinct hostnames');
  t.same(gt.containers.map((c) => c.runtime).sort(), ['containerd', 'docker', 'podman', 'runc']);

  const init = gt.tasks.find((x) => x.pid === 1);
  t.ok(init, 'pid 1 is in the task list');
  if (!init) return;
  const byPid = new Map(gt.tasks.map((x) => [x.pid, x]));
  const pidNs = new Set<number>();
  const mntNs = new Set<number>();
  for (const c of gt.containers) {
    const task = byPid.get(c.initPid);
    t.ok(task, `${c.name}: its init pid ${c.initPid} is a task`);
    if (!task) continue;
    t.not(task.ns.pid, init.ns.pid, `${c.name}: its own pid namespace`);
    t.not(task.ns.mnt, init.ns.mnt, `${c.name}: its own mount namespace`);
    t.not(task.ns.uts, init.ns.uts, `${c.name}: its own uts namespace`);
    t.equal(task.nspid, 1, `${c.name}: its init is pid 1 inside`);
    t.equal(task.cgroup, c.cgroup, `${c.name}: cgroup path agrees`);
    pidNs.add(task.ns.pid);
    mntNs.add(task.ns.mnt);
  }
  t.equal(pidNs.size, 4, 'pid namespaces are distinct');
  t.equal(mntNs.size, 4, 'mount namespaces are distinct');

  const tree = gt.containers.find((c) => c.name === 'tree')!;
  const treeChildren = gt.tasks.filter((x) => x.ppid === tree.initPid);
  t.equal(treeChildren.length, 3, 'the process-tree container has a parent with three children');
  const nested = gt.tasks.filter((x) => x.nspids.length === 3);
  t.ok(nested.length >= 2, 'the kube container runs a nested pid namespace (pids at three levels)');
  t.ok(gt.tasks.some((x) => x.comm === 'busyd' && x.ns.pid === init.ns.pid), 'a root-namespace daemon runs');
  t.ok(gt.tasks.some((x) => x.comm === 'httpd'), 'httpd runs');
});

t.test('QEMU listens only on unix sockets or 127.0.0.1', async (t) => {
  const vm = await testVm(t);
  if (!vm) return;
  const argv = qemuCommandLine(vm.qmp);
  if (!argv) return skipWithReason(t, 'the VM was not started by test-vms/run.sh');
  const listening: string[] = [];
  for (let i = 0; i < argv.length - 1; i++) {
    if (['-qmp', '-gdb', '-monitor', '-chardev', '-serial'].includes(argv[i])) listening.push(argv[i + 1]);
  }
  t.ok(listening.some((s) => s.startsWith('unix:') && s.includes('qmp.sock')), 'QMP is on a unix socket');
  t.ok(argv.includes('-gdb'), 'a gdbstub is configured');
  for (const spec of listening) {
    if (spec.startsWith('chardev:')) {
      t.ok(argv.some((a) => a.includes(`id=${spec.slice(8)},`) || a.endsWith(`id=${spec.slice(8)}`)), `${spec} names a chardev defined (and checked) on the command line`);
    } else if (/^socket,/.test(spec)) {
      // -chardev socket,...: a unix socket when it has a path, else TCP that must name 127.0.0.1
      if (/(^|,)path=/.test(spec)) t.pass(`${spec} is a unix socket`);
      else t.match(spec, /(^|,)host=127\.0\.0\.1(,|$)/, `${spec} is bound to 127.0.0.1`);
    } else if (/^(tcp|telnet|websocket|udp):/.test(spec)) {
      t.match(spec, /^(tcp|telnet|websocket|udp):127\.0\.0\.1:/, `${spec} is bound to 127.0.0.1`);
    } else {
      t.match(spec, /^(unix:|file:|none$)/, `${spec} is a unix socket or a file`);
    }
  }
  t.notOk(argv.some((a) => /0\.0\.0\.0|::(,|$)/.test(a)), 'nothing is bound to all interfaces');
});
