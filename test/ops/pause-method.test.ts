/**
 * How a container is paused, decided from the task list and the guest's cgroup mounts (no VM):
 * its own v2 cgroup is frozen; a v1 freezer is used where only that is mounted; a container in the
 * root cgroup, or whose cgroup also holds processes outside it, is paused by signals instead, so
 * that no freeze ever reaches anything else. Also: the helper is never pid 1 when another root
 * process of the root namespaces exists.
 */
import t from 'tap';
import { pauseMethod } from '../../lib/ops/pause';
import { helperCandidates, helperConfinementFits } from '../../lib/inject/root-helper';
import type { TaskConfinement } from '../../lib/kernel/helpers/cred';
import type { ContainerList } from '../../lib/containers/list';
import { unknownNamespaces, type Container, type ProcessInfo } from '../../lib/containers/model';

function proc(pid: number, cgroup: string, extra: Partial<ProcessInfo> = {}): ProcessInfo {
  return {
    address: BigInt(pid) << 12n, pid, tgid: pid, ppid: 1, comm: `p${pid}`, cmdline: null, uid: 0, euid: 0, gid: 0, egid: 0, state: 'S',
    startTime: BigInt(pid), nspids: [pid], pidNamespaces: [1], namespaces: unknownNamespaces(), cgroup, exe: null, hostname: 'h', kernelThread: false, threads: [], ...extra,
  };
}

function container(id: string, cgroup: string, processes: ProcessInfo[]): Container {
  return { id, runtime: 'runc', hostname: id, state: 'running', initPid: processes[0].pid, initNsPid: 1, pids: processes.map((p) => p.pid), processes, cgroup, namespaces: unknownNamespaces() };
}

const v2 = { v2: { mountPoint: '/sys/fs/cgroup', root: '/' } };

t.test('own v2 cgroup: freeze it, under the mount point the guest uses', async (t) => {
  const c = container('a', '/ticker', [proc(10, '/ticker')]);
  const list: ContainerList = { host: container('host', '/', [proc(1, '/'), proc(2, '/')]), containers: [c], warnings: [] };
  t.same(pauseMethod(list, c, v2), { kind: 'cgroup2', dir: '/sys/fs/cgroup/ticker' });
  t.same(pauseMethod(list, c, { v2: { mountPoint: '/cg', root: '/' } }), { kind: 'cgroup2', dir: '/cg/ticker' });
});

t.test('root cgroup or a shared one: signals', async (t) => {
  const root = container('r', '/', [proc(10, '/')]);
  const list1: ContainerList = { host: container('host', '/', [proc(1, '/')]), containers: [root], warnings: [] };
  t.same(pauseMethod(list1, root, v2), { kind: 'signals' });
  const c = container('s', '/shared', [proc(20, '/shared')]);
  const list2: ContainerList = { host: container('host', '/', [proc(1, '/'), proc(5, '/shared/below')]), containers: [c], warnings: [] };
  t.same(pauseMethod(list2, c, v2), { kind: 'signals' }, 'a host process in a child cgroup would be frozen too');
  t.same(pauseMethod(list2, c, {}), { kind: 'signals' }, 'no cgroup mounted at all');
});

t.test('v1 freezer only', async (t) => {
  const c = container('b', '/', [proc(30, '/', { cgroupV1: { freezer: '/lxc/b' } })]);
  const list: ContainerList = { host: container('host', '/', [proc(1, '/', { cgroupV1: { freezer: '/' } })]), containers: [c], warnings: [] };
  t.same(pauseMethod(list, c, { freezer: { mountPoint: '/sys/fs/cgroup/freezer', root: '/' } }), { kind: 'freezer', dir: '/sys/fs/cgroup/freezer/lxc/b' });
});

t.test('helper candidates: root, root namespaces, pid 1 last resort', async (t) => {
  const host = container('host', '/', [proc(1, '/'), proc(7, '/', { uid: 1000, euid: 1000 }), proc(8, '/', { nspids: [8, 1] }), proc(9, '/')]);
  const list: ContainerList = { host, containers: [], warnings: [] };
  t.same(helperCandidates(list).map((p) => p.pid), [9]);
  const only1: ContainerList = { host: container('host', '/', [proc(1, '/')]), containers: [], warnings: [] };
  t.same(helperCandidates(only1).map((p) => p.pid), [1]);
});

t.test('helper candidates: single-threaded processes before daemons with many threads', async (t) => {
  const threads = (pid: number, n: number) => Array.from({ length: n }, (_, i) => ({ ...proc(pid + i, '/'), tgid: pid }));
  const host = container('host', '/', [proc(1, '/'), proc(9, '/', { threads: threads(9, 12) }), proc(12, '/'), proc(30, '/', { threads: threads(30, 2) })]);
  t.same(helperCandidates({ host, containers: [], warnings: [] }).map((p) => p.pid), [12, 30, 9]);
});

t.test('a helper needs CAP_DAC_OVERRIDE, CAP_KILL and CAP_SYS_ADMIN, and no seccomp filter', async (t) => {
  const full = (1n << 41n) - 1n;
  const c = (extra: Partial<TaskConfinement>): TaskConfinement => ({
    uid: 0, gid: 0, euid: 0, egid: 0, capInheritable: 0n, capPermitted: full, capEffective: full, capBset: full, capAmbient: 0n, securebits: 0, security: 0n, seccompMode: 0, ...extra,
  });
  t.ok(helperConfinementFits(c({})), 'a full root');
  t.notOk(helperConfinementFits(c({ capEffective: full & ~(1n << 21n) })), 'without CAP_SYS_ADMIN (a systemd service bounded by CapabilityBoundingSet)');
  t.notOk(helperConfinementFits(c({ capEffective: full & ~(1n << 1n) })), 'without CAP_DAC_OVERRIDE');
  t.notOk(helperConfinementFits(c({ seccompMode: 2 })), 'with a seccomp filter (SystemCallFilter)');
  t.ok(helperConfinementFits(c({ seccompMode: undefined })), 'a kernel without seccomp');
});
