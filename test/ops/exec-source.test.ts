/**
 * Which container process `vmictl exec` forks the command from (lib/ops/exec-source.ts): one
 * confined exactly as init, init first; for -u one that can take another user and is bounded as
 * init; none: a PrivilegeError naming --privileged.
 */
import t from 'tap';
import type { Container, ProcessInfo } from '../../lib/containers/model';
import type { TaskConfinement } from '../../lib/kernel/helpers/cred';
import { forkSources } from '../../lib/ops/exec-source';
import { PrivilegeError } from '../../lib/ops/errors';

const NS = { mnt: 10, uts: 11, ipc: 12, net: 13, pid: 14, user: 15, cgroup: 16, time: 17 };
const DOCKER_CAPS = 0xa80425fbn;

function proc(pid: number, extra: Partial<ProcessInfo> = {}): ProcessInfo {
  return { pid, comm: `p${pid}`, kernelThread: false, state: 'S', cgroup: '/c', namespaces: { ...NS }, ...extra } as ProcessInfo;
}

function conf(uid: number, caps: bigint, extra: Partial<TaskConfinement> = {}): TaskConfinement {
  return { uid, euid: uid, gid: uid, egid: uid, capInheritable: 0n, capPermitted: caps, capEffective: caps, capBset: DOCKER_CAPS, capAmbient: 0n, securebits: 0, security: 0n, seccompMode: 2, seccompFilter: 0xffff888000001000n, noNewPrivs: true, ...extra };
}

const container = { id: 'abc', name: 'db', processes: [] } as unknown as Container;

t.test('without -u: processes confined exactly as init, init first', async (t) => {
  const init = { process: proc(100), confinement: conf(0, DOCKER_CAPS) };
  const others = [
    { process: proc(101), confinement: conf(0, DOCKER_CAPS) },
    { process: proc(102), confinement: conf(0, DOCKER_CAPS, { capBset: (1n << 41n) - 1n }) },
    { process: proc(103), confinement: conf(0, DOCKER_CAPS, { seccompFilter: 0n, seccompMode: 0 }) },
    { process: proc(104), confinement: conf(0, DOCKER_CAPS, { noNewPrivs: false }) },
    { process: proc(105, { namespaces: { ...NS, pid: 99 } }), confinement: conf(0, DOCKER_CAPS) },
    { process: proc(106, { cgroup: '/c/sub' }), confinement: conf(0, DOCKER_CAPS) },
    { process: proc(107, { state: 'Z' }), confinement: conf(0, DOCKER_CAPS) },
    { process: proc(108), confinement: conf(1000, 0n) },
  ];
  t.same(forkSources(container, init, [...others, init]).map((p) => p.pid), [100, 101], 'init, then the one other process confined the same; not the wider bounding set, the missing seccomp filter or no_new_privs, another pid namespace or cgroup, a zombie, another user');
});

t.test('without -u, a non-root init: the command is that user', async (t) => {
  const init = { process: proc(100), confinement: conf(65534, 0n) };
  t.same(forkSources(container, init, [{ process: proc(101), confinement: conf(0, DOCKER_CAPS) }]).map((p) => p.pid), [100], 'only the processes as init, not a root one');
});

t.test('-u: a process able to set the user and bounded as init', async (t) => {
  const init = { process: proc(100), confinement: conf(65534, 0n) };
  const root = { process: proc(101), confinement: conf(0, DOCKER_CAPS) };
  const rootWider = { process: proc(102), confinement: conf(0, DOCKER_CAPS, { capBset: (1n << 41n) - 1n }) };
  t.same(forkSources(container, init, [root, rootWider], { uid: 0 }).map((p) => p.pid), [101], 'the root process with init\'s bounding set');
  t.same(forkSources(container, init, [root], { uid: 65534 }).map((p) => p.pid), [100], '-u of init\'s own user needs no privilege');
  const err = t.throws(() => forkSources(container, init, [rootWider], { uid: 0, gid: 0 }), PrivilegeError) as unknown as PrivilegeError;
  t.equal(err?.code, 'EPRIVILEGE');
  t.match(err?.message, /--privileged/, `the error names --privileged: ${err?.message}`);
  t.match(err?.message, /pid 100.*uid 65534/, 'and says who init runs as');
  const setuidOnly = { process: proc(103), confinement: conf(0, 1n << 7n) };
  t.throws(() => forkSources(container, init, [setuidOnly], { uid: 0 }), PrivilegeError, 'CAP_SETUID without CAP_SETGID is not enough');
});

t.test('-u with a root init: init', async (t) => {
  const init = { process: proc(100), confinement: conf(0, DOCKER_CAPS) };
  t.same(forkSources(container, init, [], { uid: 65534, gid: 65534 }).map((p) => p.pid), [100]);
});
