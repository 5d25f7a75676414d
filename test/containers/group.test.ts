import t from 'tap';
import { groupContainers, derivedContainerId, MAX_WARNINGS } from '../../lib/containers/group';
import type { Container, Namespaces, ProcessInfo, TaskInfo } from '../../lib/containers/model';

// Namespace inodes: the init ones are the kernel's fixed PROC_*_INIT_INO values (mnt and net are allocated).
const ROOT: Namespaces = { pid: 4026531836, mnt: 4026531841, uts: 4026531838, net: 4026531840, ipc: 4026531839, cgroup: 4026531835, user: 4026531837, time: 4026531834 };

const KUBE_ID = '5293f1ed0f9ecd8b952b1d4875f940f00185b15ffdcf7f045c64caf1d9be5982';
const KUBE_CG = `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod6ddaedfc_c235_dff0_3f3f_b46179bfa2a0.slice/cri-containerd-${KUBE_ID}.scope`;
const TREE_ID = '4e702439403765df0972083beff1e6748cb50ce8f9348bd25ebc75d54933dbeb';
const WEB_ID = '99b23bdc2fce889f8749b6b1ece276dedd3ad4d0a33ac8c48208c709c5febbca';
const FROZEN_ID = 'f'.repeat(64);
const STOPPED_ID = 'a1'.repeat(32);
const PIDHOST_ID = 'b2'.repeat(32);

/** The namespaces of a container: every kind new (as runc makes them with the test VM's config) except user and time. */
function ctrNs(base: number): Namespaces {
  return { ...ROOT, pid: base + 1, mnt: base + 2, uts: base + 3, net: base + 4, ipc: base + 5, cgroup: base + 6 };
}

function proc(o: Partial<ProcessInfo> & { pid: number }): ProcessInfo {
  const comm = o.comm ?? 'proc';
  return {
    address: 0xffff888000000000n + BigInt(o.pid) * 0x2000n,
    tgid: o.pid,
    ppid: 1,
    comm,
    cmdline: o.kernelThread ? null : [comm],
    uid: 0,
    euid: 0,
    gid: 0,
    egid: 0,
    state: 'S',
    startTime: BigInt(o.pid) * 1_000_000n,
    nspids: [o.pid],
    pidNamespaces: [ROOT.pid],
    namespaces: ROOT,
    cgroup: '/',
    exe: o.kernelThread ? null : `/bin/${comm}`,
    hostname: 'vmictl-test',
    kernelThread: false,
    threads: [],
    ...o,
  };
}

function kthread(pid: number, comm: string): ProcessInfo {
  return proc({ pid, comm, ppid: pid === 2 ? 0 : 2, kernelThread: true });
}

/** A member of a container with its own pid namespace: nspids[1] is its pid there. */
function inCtr(pid: number, nspid: number, base: number, o: Partial<ProcessInfo> = {}): ProcessInfo {
  return proc({ pid, nspids: [pid, nspid], pidNamespaces: [ROOT.pid, base + 1], namespaces: ctrNs(base), ...o });
}

/** The test VM as the kernel layer would read it, plus the situations the VM does not have. */
function vmModel(): ProcessInfo[] {
  const host = [
    kthread(0, 'swapper/0'),
    proc({ pid: 1, ppid: 0, comm: 'init' }),
    kthread(2, 'kthreadd'),
    kthread(3, 'rcu_gp'),
    kthread(10, 'mm_percpu_wq'),
    kthread(68, 'kworker/u5:0'),
    proc({ pid: 118, comm: 'busyd' }),
    proc({ pid: 119, comm: 'syslogd', cmdline: ['syslogd', '-n'] }),
    kthread(130, 'kworker/1:1H'),
  ];
  // nested (containerd): unshare is pid 1; its children live in an inner pid namespace (nspids of length 3)
  const kube = 1000;
  const inner = { ...ctrNs(kube), pid: 5001, mnt: 5002 };
  const nested = [
    inCtr(133, 1, kube, { comm: 'unshare', cgroup: KUBE_CG, hostname: 'nested' }),
    proc({ pid: 141, ppid: 133, comm: 'sh', nspids: [141, 7, 1], pidNamespaces: [ROOT.pid, kube + 1, 5001], namespaces: inner, cgroup: KUBE_CG, hostname: 'nested' }),
    proc({ pid: 142, ppid: 141, comm: 'sleep', nspids: [142, 8, 2], pidNamespaces: [ROOT.pid, kube + 1, 5001], namespaces: inner, cgroup: KUBE_CG, hostname: 'nested' }),
  ];
  const ticker = [inCtr(153, 1, 2000, { comm: 'sh', cgroup: '/ticker', hostname: 'ticker' })];
  const treeCg = `/machine.slice/libpod-${TREE_ID}.scope`;
  const tree = [
    inCtr(171, 1, 3000, { comm: 'sh', cgroup: treeCg, hostname: 'tree' }),
    inCtr(178, 6, 3000, { ppid: 171, comm: 'sleep', cgroup: treeCg, hostname: 'tree', cmdline: ['sleep', '1000001'] }),
    inCtr(179, 7, 3000, { ppid: 171, comm: 'sleep', cgroup: treeCg, hostname: 'tree', cmdline: ['sleep', '1000002'] }),
    inCtr(180, 8, 3000, { ppid: 171, comm: 'sleep', cgroup: treeCg, hostname: 'tree', cmdline: ['sleep', '1000003'] }),
  ];
  const webCg = `/system.slice/docker-${WEB_ID}.scope`;
  const httpd = inCtr(190, 1, 4000, { comm: 'httpd', cgroup: webCg, hostname: 'web' });
  httpd.threads = [httpd, { ...httpd, pid: 191, threads: undefined } as unknown as TaskInfo];
  const web = [httpd];
  // no runtime named it: `unshare -p -f -m` from a host shell
  const anon = [inCtr(200, 1, 5000, { comm: 'sh', hostname: 'vmictl-test' }), inCtr(201, 2, 5000, { ppid: 200, comm: 'sleep' })];
  // paused by the freezer: tasks look asleep, the cgroup says frozen
  const frozenCg = `/system.slice/docker-${FROZEN_ID}.scope`;
  const frozen = [inCtr(210, 1, 6000, { comm: 'sleep', cgroup: frozenCg, cgroupFrozen: true, hostname: 'frozen' })];
  // every task stopped (SIGSTOP / ptrace)
  const stoppedCg = `/machine.slice/libpod-${STOPPED_ID}.scope`;
  const stopped = [
    inCtr(220, 1, 7000, { comm: 'sh', state: 'T', cgroup: stoppedCg, hostname: 'stopped' }),
    inCtr(221, 2, 7000, { ppid: 220, comm: 'sleep', state: 't', cgroup: stoppedCg, hostname: 'stopped' }),
  ];
  // in web's cgroup with the host's pid and mount namespaces: must stay a host process
  const escapee = [proc({ pid: 230, comm: 'escaped', cgroup: webCg })];
  // only a private mount namespace (a sandboxed daemon)
  const sandboxed = [proc({ pid: 240, comm: 'logind', cgroup: '/system.slice/systemd-logind.service', namespaces: { ...ROOT, mnt: 8002 } })];
  // a docker container with --pid=host: root pid namespace, own mount namespace, docker cgroup
  const pidHostCg = `/system.slice/docker-${PIDHOST_ID}.scope`;
  const pidHost = [
    proc({ pid: 250, comm: 'agent', cgroup: pidHostCg, namespaces: { ...ROOT, mnt: 9002, uts: 9003 }, hostname: 'agent' }),
    proc({ pid: 251, ppid: 250, comm: 'worker', cgroup: pidHostCg, namespaces: { ...ROOT, mnt: 9002, uts: 9003 }, hostname: 'agent' }),
  ];
  return [...host, ...nested, ...ticker, ...tree, ...web, ...anon, ...frozen, ...stopped, ...escapee, ...sandboxed, ...pidHost];
}

const HOST_PIDS = [0, 1, 2, 3, 10, 68, 118, 119, 130, 230];

function byHostname(list: Container[], name: string): Container {
  const c = list.find((x) => x.hostname === name);
  if (!c) throw new Error(`no container with hostname ${name}`);
  return c;
}

/** A process in the host's pid and mount namespaces. */
function isRootNsProcess(p: ProcessInfo): boolean {
  return p.nspids.length === 1 && p.namespaces.mnt === ROOT.mnt;
}

t.test('the test VM: host, and each container with its runtime, id and init', async (t) => {
  const { host, containers, warnings } = groupContainers(vmModel());
  t.same(host.pids, HOST_PIDS, 'host: init, kernel threads, daemons and the cgroup escapee');
  t.equal(host.id, 'host');
  t.equal(host.runtime, 'host');
  t.equal(host.initPid, 1);
  t.same(host.namespaces, ROOT);

  t.same(
    containers.map((c) => [c.hostname, c.runtime, c.initPid, c.pids]),
    [
      ['nested', 'containerd', 133, [133, 141, 142]],
      ['ticker', 'runc', 153, [153]],
      ['tree', 'podman', 171, [171, 178, 179, 180]],
      ['web', 'docker', 190, [190]],
      ['vmictl-test', 'unknown', 200, [200, 201]],
      ['frozen', 'docker', 210, [210]],
      ['stopped', 'podman', 220, [220, 221]],
      ['vmictl-test', 'unknown', 240, [240]],
      ['agent', 'docker', 250, [250, 251]],
    ],
    'containers sorted by init pid',
  );

  const nested = byHostname(containers, 'nested');
  t.equal(nested.id, KUBE_ID);
  t.equal(nested.podUid, '6ddaedfc-c235-dff0-3f3f-b46179bfa2a0');
  t.equal(nested.initNsPid, 1);
  t.equal(nested.cgroup, KUBE_CG);
  t.equal(nested.namespaces.pid, 1001, 'the init unshare\'s namespaces, not the inner shell\'s');
  t.equal(nested.isolation, 'pid-namespace');

  const ticker = byHostname(containers, 'ticker');
  t.equal(ticker.id, 'ticker');
  t.equal(ticker.name, 'ticker');
  t.equal(ticker.cgroup, '/ticker');
  t.equal(ticker.state, 'running');

  const tree = byHostname(containers, 'tree');
  t.equal(tree.id, TREE_ID);
  t.equal(tree.processes.length, 4);
  t.equal(tree.name, undefined);

  const web = byHostname(containers, 'web');
  t.equal(web.id, WEB_ID);
  t.same(web.namespaces, ctrNs(4000));

  t.match(warnings.join('\n'), /pid 230 \("escaped"\) is in the cgroup of docker container 99b23bdc.* shares the host's pid and mount namespaces/);
});

t.test('no root-namespace process and no kernel thread is ever in a container; every process is reported once', async (t) => {
  const all = vmModel();
  const { host, containers } = groupContainers(all);
  for (const c of containers) {
    for (const p of c.processes) {
      t.notOk(isRootNsProcess(p), `${c.hostname}: pid ${p.pid} has its own pid or mount namespace`);
      t.notOk(p.kernelThread, `${c.hostname}: pid ${p.pid} is no kernel thread`);
    }
    t.same(c.pids, [...c.pids].sort((a, b) => a - b), `${c.hostname}: pids sorted`);
    t.same(c.processes.map((p) => p.pid), c.pids, `${c.hostname}: processes in pid order`);
  }
  const seen = [host, ...containers].flatMap((c) => c.pids).sort((a, b) => a - b);
  t.same(seen, all.map((p) => p.pid).sort((a, b) => a - b));
});

t.test('a container no runtime named gets a derived id, stable across runs and input order', async (t) => {
  const a = groupContainers(vmModel()).containers;
  const b = groupContainers(vmModel().reverse()).containers;
  const anon = a.find((c) => c.initPid === 200)!;
  t.match(anon.id, /^[0-9a-f]{12}$/);
  t.equal(anon.id, derivedContainerId('pid', 5001));
  t.equal(anon.runtime, 'unknown');
  t.same(b.map((c) => c.id), a.map((c) => c.id), 'same ids whatever the task order');
  t.same(b.map((c) => c.pids), a.map((c) => c.pids));
  t.not(derivedContainerId('pid', 5001), derivedContainerId('mnt', 5001), 'pid and mount namespaces do not collide');
  const sandboxed = a.find((c) => c.initPid === 240)!;
  t.equal(sandboxed.id, derivedContainerId('mnt', 8002));
  t.equal(sandboxed.isolation, 'mount-namespace');
});

t.test('paused: a frozen init cgroup, or every task stopped', async (t) => {
  const { containers } = groupContainers(vmModel());
  t.equal(byHostname(containers, 'frozen').state, 'paused');
  t.equal(byHostname(containers, 'stopped').state, 'paused');
  t.equal(byHostname(containers, 'web').state, 'running');

  const model = vmModel();
  const sleeper = model.find((p) => p.pid === 221)!;
  sleeper.state = 'S';
  t.equal(byHostname(groupContainers(model).containers, 'stopped').state, 'running', 'one task running');

  const model2 = vmModel();
  const sh = model2.find((p) => p.pid === 220)!;
  sh.threads = [{ ...sh, pid: 222, state: 'R' }];
  t.equal(byHostname(groupContainers(model2).containers, 'stopped').state, 'running', 'a running thread');

  const model3 = vmModel();
  model3.find((p) => p.pid === 221)!.state = 'Z';
  t.equal(byHostname(groupContainers(model3).containers, 'stopped').state, 'paused', 'zombies do not count');
});

t.test('a container sharing the host pid namespace is grouped by the runtime id in its cgroup', async (t) => {
  const { containers } = groupContainers(vmModel());
  const agent = byHostname(containers, 'agent');
  t.equal(agent.id, PIDHOST_ID);
  t.equal(agent.initPid, 250, 'oldest process');
  t.equal(agent.initNsPid, 250, 'it sees host pids');
  t.equal(agent.isolation, 'cgroup');
});

t.test('the init is the process that is pid 1 in the container, not the oldest', async (t) => {
  const model = vmModel();
  // an exec'd process started (by the clock) before the init: still not the init
  const early = inCtr(300, 9, 4000, { comm: 'exec', startTime: 1n, cgroup: `/system.slice/docker-${WEB_ID}.scope`, hostname: 'web' });
  const web = byHostname(groupContainers([...model, early]).containers, 'web');
  t.equal(web.initPid, 190);
  t.same(web.pids, [190, 300]);
});

t.test('no pid 1: the lowest-pid process that is not a kernel thread holds the root namespaces', async (t) => {
  const model = vmModel().filter((p) => p.pid !== 1);
  const { host, containers } = groupContainers(model);
  t.equal(host.initPid, 118);
  t.same(host.pids, HOST_PIDS.filter((p) => p !== 1));
  t.equal(containers.length, 9);
});

t.test('no init at all: everything is the host, with a warning', async (t) => {
  const { host, containers, warnings } = groupContainers([kthread(2, 'kthreadd')]);
  t.same(host.pids, [2]);
  t.same(containers, []);
  t.match(warnings, [/no init process/]);
});

t.test('hostile or odd records', async (t) => {
  const model = vmModel();
  // a kernel thread that claims a container's namespaces and cgroup
  model.push(proc({ pid: 400, comm: 'kworker/evil', kernelThread: true, nspids: [400, 3], pidNamespaces: [ROOT.pid, 4001], namespaces: ctrNs(4000), cgroup: `/system.slice/docker-${WEB_ID}.scope` }));
  // a level-1 pid namespace equal to the root one (corrupt) with root mount namespace
  model.push(proc({ pid: 401, comm: 'odd', nspids: [401, 401], pidNamespaces: [ROOT.pid, ROOT.pid] }));
  // a repeated pid
  model.push(proc({ pid: 153, comm: 'dup', hostname: 'dup' }));
  // a nested pid namespace whose inode could not be read, in web's cgroup
  model.push(proc({ pid: 402, comm: 'lost', nspids: [402, 4], pidNamespaces: [ROOT.pid, 0], cgroup: `/system.slice/docker-${WEB_ID}.scope` }));
  const { host, containers, warnings } = groupContainers(model);
  t.ok(host.pids.includes(400), 'kernel thread stays host');
  t.ok(host.pids.includes(401), 'root pid namespace at level 1 is the host');
  t.equal(byHostname(containers, 'ticker').processes[0]!.comm, 'sh', 'first record of a repeated pid is used');
  t.same(byHostname(containers, 'web').pids, [190, 402], 'unknown pid namespace inode: grouped by its cgroup');
  t.match(warnings.join('\n'), /pid 153 \("dup"\) appears more than once/);
  t.match(warnings.join('\n'), /pid 401 .* root pid namespace at level 1/);
  t.match(warnings.join('\n'), /pid 402 .* inode is unknown/);
  for (const c of containers) for (const p of c.processes) t.notOk(isRootNsProcess(p) && p.nspids.length === 1, `pid ${p.pid}`);
});

t.test('unknown root mount namespace: no mount-namespace grouping, with a warning', async (t) => {
  const model = vmModel();
  model.find((p) => p.pid === 1)!.namespaces = { ...ROOT, mnt: 0 };
  const { host, containers, warnings } = groupContainers(model);
  t.ok(host.pids.includes(240), 'the sandboxed daemon cannot be told apart');
  t.ok(host.pids.includes(250));
  t.notOk(containers.some((c) => c.initPid === 240));
  t.match(warnings, [/root mount namespace is unknown/]);
});

t.test('two pid namespaces in one runtime cgroup stay apart (with a warning); a cgroup-only group joins its pid-namespace container', async (t) => {
  const cg = `/system.slice/docker-${WEB_ID}.scope`;
  const model = [
    proc({ pid: 1, ppid: 0, comm: 'init' }),
    inCtr(10, 1, 100, { cgroup: cg, hostname: 'a' }),
    inCtr(20, 1, 200, { cgroup: cg, hostname: 'b' }),
    proc({ pid: 30, cgroup: cg, namespaces: { ...ROOT, mnt: 102 } }),
  ];
  const { containers, warnings } = groupContainers(model);
  t.same(containers.map((c) => [c.id, c.pids]), [[WEB_ID, [10, 30]], [WEB_ID, [20]]]);
  t.match(warnings, [/two pid namespaces \(101 and 201\)/]);
});

t.test('cgroup of a container: the init\'s, or the common prefix within the runtime\'s cgroup', async (t) => {
  const scope = `/machine.slice/libpod-${TREE_ID}.scope`;
  const model = [
    proc({ pid: 1, ppid: 0, comm: 'init' }),
    // the init's cgroup is outside (v1-only system: its v2 path is the root), members are inside
    inCtr(10, 1, 100, { cgroup: '/', cgroupV1: { pids: scope } }),
    inCtr(11, 2, 100, { cgroup: `${scope}/container/a` }),
    inCtr(12, 3, 100, { cgroup: `${scope}/container/b` }),
  ];
  t.equal(groupContainers(model).containers[0]!.cgroup, `${scope}/container`);
  const inner = [proc({ pid: 1, ppid: 0, comm: 'init' }), inCtr(10, 1, 100, { cgroup: `${scope}/container` })];
  t.equal(groupContainers(inner).containers[0]!.cgroup, `${scope}/container`, 'the init\'s own');
});

t.test('initPid option', async (t) => {
  const model = vmModel();
  const { host } = groupContainers(model, { initPid: 118 });
  t.equal(host.initPid, 118);
});

t.test('warnings are bounded', async (t) => {
  const model = [proc({ pid: 1, ppid: 0, comm: 'init' })];
  for (let i = 0; i < 500; i++) model.push(proc({ pid: 1, comm: `dup${i}` }));
  const { warnings, host } = groupContainers(model);
  t.equal(warnings.length, MAX_WARNINGS + 1);
  t.equal(warnings.at(-1), '… and 400 more warnings');
  t.same(host.pids, [1]);
});
