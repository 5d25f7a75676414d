/**
 * `vmictl exec` against the real test VM, checked from inside the guest: the container's hostname,
 * the exit status, 5 MB of output intact (sha256 computed by the guest), the command in the
 * container's namespaces and cgroup (looked at in /proc while it runs), and nothing left in the
 * container process it was forked from (its descriptors and mappings), in the root helper of
 * --privileged, or in the process list afterwards.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { execInContainer } from '../../lib/ops/exec';
import { guestRun, readGroundTruth, testVm, type VmEnv } from '../helpers/vm';

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

/** The root-namespace processes (pid and command), without the control shell's own commands. */
async function rootProcesses(env: VmEnv): Promise<string[]> {
  const r = await guestRun(env, 'ps -o pid,ppid,comm');
  const shell = (await guestRun(env, 'pidof control-shell')).output.trim();
  return r.output.split('\n').map((l) => l.trim()).filter((l) => l && !/^PID/.test(l))
    // the control shell forks a new sh/ps/grep for every command; kernel workers come and go
    .filter((l) => !l.split(/\s+/)[1]?.startsWith(shell) && !/kworker/.test(l) && !/ (ps|sh)$/.test(l));
}

/**
 * What a guest command prints once it says the same twice in a row (or `want`): busyd, a shell
 * looping every 20 ms, opens and closes descriptors of its own, so one look may catch one in
 * passing; a descriptor vmictl leaked stays, whatever the number of looks.
 */
async function settled(env: VmEnv, command: string, want?: string): Promise<string> {
  let last = (await guestRun(env, command)).output;
  for (let i = 0; i < 8; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const now = (await guestRun(env, command)).output;
    if (now === (want ?? last)) return now;
    last = now;
  }
  return last;
}

t.test('vmictl exec in containers of the test VM', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');
  const gt = readGroundTruth(env.groundTruthFile);
  const ticker = gt.containers.find((c) => c.name === 'ticker')!;
  const busyd = Number((await guestRun(env, 'pidof busyd')).output.trim().split(/\s+/)[0]);
  t.ok(busyd > 0, `busyd runs (pid ${busyd}): the helper of --privileged for the leftover checks`);
  const source = ticker.initPid;

  await t.test('the CLI: /bin/hostname prints the container hostname, exit 7 comes back', async (t) => {
    const inside = await guestRun(env, 'runc exec ticker /bin/hostname');
    const r = await vmictl(env, ['exec', 'ticker', '--', '/bin/hostname']);
    t.equal(r.code, 0, `exit 0 (${r.stderr.trim()})`);
    t.equal(r.stdout, inside.output.replace(/\r\n/g, '\n'), `prints ${JSON.stringify(inside.output.trim())}, as runc exec does`);
    t.equal(r.stdout.trim(), ticker.hostname);
    const seven = await vmictl(env, ['exec', 'ticker', '--', '/bin/sh', '-c', 'echo to-stderr >&2; exit 7']);
    t.equal(seven.code, 7, 'vmictl exits with the command\'s status');
    t.match(seven.stderr, /to-stderr/, 'its stderr is relayed to stderr');
  });

  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm.close());

  await t.test('5 MB on stdout arrive intact', async (t) => {
    const size = 5 * 1024 * 1024;
    const made = await guestRun(env, `runc exec ticker sh -c 'head -c ${size} /dev/urandom > /tmp/big.bin && sha256sum /tmp/big.bin'`, 120_000);
    t.equal(made.status, 0, 'a 5 MB random file made inside the container');
    const want = made.output.trim().split(/\s+/)[0];
    t.teardown(() => guestRun(env, 'runc exec ticker rm -f /tmp/big.bin'));
    const hash = createHash('sha256');
    let bytes = 0;
    let chunks = 0;
    const r = await execInContainer(vm, { container: 'ticker', command: ['/bin/cat', '/tmp/big.bin'], stdout: (d) => { hash.update(d); bytes += d.length; chunks++; }, timeout: 60_000, callTimeout: 60_000 });
    t.equal(r.exitCode, 0);
    t.equal(bytes, size, `${bytes} bytes in ${chunks} chunks`);
    t.equal(hash.digest('hex'), want, 'sha256 on the host equals the guest\'s own');
  });

  await t.test('the command runs in the container\'s namespaces and cgroup; nothing is left behind', async (t) => {
    const fdsBefore = await settled(env, `ls /proc/${source}/fd 2>/dev/null | sort -n`);
    const mapsBefore = (await guestRun(env, `cat /proc/${source}/maps`)).output;
    const procsBefore = await rootProcesses(env);
    let out = '';
    // a background sleep outlives the exec (its output goes elsewhere, so the pipes close)
    const r = await execInContainer(vm, {
      container: 'ticker',
      command: ['/bin/sh', '-c', 'sleep 31337 </dev/null >/dev/null 2>&1 & echo $!; for n in mnt uts ipc net pid cgroup; do readlink /proc/self/ns/$n; done'],
      stdout: (d) => { out += d.toString(); },
      timeout: 60_000,
    });
    t.equal(r.exitCode, 0);
    t.equal(r.helperPid, source, 'it was forked from the container\'s init');
    t.equal(r.source.init, true);
    const sleeper = Number((await guestRun(env, "for p in $(pidof sleep); do grep -q 31337 /proc/$p/cmdline && echo $p; done")).output.trim().split(/\s+/)[0]);
    t.ok(sleeper > 0, `the background sleep runs (host pid ${sleeper})`);
    t.teardown(() => guestRun(env, `kill ${sleeper}`));
    const [nsPid] = out.split('\n');
    const status = (await guestRun(env, `grep NSpid /proc/${sleeper}/status`)).output;
    t.equal(status.trim().split(/\s+/).pop(), nsPid.trim(), `the sleep's pid inside the container (${nsPid.trim()}) is the innermost of its NSpid`);
    for (const ns of ['mnt', 'uts', 'ipc', 'net', 'pid', 'cgroup']) {
      const theirs = (await guestRun(env, `readlink /proc/${sleeper}/ns/${ns}`)).output.trim();
      const init = (await guestRun(env, `readlink /proc/${ticker.initPid}/ns/${ns}`)).output.trim();
      t.equal(theirs, init, `${ns} namespace is the container's (${init})`);
      t.match(out, init, `the command itself saw ${init}`);
    }
    const cg = (await guestRun(env, `cat /proc/${sleeper}/cgroup`)).output.trim();
    t.equal(cg, (await guestRun(env, `cat /proc/${ticker.initPid}/cgroup`)).output.trim(), `cgroup is the container's (${cg})`);
    const root = (await guestRun(env, `readlink /proc/${sleeper}/root; ls /proc/${sleeper}/root/workload.sh`)).output;
    t.match(root, /workload\.sh/, 'its root is the container\'s');
    await guestRun(env, `kill ${sleeper}`);
    await new Promise((r) => setTimeout(r, 500));
    t.equal(await settled(env, `ls /proc/${source}/fd 2>/dev/null | sort -n`, fdsBefore), fdsBefore, 'the container\'s init has the same descriptors as before');
    t.equal(await settled(env, `cat /proc/${source}/maps`, mapsBefore), mapsBefore, 'and the same mappings');
    t.same(await rootProcesses(env), procsBefore, 'no extra process (child, zombie) in the guest');
  });

  await t.test('an abort kills the command and leaves nothing behind', async (t) => {
    const fdsBefore = await settled(env, `ls /proc/${busyd}/fd 2>/dev/null | sort -n`);
    const procsBefore = await rootProcesses(env);
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('test abort')), 3000).unref();
    const err = await execInContainer(vm, { container: 'ticker', command: ['/bin/sleep', '4242'], privileged: true, helperPid: busyd, signal: ac.signal, timeout: 60_000 }).then(() => null, (e: unknown) => e);
    t.match((err as Error)?.message, /aborted/, `the exec ends with an abort (${(err as Error)?.message})`);
    const left = (await guestRun(env, 'for p in $(pidof sleep); do grep -q 4242 /proc/$p/cmdline && echo $p; done')).output.trim();
    t.equal(left, '', 'the command was killed');
    t.equal(await settled(env, `ls /proc/${busyd}/fd 2>/dev/null | sort -n`, fdsBefore), fdsBefore, 'the helper has the same descriptors as before');
    t.same(await rootProcesses(env), procsBefore, 'no extra process');
  });

  await t.test('a program that does not exist: an error, and nothing left', async (t) => {
    const procsBefore = await rootProcesses(env);
    const err = await execInContainer(vm, { container: 'ticker', command: ['/no/such/program'], timeout: 60_000 }).then(() => null, (e: unknown) => e);
    t.match((err as Error)?.message, /ENOENT/, 'execve answers ENOENT');
    t.same(await rootProcesses(env), procsBefore, 'the child and the grandchild were reaped');
  });
});
