// The baseline for the hostile-guest tests: a sane synthetic guest (a few host tasks and two
// containers) reads back exactly as built, so what the hostile tests see is the corruption alone.
import t from 'tap';
import { collectTasks } from '../../lib/containers/collect';
import { groupContainers } from '../../lib/containers/group';
import { listContainers } from '../../lib/containers/list';
import { ROOT_INUMS, SyntheticGuest } from '../helpers/synthetic-kernel';

const WEB_ID = 'c0ffee00112233445566778899aabbccddeeff00112233445566778899aabbcc';
const WEB_CG = `/system.slice/docker-${WEB_ID}.scope`;
const DB_ID = '5eed5eed00112233445566778899aabbccddeeff00112233445566778899aabb';
const DB_CG = `/machine.slice/libpod-${DB_ID}.scope`;

function build() {
  const g = new SyntheticGuest({ physicalBase: 0x9400000n, virtualSlide: 0x2e000000n });
  const systemd = g.addTask({ pid: 1, comm: 'systemd', cmdline: ['/sbin/init', 'splash'], exe: '/usr/lib/systemd/systemd', cgroup: '/init.scope' });
  g.addTask({ pid: 2, comm: 'kthreadd', kernelThread: true });
  g.addTask({ pid: 3, comm: 'rcu_gp', kernelThread: true, parent: g.taskList[1] });
  const sshd = g.addTask({ pid: 412, comm: 'sshd', cmdline: ['sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups'], exe: '/usr/sbin/sshd', cgroup: '/system.slice/ssh.service', parent: systemd });

  const webNs = g.namespaces({ inums: { pid: 4026532301, mnt: 4026532298, uts: 4026532299, ipc: 4026532300, net: 4026532303, cgroup: 4026532304 }, hostname: 'web-1' });
  const nginx = g.addTask({
    pid: 1000, nsPids: [1], ns: webNs, comm: 'nginx', cmdline: ['nginx: master process nginx', '-g', 'daemon off;'],
    exe: '/usr/sbin/nginx', cgroup: WEB_CG, parent: systemd,
  });
  g.addThread(nginx, { pid: 1001, nsPids: [2], ns: webNs, comm: 'nginx-io', cgroup: WEB_CG, parent: systemd });
  g.addTask({ pid: 1002, nsPids: [3], ns: webNs, comm: 'nginx', cmdline: ['nginx: worker process'], exe: '/usr/sbin/nginx', cgroup: WEB_CG, parent: nginx, uid: 101, gid: 101, state: 0 });

  const dbNs = g.namespaces({ inums: { pid: 4026532401, mnt: 4026532398, uts: 4026532399, ipc: 4026532400, net: 4026532403, user: 4026532405 }, hostname: 'db' });
  g.addTask({ pid: 2000, nsPids: [1], ns: dbNs, comm: 'postgres', cmdline: ['postgres', '-D', '/var/lib/postgresql/data'], exe: '/usr/lib/postgresql/15/bin/postgres', cgroup: DB_CG, parent: systemd, uid: 999, gid: 999, frozen: true });
  return { g, sshd };
}

t.test('a sane guest reads back as built', async (t) => {
  const { g } = build();
  const kernel = await g.open();
  t.equal(kernel.kaslr.physicalBase, 0x9400000n);
  t.equal(kernel.kaslr.virtualSlide, 0x2e000000n);

  const { processes, warnings } = await collectTasks(kernel);
  t.same(warnings, []);
  t.same(processes.map((p) => p.pid), [1, 2, 3, 412, 1000, 1002, 2000]);
  for (const p of processes) t.same(p.warnings, [], `no warnings for pid ${p.pid}`);
  const by = new Map(processes.map((p) => [p.pid, p]));

  const init = by.get(1)!;
  t.match(init, {
    comm: 'systemd', tgid: 1, ppid: 0, cmdline: ['/sbin/init', 'splash'], exe: '/usr/lib/systemd/systemd',
    cgroup: '/init.scope', hostname: 'synthetic', kernelThread: false, state: 'S', uid: 0, nspids: [1],
    pidNamespaces: [ROOT_INUMS.pid], startTime: 1_000_000n,
  });
  t.same(init.namespaces, ROOT_INUMS);

  t.match(by.get(2)!, { comm: 'kthreadd', kernelThread: true, cmdline: null, exe: null, state: 'I', ppid: 0 });
  t.match(by.get(3)!, { comm: 'rcu_gp', ppid: 2 });
  t.match(by.get(412)!, { comm: 'sshd', ppid: 1, cgroup: '/system.slice/ssh.service', exe: '/usr/sbin/sshd' });

  const nginx = by.get(1000)!;
  t.match(nginx, {
    comm: 'nginx', ppid: 1, nspids: [1000, 1], pidNamespaces: [ROOT_INUMS.pid, 4026532301], hostname: 'web-1',
    cmdline: ['nginx: master process nginx', '-g', 'daemon off;'], cgroup: WEB_CG, exe: '/usr/sbin/nginx',
  });
  t.same(nginx.namespaces, { ...ROOT_INUMS, pid: 4026532301, mnt: 4026532298, uts: 4026532299, ipc: 4026532300, net: 4026532303, cgroup: 4026532304 });
  t.same(nginx.threads.map((x) => [x.pid, x.tgid, x.comm, x.nspids]), [[1000, 1000, 'nginx', [1000, 1]], [1001, 1000, 'nginx-io', [1001, 2]]]);
  t.match(by.get(1002)!, { ppid: 1000, uid: 101, gid: 101, euid: 101, egid: 101, state: 'R', nspids: [1002, 3] });

  const pg = by.get(2000)!;
  t.match(pg, { uid: 999, hostname: 'db', cgroupFrozen: true, nspids: [2000, 1] });
  t.equal(pg.namespaces.user, 4026532405);
  t.equal(by.get(1000)!.cgroupFrozen, false);

  const { host, containers, warnings: gw } = groupContainers(processes);
  t.same(gw, []);
  t.same(host.pids, [1, 2, 3, 412]);
  t.same(containers.map((c) => [c.id, c.runtime, c.hostname, c.initPid, c.initNsPid, c.pids, c.cgroup, c.state]), [
    [WEB_ID, 'docker', 'web-1', 1000, 1, [1000, 1002], WEB_CG, 'running'],
    [DB_ID, 'podman', 'db', 2000, 1, [2000], DB_CG, 'paused'],
  ]);
});

t.test('listContainers gives the same answer, with or without a page cache', async (t) => {
  const { g } = build();
  const list = await listContainers(await g.open());
  t.same(list.warnings, []);
  t.same(list.containers.map((c) => c.id), [WEB_ID, DB_ID]);
  const raw = await listContainers(await g.open({ cache: false }));
  t.same(raw, list, 'the same result reading the memory directly');
  const again = await listContainers(await g.open(), { brief: true });
  t.same(again.containers.map((c) => c.id), [WEB_ID, DB_ID]);
  t.equal(again.containers[0]!.processes[0]!.cmdline, null, 'brief skips command lines');
});

t.test('the builder keeps the task list circular and doubly linked', async (t) => {
  const { g } = build();
  const head = g.initTask.tasks;
  const nodes = [head, ...g.taskList.map((x) => x.tasks)];
  nodes.forEach((n, i) => {
    const next = nodes[(i + 1) % nodes.length]!;
    t.equal(g.mem.readU64(g.physOf(n)), next, `next of node ${i}`);
    t.equal(g.mem.readU64(g.physOf(next) + 8n), n, `prev of node ${i + 1}`);
  });
});

t.test('linkTasks relinks the list in any order, leaving tasks out', async (t) => {
  const { g, sshd } = build();
  const order = [...g.taskList].reverse().filter((x) => x !== sshd);
  g.linkTasks(order);
  const { processes, warnings } = await collectTasks(await g.open());
  t.same(warnings, []);
  t.same(processes.map((p) => p.pid), [1, 2, 3, 1000, 1002, 2000], 'sshd is off the list');
});
