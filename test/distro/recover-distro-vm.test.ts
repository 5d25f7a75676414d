/**
 * `vmictl recover` on the distro VM: a `vmictl syscall` killed with SIGKILL while its target, a
 * process of the `nobody` docker container (uid 65534, a shell loop), sits in an injected pause()
 * that never ends by itself. The guest's /proc says where the target is: in system call 34
 * (pause) while it is held, and back in its own calls after `vmictl recover`, the container's loop
 * going on and the engine's exec still working in it. Left as it was, the process would stay in
 * pause() for good.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import type { JournalEntry } from '../../lib/inject/journal';
import { distroVm, guestRun, readGroundTruth, skipWithReason } from '../helpers/vm';

const run = promisify(execFile);
const cli = resolve(__dirname, '../../bin/vmictl');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.setTimeout(1_800_000);

t.test('the distro VM: kill -9 of vmictl during an injected pause(), then recover', async (t) => {
  const env = distroVm(t);
  if (!env) return;
  if (!existsSync(join(__dirname, '../../dist/cli/main.js'))) return skipWithReason(t, 'dist/ is not built (make build)');
  if (!env.control) return t.fail('the distro VM has no control channel');
  const gt = readGroundTruth(env.groundTruthFile);
  const nobody = gt.engines?.docker.find((i) => i.Name === '/nobody');
  if (!nobody) return t.fail('no nobody container in the ground truth');
  const runtime = mkdtempSync(join(tmpdir(), 'vmictl-distro-recover-'));
  const dir = join(runtime, 'vmictl');
  const vmEnv = { ...process.env, VMICTL_QMP: env.qmp, VMICTL_GDB: env.gdb, XDG_RUNTIME_DIR: runtime };
  const recover = () => run(process.execPath, [cli, 'recover', '--json'], { env: vmEnv, timeout: 600_000 })
    .catch((e: { stdout?: string; stderr?: string; message: string }) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? e.message }));
  // a journal left by a failed run is recovered before it goes: the next tests need this guest
  t.teardown(async () => {
    if (existsSync(dir) && readdirSync(dir).some((n) => n.startsWith('inject-'))) await recover();
    rmSync(runtime, { recursive: true, force: true });
  });
  /** The system call a guest task is in, as its /proc/PID/syscall says (its first word). */
  const inSyscall = async (pid: number) => (await guestRun(env, `cut -d' ' -f1 /proc/${pid}/syscall`)).output.replace(/\r/g, '').trim();

  // its init, the loop's shell: a root helper's own session journals too, so the target is named
  const child = spawn(process.execPath, [cli, 'syscall', '--timeout', '180000', '--call-timeout', '3600000', '--pid', String(nobody.State.Pid), nobody.Id, 'pause'], { env: vmEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.teardown(() => { child.kill('SIGKILL'); });

  // the journal names the target once it is held; the guest then sees it in pause()
  let entry: JournalEntry | undefined;
  let journal = '';
  for (let i = 0; i < 600 && !entry && child.exitCode === null; i++) {
    await sleep(500);
    for (const name of existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith('inject-') && n.endsWith('.json')) : []) {
      try {
        const e = JSON.parse(readFileSync(join(dir, name), 'utf8')) as JournalEntry;
        if (e.target.tgid === nobody.State.Pid) [entry, journal] = [e, join(dir, name)];
      } catch { /* being written, or removed meanwhile */ }
    }
  }
  if (!entry) return t.fail(`vmictl syscall never held a target${child.exitCode !== null ? ` (it exited ${child.exitCode}: ${stderr.trim()})` : ''}`);
  const pid = entry.target.tgid;
  t.ok((await guestRun(env, `grep -qx '0::/system.slice/docker-${nobody.Id}.scope' /proc/${pid}/cgroup`)).status === 0, `the target, pid ${pid} (${entry.target.comm}), is a process of nobody`);
  let now = '';
  for (let i = 0; i < 120 && now !== '34'; i++) { now = await inSyscall(pid); if (now !== '34') await sleep(1000); }
  t.equal(now, '34', `the guest sees pid ${pid} in system call 34, the injected pause()`);
  child.kill('SIGKILL');
  await exited;
  t.ok(existsSync(journal), 'the killed vmictl left its journal');
  // no guest command now: the dead session's breakpoint stays in QEMU, and any process that
  // reaches it (another container's busybox, whose code lies at the same addresses) stops the VM
  // until recover
  await sleep(3000);

  const r = await recover();
  const outcomes = JSON.parse(r.stdout || '[]') as Array<{ action: string; pid: number; detail: string }>;
  t.same(outcomes.map((o) => [o.action, o.pid]), [['restored', entry.target.pid]], `recover restored pid ${entry.target.pid}: ${outcomes.map((o) => o.detail).join('; ')}${r.stderr ? ` (${r.stderr.trim()})` : ''}`);
  t.same(existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith('inject-')) : [], [], 'the journal is removed');

  // back in its own calls: the loop's wait4 (61) or the sleep's nanosleep (35 or clock_nanosleep
  // 230), never pause() again; its loop forks a new sleep every 7 s
  let back = '34';
  for (let i = 0; i < 60 && back === '34'; i++) { back = await inSyscall(pid); if (back === '34') await sleep(1000); }
  t.not(back, '34', `pid ${pid} left the injected pause(): now in system call ${back}`);
  const sleeps = async () => (await guestRun(env, `for p in $(cat /sys/fs/cgroup/system.slice/docker-${nobody.Id}.scope/cgroup.procs); do [ "$(cat /proc/$p/comm)" = sleep ] && echo $p; done; true`)).output.replace(/\r/g, '').trim();
  const first = await sleeps();
  let later = first;
  for (let i = 0; i < 30 && later === first; i++) { await sleep(1000); later = await sleeps(); }
  t.not(later, first, `the container's loop goes on: its sleep went from pid ${first || 'none'} to ${later || 'none'}`);
  const exec = await guestRun(env, `docker exec ${nobody.Id} id -u`, 300_000);
  t.equal(exec.output.replace(/\r/g, '').trim(), '65534', 'docker exec still runs in it');
});
