/** The parts of exec that need no VM: -u parsing, the helper choice, wait statuses. */
import t from 'tap';
import { parseUser } from '../../cli/commands/exec';
import { helperCandidates } from '../../lib/ops/exec';
import { exitStatus } from '../../lib/inject/child';
import type { Container, ProcessInfo } from '../../lib/containers/model';

t.test('-u UID[:GID]', async (t) => {
  t.same(parseUser('1000'), { uid: 1000, gid: undefined });
  t.same(parseUser('0:5'), { uid: 0, gid: 5 });
  for (const bad of ['root', '1000:', ':5', '-1', '99999999999', '1:2:3']) t.throws(() => parseUser(bad), { code: 'EUSAGE' }, bad);
});

t.test('wait statuses as a shell reports them', async (t) => {
  t.equal(exitStatus(7 << 8), 7, 'exit 7');
  t.equal(exitStatus(0), 0);
  t.equal(exitStatus(9), 137, 'killed by SIGKILL: 128 + 9');
  t.equal(exitStatus(15 | 0x80), 143, 'SIGTERM with a core dump flag');
});

t.test('the helper: a root-namespace root process, init last', async (t) => {
  const ns = { pid: 1, mnt: 2, uts: 3, net: 4, ipc: 5, cgroup: 6, user: 7, time: 8 };
  const p = (pid: number, over: Partial<ProcessInfo> = {}): ProcessInfo => ({ pid, tgid: pid, uid: 0, euid: 0, kernelThread: false, state: 'S', namespaces: { ...ns }, ...over }) as ProcessInfo;
  const host = {
    namespaces: ns,
    processes: [
      p(1),
      p(2, { kernelThread: true }),
      p(120),
      p(130, { uid: 1000, euid: 1000 }),
      p(140, { namespaces: { ...ns, mnt: 99 } }),
      p(150),
    ],
  } as unknown as Container;
  t.same(helperCandidates(host).map((x) => x.pid), [120, 150, 1], 'root, same namespaces, no kernel thread; init only as a last resort');
});
