/**
 * `vmictl ps`, `top` and `inspect` against the distro VM (Debian 12, systemd, containers made by
 * docker and podman themselves), compared with what the engines and /proc said inside the guest at
 * boot: every engine container once, by its full id, with the init pid and the running or paused
 * state the engine reports, each container's processes as /proc lists them, and each one's
 * hostname, cgroup, namespaces and init user as the engine set them and /proc sees them.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import type { PsJson, TopJson } from '../../cli/render/containers';
import type { Container } from '../../lib/containers/model';
import { distroVm, readGroundTruth, skipWithReason, type EngineInspect, type GroundTruth, type VmEnv } from '../helpers/vm';

const run = promisify(execFile);
const cli = resolve(__dirname, '../../bin/vmictl');

async function vmictl(env: VmEnv, args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [cli, ...args], {
    env: { ...process.env, VMICTL_QMP: env.qmp, VMICTL_GDB: env.gdb },
    timeout: 300_000,
    maxBuffer: 64 << 20,
  });
  return stdout;
}

interface EngineContainer { engine: 'docker' | 'podman'; inspect: EngineInspect; name: string }

function engineContainers(gt: GroundTruth): EngineContainer[] {
  if (!gt.engines) throw new Error('the ground truth has no engines section: not the distro VM');
  return [
    ...gt.engines.docker.map((inspect) => ({ engine: 'docker' as const, inspect, name: inspect.Name.replace(/^\//, '') })),
    ...gt.engines.podman.map((inspect) => ({ engine: 'podman' as const, inspect, name: inspect.Name })),
  ];
}

/** The thread-group leaders /proc put in a cgroup. */
function procLeaders(gt: GroundTruth, cgroup: string) {
  return gt.tasks.filter((k) => k.cgroup === cgroup && k.pid === k.tgid).sort((a, b) => a.pid - b.pid);
}

t.test('the distro VM: vmictl ps, top and inspect against the engines\' own view', async (t) => {
  const env = distroVm(t);
  if (!env) return;
  if (!existsSync(join(__dirname, '../../dist/cli/main.js'))) return skipWithReason(t, 'dist/ is not built (make build)');
  const gt = readGroundTruth(env.groundTruthFile);
  const engines = engineContainers(gt);

  t.test('the guest is what the tests are about', async (t) => {
    const names = engines.map((c) => c.name).sort();
    t.same(names, ['nobody', 'paused', 'pidhost', 'pod-loop', 'pod-web', 'priv', 'ro', 'web'], 'every container the guest made');
    t.match(gt.kernel.lsm ?? '', /apparmor/, 'AppArmor is an active LSM');
    const byName = new Map(engines.map((c) => [c.name, c.inspect]));
    t.equal(byName.get('web')?.AppArmorProfile, 'docker-default', 'docker confined web with its own AppArmor profile');
    t.equal(byName.get('paused')?.State.Paused, true, 'docker paused "paused"');
    t.equal(byName.get('pidhost')?.HostConfig.PidMode, 'host', 'pidhost shares the host pid namespace');
    t.equal(byName.get('nobody')?.Config.User, '65534:65534', 'nobody runs as 65534');
    for (const c of engines) t.ok(gt.tasks.some((k) => k.pid === c.inspect.State.Pid), `${c.name}: its init pid ${c.inspect.State.Pid} is in /proc`);
  });

  const ps = JSON.parse(await vmictl(env, ['ps', '--json'])) as PsJson[];

  t.test('ps --json lists every engine container once, by full id, with its init pid and state', async (t) => {
    for (const c of engines) {
      const rows = ps.filter((r) => r.id === c.inspect.Id);
      t.equal(rows.length, 1, `${c.name}: listed once by its full id ${c.inspect.Id}`);
      const row = rows[0];
      if (!row) continue;
      t.equal(row.runtime, c.engine, `${c.name}: runtime ${c.engine}`);
      t.equal(row.initPid, c.inspect.State.Pid, `${c.name}: init pid ${c.inspect.State.Pid}, as ${c.engine} inspect says`);
      t.equal(row.state, c.inspect.State.Paused ? 'paused' : 'running', `${c.name}: ${c.inspect.State.Status}`);
      const truth = gt.containers.find((g) => g.id === c.inspect.Id);
      t.equal(row.cgroup, truth?.cgroup, `${c.name}: cgroup ${truth?.cgroup}`);
    }
    const ids = new Set(engines.map((c) => c.inspect.Id));
    const extra = ps.filter((r) => (r.runtime === 'docker' || r.runtime === 'podman') && !ids.has(r.id));
    t.same(extra.map((r) => `${r.runtime} ${r.id}`), [], 'no docker or podman container the engines do not know');
  });

  for (const name of ['web', 'nobody', 'pidhost', 'priv', 'ro', 'paused', 'pod-web', 'pod-loop']) {
    t.test(`top ${name} matches /proc`, async (t) => {
      const c = engines.find((e) => e.name === name);
      const truth = gt.containers.find((g) => g.id === c?.inspect.Id);
      if (!c || !truth) return t.fail(`no container ${name} in the ground truth`);
      const top = JSON.parse(await vmictl(env, ['top', c.inspect.Id, '--json'])) as TopJson[];
      const want = procLeaders(gt, truth.cgroup);
      t.ok(want.length > 0, `/proc has processes in ${truth.cgroup}`);
      // a shell loop forks a new sleep every few seconds: the one /proc saw at boot is gone by now,
      // and another, a child of the loop, may be there
      const loop = (p: { comm: string; ppid: number }) => p.comm === 'sleep' && p.ppid === c.inspect.State.Pid;
      const stable = want.filter((k) => !loop(k));
      t.same(top.filter((p) => !loop(p)).map((p) => p.pid), stable.map((k) => k.pid), 'the same processes, by host pid (a loop\'s passing sleep aside)');
      t.ok(top.filter(loop).length <= 1, 'at most one passing sleep of the loop');
      for (const k of stable) {
        const p = top.find((q) => q.pid === k.pid);
        if (!p) continue;
        t.same({ ppid: p.ppid, comm: p.comm, uid: p.uid, nspid: p.nspid }, { ppid: k.ppid, comm: k.comm, uid: k.uid, nspid: k.nspid }, `pid ${k.pid}: ppid, comm, uid and pid inside as /proc has them`);
      }
      t.ok(top.some((p) => p.pid === c.inspect.State.Pid), `the engine's init pid ${c.inspect.State.Pid} is listed`);
      if (name === 'nobody') t.ok(top.every((p) => p.uid === 65534), 'every process of nobody runs as uid 65534');
      if (name === 'paused') t.ok(top.every((p) => p.state === 'D' || p.state === 'S'), 'the frozen processes sleep');
    });
  }

  for (const c of engines) {
    t.test(`inspect ${c.name} matches ${c.engine} inspect and /proc of its init`, async (t) => {
      const doc = JSON.parse(await vmictl(env, ['inspect', c.inspect.Id])) as Container;
      const truth = gt.containers.find((g) => g.id === c.inspect.Id);
      const init = gt.tasks.find((k) => k.pid === c.inspect.State.Pid && k.tgid === k.pid);
      if (!truth || !init) return t.fail(`${c.name}: no container or init task in the ground truth`);
      t.same({ id: doc.id, runtime: doc.runtime, initPid: doc.initPid, state: doc.state }, {
        id: c.inspect.Id, runtime: c.engine, initPid: c.inspect.State.Pid, state: c.inspect.State.Paused ? 'paused' : 'running',
      }, `id, runtime, init pid and state as ${c.engine} inspect has them`);
      t.equal(doc.hostname, truth.hostname, `hostname ${JSON.stringify(truth.hostname)}, as the init's UTS namespace says`);
      t.equal(doc.hostname, c.inspect.Config.Hostname, `and as ${c.engine} set it`);
      t.equal(doc.cgroup, truth.cgroup, `cgroup ${truth.cgroup}`);
      t.equal(doc.initNsPid, init.nspid, `its init is pid ${init.nspid} inside`);
      const kinds = ['pid', 'mnt', 'uts', 'net', 'ipc', 'cgroup', 'user'] as const;
      t.same(Object.fromEntries(kinds.map((k) => [k, doc.namespaces[k]])), Object.fromEntries(kinds.map((k) => [k, init.ns[k]])), 'the namespaces of its init, by inode, as /proc/PID/ns has them');
      const host = gt.tasks.find((k) => k.pid === 1);
      const shared = kinds.filter((k) => host && init.ns[k] === host.ns[k]);
      if (c.name === 'pidhost') {
        t.ok(shared.includes('pid'), 'pidhost is in the host pid namespace');
        t.equal(doc.isolation, 'cgroup', 'so its members are found by its cgroup');
      } else {
        t.notOk(shared.includes('pid'), 'a pid namespace of its own');
        t.equal(doc.isolation, 'pid-namespace', 'its members are those of its pid namespace');
      }
      const user = /^(\d+)/.exec(c.inspect.Config.User ?? '')?.[1];
      const leader = doc.processes.find((p) => p.pid === doc.initPid);
      t.equal(leader?.uid, user === undefined ? 0 : Number(user), `its init runs as ${c.inspect.Config.User || 'root'}, as ${c.engine} was told`);
      t.equal(leader?.uid, init.uid, 'and as /proc says');
    });
  }
});
