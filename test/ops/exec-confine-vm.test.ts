/**
 * `vmictl exec` is confined as the container's own processes (issue 17): in the test VM, what the
 * command sees of itself (id, capability sets, NoNewPrivs, seccomp, LSM label, cgroup) equals what
 * `runc exec` gives inside the guest, and what /proc/<init>/status says of the container's init;
 * -u changes the user only, as `runc exec --user` does; --privileged is the one way to more, and
 * says so; an abort leaves nothing behind.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { execInContainer } from '../../lib/ops/exec';
import { guestRun, readGroundTruth, testVm, type VmEnv } from '../helpers/vm';
import { compareConfinement, OUTSIDE_SCRIPT, parseConfinement } from '../helpers/confinement';

/** vmictl itself (cli/main.ts under the TypeScript loader this test runs with). */
function vmictl(env: VmEnv, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const loader = process.execArgv.filter((a) => a.includes('typescript'));
  const main = join(__dirname, '..', '..', 'cli', 'main.ts');
  const child = spawn(process.execPath, [...loader, main, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, VMICTL_QMP: env.qmp, VMICTL_GDB: env.gdb },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
}

/** A shell line quoted for the guest's sh. */
const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

t.test('vmictl exec is confined as the container\'s processes', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');
  const gt = readGroundTruth(env.groundTruthFile);

  /** `vmictl exec ARGS -- sh -c SCRIPT`, its stdout (exit 0 checked). */
  const ours = (args: string[]) => async (script: string) => {
    const r = await vmictl(env, ['exec', ...args, '--', '/bin/sh', '-c', script]);
    t.equal(r.code, 0, `vmictl exec ${args.join(' ')} exits 0 (${r.stderr.trim()})`);
    return r.stdout;
  };
  /** The same script under `runc exec ARGS` in the guest. */
  const runc = (args: string) => async (script: string) => {
    const r = await guestRun(env, `runc exec ${args} /bin/sh -c ${quote(script)}`);
    t.equal(r.status, 0, `runc exec ${args} exits 0`);
    return r.output;
  };
  /** The container init's own lines, read from the guest's root namespace. */
  const initStatus = (pid: number) => async () => (await guestRun(env, OUTSIDE_SCRIPT(pid))).output;

  for (const name of ['ticker', 'web']) {
    await t.test(`${name}: as runc exec, and as its init`, async (t) => {
      const c = gt.containers.find((x) => x.name === name)!;
      const { ours: got } = await compareConfinement(t, `${name} vs runc exec`, ours([name]), runc(c.id));
      t.not(got.get('CapBnd'), parseConfinement((await guestRun(env, OUTSIDE_SCRIPT(1))).output).get('CapBnd'), 'the bounding set is not the root namespace\'s');
      t.equal(got.get('NoNewPrivs'), '1', 'no_new_privs, as the OCI config asks');
      await compareConfinement(t, `${name} vs its init ${c.initPid}`, async () => CONFINEMENT_OF(got), initStatus(c.initPid), ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp', 'Seccomp_filters', 'lsm']);
    });
  }

  await t.test('-u 65534:65534 changes the user only, as runc exec --user does', async (t) => {
    const { ours: got } = await compareConfinement(t, 'ticker -u 65534:65534 vs runc exec --user', ours(['-u', '65534:65534', 'ticker']), runc('--user 65534:65534 ticker'));
    t.match(got.get('id'), /^uid=65534\b.* gid=65534\b/, 'uid and gid 65534');
    t.equal(got.get('CapEff'), '0000000000000000', 'a non-root user has no effective capabilities');
  });

  await t.test('--privileged says so once, and has the root namespace\'s capabilities; -v names the process', async (t) => {
    const r = await vmictl(env, ['exec', '--privileged', 'ticker', '--', '/bin/sh', '-c', "grep '^CapBnd' /proc/self/status"]);
    t.equal(r.code, 0, `exit 0 (${r.stderr.trim()})`);
    t.equal(r.stderr.match(/--privileged/g)?.length, 1, `one notice on stderr: ${JSON.stringify(r.stderr.trim())}`);
    const hostBnd = parseConfinement((await guestRun(env, OUTSIDE_SCRIPT(1))).output).get('CapBnd');
    t.equal(parseConfinement(r.stdout).get('CapBnd'), hostBnd, `CapBnd ${hostBnd}, the root namespace's`);
    const ticker = gt.containers.find((x) => x.name === 'ticker')!;
    const v = await vmictl(env, ['exec', '-v', 'ticker', '--', '/bin/true']);
    t.equal(v.code, 0);
    t.match(v.stderr, new RegExp(`started from the container's init pid ${ticker.initPid} \\(sh\\)`), `-v: ${JSON.stringify(v.stderr.trim())}`);
    t.notMatch(v.stderr, /privileged/, 'no --privileged notice without it');
  });

  await t.test('an abort kills the command, and the container\'s init is as before', async (t) => {
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    const init = gt.containers.find((x) => x.name === 'ticker')!.initPid;
    const fds = async () => (await guestRun(env, `ls /proc/${init}/fd | sort -n | tr '\\n' ' '; echo`)).output.trim();
    const before = await fds();
    const ac = new AbortController();
    let started = 0;
    const run = execInContainer(vm, { container: 'ticker', command: ['/bin/sleep', '4343'], signal: ac.signal, timeout: 60_000, onStarted: (i) => { started = i.pid; setTimeout(() => ac.abort(new Error('test abort')), 1500).unref(); } });
    const err = await run.then(() => null, (e: unknown) => e);
    t.match((err as Error)?.message, /aborted/, `the exec ends with an abort (${(err as Error)?.message})`);
    t.ok(started > 0, `the command had started (host pid ${started})`);
    const left = (await guestRun(env, 'for p in $(pidof sleep); do grep -q 4343 /proc/$p/cmdline && echo $p; done')).output.trim();
    t.equal(left, '', 'the command was killed');
    const zombies = (await guestRun(env, `grep -l '^PPid:[[:space:]]*${init}$' /proc/[0-9]*/status 2>/dev/null | while read f; do grep -H '^State' $f; done`)).output;
    t.notMatch(zombies, /zombie|\(Z\)/, 'no zombie child of the init');
    let now = await fds();
    // the init's loop opens a fifo and a file for a moment: look until it is between them
    for (let i = 0; i < 8 && now !== before; i++) now = await fds();
    t.equal(now, before, 'the init has the same descriptors as before');
    t.match((await guestRun(env, `grep State /proc/${init}/status`)).output, /S \(sleeping\)|R \(running\)/, 'and runs on');
  });
});

/** The fields of a parsed confinement back as CONFINEMENT_SCRIPT prints them. */
function CONFINEMENT_OF(m: Map<string, string>): string {
  return [...m].map(([k, v]) => (k === 'id' ? v : `${k}:\t${v}`)).join('\n');
}
