/**
 * The operations against the distro VM (Debian 12, containers made by docker and podman), each
 * checked by what the guest itself says, through its control shell:
 * - exec is confined as the engine's own exec (issue 17 item 3): `id`, capability sets,
 *   NoNewPrivs, seccomp, AppArmor label and cgroup under `vmictl exec` and under `docker exec` /
 *   `podman exec`, for a root container, a non-root one and a podman one;
 * - cp into and out of a docker and a podman container, byte for byte as the engine's exec reads;
 * - pause and unpause of a docker and a podman container: its cgroup's cgroup.freeze and
 *   cgroup.events, and where each of its processes waits;
 * - kill of a docker and a podman container made for it here (the other tests of test/distro need
 *   the boot's eight as the ground truth has them), ended as the engine sees it, and stop of two more: one that ends on
 *   SIGTERM with its own status, and one whose init cannot get SIGTERM, ended by the SIGKILL.
 * The engine-paused `paused` container is left alone, and found as it was at the end.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import type { PsJson } from '../../cli/render/containers';
import { compareConfinement, OUTSIDE_SCRIPT } from '../helpers/confinement';
import { distroVm, guestRun, readGroundTruth, skipWithReason, type VmEnv } from '../helpers/vm';

const run = promisify(execFile);
const cli = resolve(__dirname, '../../bin/vmictl');
/** Under TCG on a loaded machine one vmictl command can take minutes; its own waits get as long. */
const VMICTL_TIMEOUT_MS = 600_000;
const OP_TIMEOUT = ['--timeout', '180000'];

interface Run { code: number; stdout: string; stderr: string }

async function vmictl(env: VmEnv, args: string[]): Promise<Run> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], {
      env: { ...process.env, VMICTL_QMP: env.qmp, VMICTL_GDB: env.gdb },
      timeout: VMICTL_TIMEOUT_MS,
      maxBuffer: 64 << 20,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: unknown; stdout?: string; stderr?: string; message: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? err.message };
  }
}

/** A word quoted for the guest's sh. */
const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

/** A file's bytes as one hex string, the guest's `od` output made comparable. */
const hexOfOd = (od: string) => od.replace(/[^0-9a-f]/g, '');

// a score of vmictl commands, engine execs and one `docker run` in a TCG guest: more than the
// default per-file timeout of package.json when the machine is loaded
t.setTimeout(2_700_000);

t.test('the distro VM: exec, cp, pause, kill and stop against the engines\' own view', async (t) => {
  const env = distroVm(t);
  if (!env) return;
  if (!existsSync(join(__dirname, '../../dist/cli/main.js'))) return skipWithReason(t, 'dist/ is not built (make build)');
  if (!env.control) return t.fail('the distro VM has no control channel');
  const gt = readGroundTruth(env.groundTruthFile);
  if (!gt.engines) return t.fail('the ground truth has no engines section: not the distro VM');
  const ids = new Map<string, { engine: 'docker' | 'podman'; id: string }>([
    ...gt.engines.docker.map((i) => [i.Name.replace(/^\//, ''), { engine: 'docker' as const, id: i.Id }] as const),
    ...gt.engines.podman.map((i) => [i.Name, { engine: 'podman' as const, id: i.Id }] as const),
  ]);
  const container = (name: string) => {
    const c = ids.get(name);
    if (!c) throw new Error(`no container ${name} in the ground truth`);
    return c;
  };
  const local = mkdtempSync(join(tmpdir(), 'vmictl-distro-ops-'));
  t.teardown(() => rmSync(local, { recursive: true, force: true }));

  /** A command in the guest's root namespaces; its exit status is checked. */
  const guest = async (t: Test, command: string, timeoutMs = 300_000): Promise<string> => {
    const r = await guestRun(env, command, timeoutMs);
    t.equal(r.status, 0, `in the guest: ${command.length > 120 ? `${command.slice(0, 117)}...` : command} exits 0${r.status ? ` (${r.output.trim().slice(-300)})` : ''}`);
    return r.output;
  };
  /** SCRIPT under the engine's own exec (`docker exec` / `podman exec`), in the guest. */
  const engineExec = (t: Test, name: string) => async (script: string) => {
    const c = container(name);
    return guest(t, `${c.engine} exec ${c.id} /bin/sh -c ${quote(script)}`);
  };
  /** SCRIPT under `vmictl exec`, its stdout. */
  const ours = (t: Test, name: string) => async (script: string) => {
    const r = await vmictl(env, ['exec', ...OP_TIMEOUT, container(name).id, '--', '/bin/sh', '-c', script]);
    t.equal(r.code, 0, `vmictl exec ${name} exits 0${r.code ? ` (${r.stderr.trim()})` : ''}`);
    return r.stdout;
  };

  for (const [name, engine] of [['web', 'docker'], ['nobody', 'docker'], ['pod-web', 'podman']] as const) {
    await t.test(`exec in ${name} is confined as ${engine} exec`, async (t) => {
      const { ours: got, truth } = await compareConfinement(t, `${name}: vmictl exec vs ${engine} exec`, ours(t, name), engineExec(t, name));
      t.match(truth.get('lsm') ?? '', /\(enforce\)$/, `${engine} exec runs under an enforced AppArmor profile: ${truth.get('lsm')}`);
      if (name === 'nobody') t.match(got.get('id') ?? '', /^uid=65534\b.*gid=65534\b/, 'as the container user 65534:65534');
      // and as the container's init, seen from the guest's root namespace
      const init = gt.engines![engine].find((i) => i.Id === container(name).id)!.State.Pid;
      const outside = (await guestRun(env, OUTSIDE_SCRIPT(init))).output;
      await compareConfinement(t, `${name}: vmictl exec vs its init ${init}`, async () => [...got].filter(([k]) => k !== 'id' && k !== 'cgroup').map(([k, v]) => `${k}:\t${v}`).join('\n'), async () => outside,
        ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp', 'Seccomp_filters', 'lsm']);
    });
  }

  for (const name of ['web', 'pod-web']) {
    await t.test(`cp into and out of ${name}, as ${container(name).engine} exec reads the files`, async (t) => {
      const { engine, id } = container(name);
      const inPath = `/tmp/vmictl-cp-in-${process.pid}`;
      const outPath = `/tmp/vmictl-cp-out-${process.pid}`;
      t.teardown(() => guestRun(env, `${engine} exec ${id} rm -f ${inPath} ${outPath}`).then(() => undefined, () => undefined));

      // every byte value, a NUL and a lone CR among them, and a length that is no multiple of anything
      const data = Buffer.alloc(5003);
      for (let i = 0; i < data.length; i++) data[i] = (i * 151 + (i >> 8)) & 0xff;
      const src = join(local, `${name}.in`);
      writeFileSync(src, data);
      const cpIn = await vmictl(env, ['cp', ...OP_TIMEOUT, '--json', src, `${id}:${inPath}`]);
      t.equal(cpIn.code, 0, `vmictl cp into ${name} exits 0${cpIn.code ? ` (${cpIn.stderr.trim()})` : ''}`);
      const inside = await guest(t, `${engine} exec ${id} cat ${inPath} | od -An -v -tx1`);
      t.equal(hexOfOd(inside), data.toString('hex'), `${engine} exec cat reads the ${data.length} bytes copied in`);
      t.match(await guest(t, `${engine} exec ${id} stat -c '%F %s' ${inPath}`), new RegExp(`regular file ${data.length}\\b`), 'a regular file of that size');

      await guest(t, `${engine} exec ${id} sh -c ${quote(`head -c 7777 /dev/urandom > ${outPath}`)}`);
      const truth = hexOfOd(await guest(t, `${engine} exec ${id} cat ${outPath} | od -An -v -tx1`));
      t.equal(truth.length, 7777 * 2, `${engine} exec cat reads 7777 bytes in the container`);
      const dst = join(local, `${name}.out`);
      const cpOut = await vmictl(env, ['cp', ...OP_TIMEOUT, '--json', `${id}:${outPath}`, dst]);
      t.equal(cpOut.code, 0, `vmictl cp out of ${name} exits 0${cpOut.code ? ` (${cpOut.stderr.trim()})` : ''}`);
      t.equal(existsSync(dst) ? readFileSync(dst).toString('hex') : '', truth, 'the file copied out is byte for byte what the engine\'s exec reads');
    });
  }

  for (const name of ['ro', 'pod-loop']) await t.test(`pause and unpause of ${name} freeze and thaw its cgroup, and every process of it`, async (t) => {
    const { id, engine } = container(name);
    const cg = gt.containers.find((c) => c.id === id)?.cgroup;
    if (!cg) return t.fail('ro has no cgroup in the ground truth');
    const dir = `/sys/fs/cgroup${cg}`;
    const frozen = async () => {
      const out = await guest(t, `cat ${dir}/cgroup.freeze; grep '^frozen ' ${dir}/cgroup.events`);
      return out.replace(/\r/g, '').trim().split('\n').join(' | ');
    };
    /** Where each process of the cgroup sleeps in the kernel (its wchan), by pid. */
    const waits = async () => (await guest(t, `for p in $(cat ${dir}/cgroup.procs); do printf '%s %s %s\\n' $p "$(cat /proc/$p/wchan)" "$(sed -n 's/^State:[[:space:]]*//p' /proc/$p/status)"; done`))
      .replace(/\r/g, '').trim().split('\n').filter((l) => /^\d+ /.test(l));
    // a frozen task sits in the freezer's trap, do_freezer_trap (inlined into get_signal in some builds)
    const trapped = (line: string) => /^\d+ (do_freezer_trap|get_signal) S /.test(line);
    const psState = async () => {
      const r = await vmictl(env, ['ps', '--json']);
      return (JSON.parse(r.stdout || '[]') as PsJson[]).find((p) => p.id === id)?.state;
    };
    t.teardown(() => guestRun(env, `echo 0 > ${dir}/cgroup.freeze`).then(() => undefined, () => undefined));

    t.equal(await frozen(), '0 | frozen 0', `${name} runs: cgroup.freeze 0, cgroup.events frozen 0`);
    const before = await waits();
    t.ok(before.length > 0 && !before.some(trapped), `no process of ${name} is in the freezer's trap: ${before.join('; ')}`);

    const p = await vmictl(env, ['pause', ...OP_TIMEOUT, '--json', id]);
    t.equal(p.code, 0, `vmictl pause ${name} exits 0${p.code ? ` (${p.stderr.trim()})` : ''}`);
    const r = (JSON.parse(p.stdout || '[{}]') as unknown[])[0] as { method?: string; directory?: string };
    t.same({ method: r.method, directory: r.directory }, { method: 'cgroup2', directory: dir }, `through cgroup.freeze of ${dir}`);
    t.equal(await frozen(), '1 | frozen 1', 'the kernel says the cgroup is frozen: cgroup.freeze 1, cgroup.events frozen 1');
    const during = await waits();
    // pod-loop's shell replaces its `sleep` child every second by itself: a pid of before may be
    // gone on its own, and its successor is there; its init, the first, stays
    const pids = (lines: string[]) => lines.map((l) => l.split(' ')[0]);
    t.equal(during.length, before.length, `as many processes (${pids(before).join(' ')} → ${pids(during).join(' ')})`);
    t.ok(pids(during).includes(pids(before)[0]!), `its first process ${pids(before)[0]} is still there`);
    t.ok(during.every(trapped), `every process waits in the freezer's trap: ${during.join('; ')}`);
    t.equal(await psState(), 'paused', 'vmictl ps says paused');
    const seen = await guestRun(env, `${engine} inspect -f '{{.State.Status}} {{.State.Paused}}' ${id}`);
    t.comment(`${engine} inspect, which learns of pauses through its own API only: ${seen.output.trim()}`);

    const u = await vmictl(env, ['unpause', ...OP_TIMEOUT, '--json', id]);
    t.equal(u.code, 0, `vmictl unpause ${name} exits 0${u.code ? ` (${u.stderr.trim()})` : ''}`);
    t.equal(await frozen(), '0 | frozen 0', 'thawed: cgroup.freeze 0, cgroup.events frozen 0');
    // a thawed task leaves the trap when it next runs: look again, a bounded number of times
    let after = await waits();
    for (let i = 0; i < 30 && after.some(trapped); i++) after = await waits();
    t.ok(after.length > 0 && !after.some(trapped), `every process left the freezer's trap: ${after.join('; ')}`);
    t.equal(await psState(), 'running', 'vmictl ps says running');
    t.match((await guest(t, `${engine} inspect -f '{{.State.Status}} {{.State.Paused}}' ${id}`)).trim(), /^running false$/, `${engine} sees ${name} running, not paused`);
  });

  await t.test('syscall into web, whose only process is httpd blocked in accept, on a guest where every thread sleeps', async (t) => {
    const { id } = container('web');
    const init = gt.engines!.docker.find((i) => i.Id === id)!.State.Pid;
    const dir = `/sys/fs/cgroup/system.slice/docker-${id}.scope`;
    const getpid = await vmictl(env, ['syscall', '--timeout', '120000', id, 'getpid']);
    t.equal(getpid.code, 0, `vmictl syscall web getpid exits 0${getpid.code ? ` (${getpid.stderr.trim()})` : ''}`);
    t.match(getpid.stdout, /^getpid\(\) = 1$/m, 'getpid() = 1: httpd is pid 1 of its namespace');
    t.match(getpid.stderr, new RegExp(`injected into pid ${init} \\(httpd\\)`), `injected into httpd, host pid ${init} as docker inspect says`);
    t.match((await guest(t, `grep '^frozen ' ${dir}/cgroup.events`)).trim(), /^frozen 0$/, 'web is not left frozen');
    t.equal((await guest(t, `nsenter -t ${init} -a wget -q -O - http://127.0.0.1/etc/hostname`)).trim(), id.slice(0, 12), 'httpd still serves (its accept was restarted): the container\'s /etc/hostname');
  });

  for (const engine of ['docker', 'podman'] as const) await t.test(`kill of a container ends it, as ${engine} sees it`, async (t) => {
    const name = `vmictl-kill-${engine}-${process.pid}`;
    t.teardown(() => guestRun(env, `${engine} rm -f ${name} >/dev/null 2>&1; true`, 300_000).then(() => undefined, () => undefined));
    // a container of its own: the boot's eight are the ground truth of the other tests
    const made = await guest(t, `${engine} run -d --network none --name ${name} ${engine === 'podman' ? 'localhost/' : ''}vmictl/busybox:1 sleep 1000000000`, 600_000);
    const id = /\b([0-9a-f]{64})\b/.exec(made)?.[1];
    if (!id) return t.fail(`${engine} run printed no id: ${made}`);
    const state = (await guest(t, `${engine} inspect -f '{{.State.Status}} {{.State.Pid}}' ${id}`)).trim();
    t.match(state, /^running \d+$/, `${engine} sees it running`);
    const pid = Number(state.split(' ')[1]);

    const k = await vmictl(env, ['kill', ...OP_TIMEOUT, '--json', id]);
    t.equal(k.code, 0, `vmictl kill exits 0${k.code ? ` (${k.stderr.trim()})` : ''}`);
    const r = (JSON.parse(k.stdout || '[{}]') as unknown[])[0] as { signal?: { name?: string }; outcome?: { signalled?: number[] }; remaining?: number[] };
    t.equal(r.signal?.name, 'SIGKILL', 'SIGKILL, the default');
    t.ok(r.outcome?.signalled?.includes(pid), `sent to its init, pid ${pid}`);
    t.same(r.remaining, [], 'no process of it remains, as vmictl sees it');
    // the engine learns of the end from its shim (containerd's, conmon); `wait` returns once it has
    t.equal((await guest(t, `timeout 300 ${engine} wait ${id}`, 420_000)).trim(), '137', `${engine} wait: exit status 137 (128 + SIGKILL)`);
    t.equal((await guest(t, `${engine} inspect -f '{{.State.Status}} {{.State.Running}} {{.State.ExitCode}}' ${id}`)).trim(), 'exited false 137', `${engine} inspect: exited, with 137`);
    const ps = JSON.parse((await vmictl(env, ['ps', '--json'])).stdout || '[]') as PsJson[];
    t.notOk(ps.some((p) => p.id === id), 'vmictl ps no longer lists it');
  });

  await t.test('stop: SIGTERM to the init, SIGKILL after the grace period, as docker sees the ends', async (t) => {
    const trapping = `vmictl-stop-term-${process.pid}`;
    const deaf = `vmictl-stop-kill-${process.pid}`;
    t.teardown(() => guestRun(env, `docker rm -f ${trapping} ${deaf} >/dev/null 2>&1; true`, 300_000).then(() => undefined, () => undefined));
    // one init that ends on SIGTERM with a status of its own, and one that cannot get it: a pid
    // namespace's init without a handler never receives SIGTERM, so only the SIGKILL ends it
    const made = await guest(t, `docker run -d --network none --name ${trapping} vmictl/busybox:1 sh -c 'trap "exit 3" TERM; while :; do sleep 1; done' & docker run -d --network none --name ${deaf} vmictl/busybox:1 sleep 1000000000; wait`, 600_000);
    const ids = made.match(/\b[0-9a-f]{64}\b/g) ?? [];
    t.equal(ids.length, 2, 'docker run started both');
    const idOf = async (name: string) => (await guest(t, `docker inspect -f '{{.Id}}' ${name}`)).trim();
    const [termId, killId] = [await idOf(trapping), await idOf(deaf)];

    const term = await vmictl(env, ['stop', ...OP_TIMEOUT, '--json', '-t', '60', termId]);
    t.equal(term.code, 0, `vmictl stop ${trapping} exits 0${term.code ? ` (${term.stderr.trim()})` : ''}`);
    const r1 = (JSON.parse(term.stdout || '[{}]') as unknown[])[0] as { endedOnTerm?: boolean; kill?: unknown; remaining?: number[] };
    t.same({ endedOnTerm: r1.endedOnTerm, kill: r1.kill, remaining: r1.remaining }, { endedOnTerm: true, kill: undefined, remaining: [] }, 'it ended on SIGTERM, within the grace period, with no SIGKILL');
    t.equal((await guest(t, `timeout 300 docker wait ${termId}`, 420_000)).trim(), '3', 'docker wait: exit status 3, its trap\'s');

    const kill = await vmictl(env, ['stop', ...OP_TIMEOUT, '--json', '-t', '3', killId]);
    t.equal(kill.code, 0, `vmictl stop ${deaf} exits 0${kill.code ? ` (${kill.stderr.trim()})` : ''}`);
    const r2 = (JSON.parse(kill.stdout || '[{}]') as unknown[])[0] as { endedOnTerm?: boolean; kill?: { signalled?: number[] }; remaining?: number[] };
    t.equal(r2.endedOnTerm, false, 'SIGTERM did not end it');
    t.ok((r2.kill?.signalled ?? []).length > 0, `SIGKILL after 3 s, to pids ${r2.kill?.signalled?.join(', ')}`);
    t.same(r2.remaining, [], 'no process of it remains');
    t.equal((await guest(t, `timeout 300 docker wait ${killId}`, 420_000)).trim(), '137', 'docker wait: exit status 137 (128 + SIGKILL)');
    const ps = JSON.parse((await vmictl(env, ['ps', '--json'])).stdout || '[]') as PsJson[];
    t.notOk(ps.some((p) => p.id === termId || p.id === killId), 'vmictl ps lists neither');
  });

  await t.test('the engine-paused container is as it was', async (t) => {
    const { id } = container('paused');
    const cg = gt.containers.find((c) => c.id === id)?.cgroup;
    t.equal((await guest(t, `cat /sys/fs/cgroup${cg}/cgroup.freeze; docker inspect -f '{{.State.Paused}}' ${id}`)).replace(/\r/g, '').trim(), '1\ntrue', 'still frozen, and paused as docker says');
  });
});
