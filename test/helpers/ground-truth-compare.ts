/**
 * The ground-truth assertions of test/containers/containers-vm.test.ts, for tests that list the
 * containers another way (another profile, another kernel) and must see the same.
 */
import type { Test } from 'tap';
import type { ContainerList } from '../../lib/containers/list';
import { NAMESPACE_KINDS } from '../../lib/containers/model';
import type { GroundTruth } from './vm';

export interface CompareOptions {
  /** Also the root directory of each container (runc bind-mounts /containers/<name>/rootfs). */
  root?: boolean;
}

export function compareWithGroundTruth(t: Test, gt: GroundTruth, list: ContainerList, opts: CompareOptions = {}): void {
  t.equal(list.containers.length, gt.containers.length, 'as many containers as the guest runs');
  const alive = new Map(gt.tasks.map((x) => [x.pid, x]));
  for (const want of gt.containers) {
    const got = list.containers.find((c) => c.id === want.id);
    t.ok(got, `container ${want.name} (${want.id.slice(0, 12)}) found`);
    if (!got) continue;
    t.equal(got.hostname, want.hostname, `${want.name}: hostname`);
    t.equal(got.initPid, want.initPid, `${want.name}: init pid`);
    t.equal(got.cgroup, want.cgroup, `${want.name}: cgroup path`);
    t.equal(got.runtime, want.runtime, `${want.name}: runtime recognised`);
    // runc bind-mounts each bundle's rootfs (test-vms/guest/rc.containers: /containers/<name>)
    if (opts.root) t.equal(got.root, `/containers/${want.name}/rootfs`, `${want.name}: root directory`);
    const init = alive.get(want.initPid)!;
    for (const kind of NAMESPACE_KINDS) t.equal(got.namespaces[kind], init.ns[kind], `${want.name}: ${kind} namespace inode`);
    // the processes the guest saw in that container (same pid namespace chain at level 1)
    const expected = gt.tasks.filter((x) => x.tgid === x.pid && x.cgroup === want.cgroup).map((x) => x.pid).sort((a, b) => a - b);
    t.same(got.pids, expected, `${want.name}: host pids`);
    for (const p of got.processes) {
      const g = alive.get(p.pid);
      t.ok(g, `${want.name}: pid ${p.pid} is a guest task`);
      if (!g) continue;
      t.same(p.nspids, g.nspids, `${want.name}: pid ${p.pid} has the pids ${g.nspids.join('/')} at every level`);
      t.equal(p.comm, g.comm, `${want.name}: pid ${p.pid} comm`);
      t.equal(p.ppid, g.ppid, `${want.name}: pid ${p.pid} parent`);
      t.equal(p.uid, g.uid, `${want.name}: pid ${p.pid} uid`);
    }
  }
  const hostPidNs = alive.get(1)!.ns.pid;
  for (const c of list.containers) {
    for (const p of c.processes) t.not(p.namespaces.pid, hostPidNs, `pid ${p.pid} in ${c.hostname} is not a root-namespace process`);
  }
}
