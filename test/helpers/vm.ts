/**
 * The test VM for integration tests. `make test` boots one VM and exports VMICTL_QMP, VMICTL_GDB and
 * VMICTL_GROUND_TRUTH; tests share it. Without them (a single test file run by hand) a private VM is
 * booted from test-vms/build for the file and stopped at its end. Where no VM can be had, the test
 * is skipped with the reason printed, except in CI (CI=true), where it fails: CI always has one.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import tap, { type Test } from 'tap';
import { Vm } from '../../lib/vm';

const run = promisify(execFile);
export const TEST_VMS = resolve(__dirname, '../../test-vms');

export interface VmEnv {
  qmp: string;
  gdb: string;
  groundTruthFile: string;
  /** The guest's control shell (a serial port), for tests to act and look inside the guest. */
  control?: string;
  runDir?: string;
}

export interface GroundTruthTask {
  pid: number; tgid: number; ppid: number; comm: string; nspid: number; nspids: number[];
  uid: number; euid: number; gid: number; egid: number; cgroup: string;
  ns: Record<'pid' | 'mnt' | 'uts' | 'net' | 'ipc' | 'cgroup' | 'user' | 'time', number>;
}
export interface GroundTruthContainer {
  id: string; name: string; hostname: string; initPid: number; cgroup: string; runtime: string;
}
/** The part of one `docker inspect` / `podman inspect` object the tests read (the guest writes it whole). */
export interface EngineInspect {
  Id: string;
  Name: string;
  State: { Status: string; Running: boolean; Paused: boolean; Pid: number };
  Config: { User?: string; Image?: string; Hostname?: string };
  /** docker: the image id; podman: the image id too (ImageName has the name) */
  Image: string;
  ImageName?: string;
  AppArmorProfile?: string;
  HostConfig: { PidMode?: string; Privileged?: boolean; ReadonlyRootfs?: boolean };
}
export interface GroundTruth {
  version: number;
  /** lsm: /sys/kernel/security/lsm, written by the distro VM only */
  kernel: { release: string; banner: string; cmdline: string; meltdown: string; pti: boolean; kallsyms: Record<string, string>; lsm?: string };
  containers: GroundTruthContainer[];
  /** The distro VM only: each engine's own view of its containers, as its inspect command prints it. */
  engines?: { docker: EngineInspect[]; podman: EngineInspect[] };
  collector: number;
  tasks: GroundTruthTask[];
}

export function readGroundTruth(file: string): GroundTruth {
  return JSON.parse(readFileSync(file, 'utf8')) as GroundTruth;
}

type TapLike = Test;

/** Records a skipped check with its reason, which TAP prints (`# SKIP reason`). */
export function skipWithReason(t: Test, reason: string): void {
  t.pass(reason, { skip: reason });
}

/** The image test-vms/run.sh boots: IMAGE_DIR (the Debian 13 kernel's under `make test-trixie`) or build/. */
function imageDir(env: Record<string, string | undefined> = process.env): string {
  return env.IMAGE_DIR ?? join(TEST_VMS, 'build');
}

/** Why no VM can be booted here, or null when one can. */
export function vmUnavailableReason(env: Record<string, string | undefined> = process.env): string | null {
  if (!existsSync(join(imageDir(env), 'initrd.cpio.gz'))) return `test VM image not built in ${imageDir(env)} (make -C test-vms image)`;
  const hasQemu = (process.env.PATH ?? '').split(':').some((d) => existsSync(join(d, 'qemu-system-x86_64')));
  if (!hasQemu) return 'qemu-system-x86_64 is not installed (make setup)';
  return null;
}

export interface BootOptions {
  /** Extra environment for test-vms/run.sh (ACCEL, APPEND, SMP, ...). */
  env?: Record<string, string>;
}

/**
 * How long run.sh may take to boot: its own READY_TIMEOUT (the default it uses when unset), so that
 * its report of a guest that did not become ready is what a slow boot ends with, plus QEMU's start,
 * the ground truth's last bytes and the stop of a failed VM.
 */
export function bootTimeoutMs(env: Record<string, string | undefined>): number {
  const ready = Number(env.READY_TIMEOUT ?? '') || 180;
  return (ready + 60) * 1000;
}

/** Boots a private VM for this test (always a new one) and stops it at teardown. */
export async function bootVm(t: TapLike, opts: BootOptions = {}): Promise<VmEnv | null> {
  const runEnv = { ...process.env, ...opts.env };
  const why = vmUnavailableReason(runEnv);
  if (why) {
    if (process.env.CI) t.fail(`the test VM is required in CI: ${why}`);
    else skipWithReason(t, `no test VM: ${why}`);
    return null;
  }
  const runDir = mkdtempSync(join(tmpdir(), 'vmictl-vm-'));
  const script = join(TEST_VMS, 'run.sh');
  t.teardown(async () => {
    await run(script, ['stop', runDir]).catch(() => undefined);
    rmSync(runDir, { recursive: true, force: true });
  });
  const { stdout } = await run(script, ['start', runDir], { env: runEnv, timeout: bootTimeoutMs(runEnv) });
  const env = parseVmEnv(stdout);
  return { ...env, runDir };
}

let fileVm: Promise<VmEnv | null> | undefined;

/**
 * The shared VM from `make test`, or one private VM booted for this test file (once, whatever the
 * number of subtests that ask) and stopped when the file ends.
 */
export async function testVm(t: TapLike): Promise<VmEnv | null> {
  const { VMICTL_QMP, VMICTL_GDB, VMICTL_GROUND_TRUTH, VMICTL_CONTROL } = process.env;
  if (VMICTL_QMP && VMICTL_GDB && VMICTL_GROUND_TRUTH) {
    return { qmp: VMICTL_QMP, gdb: VMICTL_GDB, groundTruthFile: VMICTL_GROUND_TRUTH, control: VMICTL_CONTROL };
  }
  const why = vmUnavailableReason();
  if (why) return bootVm(t);
  // the root test outlives every subtest, so the VM is stopped when the whole file is done
  fileVm ??= bootVm(tap);
  return fileVm;
}

export function parseVmEnv(text: string): VmEnv {
  const get = (k: string) => {
    const m = new RegExp(`^${k}=(.*)$`, 'm').exec(text);
    if (!m) throw new Error(`vm.env has no ${k}: ${text}`);
    return m[1];
  };
  const control = /^VMICTL_CONTROL=(.*)$/m.exec(text)?.[1];
  return { qmp: get('VMICTL_QMP'), gdb: get('VMICTL_GDB'), groundTruthFile: get('VMICTL_GROUND_TRUTH'), control };
}

let controlSeq = 0;

/**
 * Runs a shell command inside the guest (root namespaces, as root) through its control serial port
 * and returns its output and exit status. The guest must be running (not paused) to answer.
 */
export async function guestRun(env: VmEnv, command: string, timeoutMs = 60_000): Promise<{ output: string; status: number }> {
  if (!env.control) throw new Error('this VM has no control channel');
  if (command.includes('\n')) throw new Error('one line only');
  const { connect } = await import('node:net');
  const id = `c${process.pid}x${++controlSeq}`;
  return new Promise((resolve, reject) => {
    const sock = connect(env.control!.replace(/^unix:/, ''));
    let buf = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`guest command timed out: ${command}`)); }, timeoutMs);
    sock.on('connect', () => sock.write(`${id} ${command}\n`));
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      const m = new RegExp(`(?:^|\\n)VMICTL-DONE ${id} (\\d+)\\r?\\n`).exec(buf);
      if (m) {
        clearTimeout(timer);
        sock.end();
        resolve({ output: buf.slice(0, m.index + (m[0].startsWith('\n') ? 1 : 0)), status: Number(m[1]) });
      }
    });
    sock.on('error', (e) => { clearTimeout(timer); reject(vmGoneError(env, command, e)); });
  });
}

/**
 * A control channel that cannot be reached means QEMU is gone (it removes its sockets when it
 * exits): the error says so, with the serial console's last lines (a guest panic is there).
 */
function vmGoneError(env: VmEnv, command: string, cause: Error): Error {
  const dir = join(env.control!.replace(/^unix:/, ''), '..');
  const log = join(dir, 'console.log');
  const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-30).join('\n') : '(no console log)';
  return new Error(`guest command ${JSON.stringify(command)}: the control channel is gone (${cause.message}); the VM has probably exited. Serial console tail:\n${tail}`, { cause });
}

/** The QEMU command line of the VM behind a QMP unix socket, read from /proc of its process. */
export function qemuCommandLine(qmpAddress: string): string[] | null {
  const sock = qmpAddress.replace(/^unix:/, '');
  const pidFile = join(sock, '..', 'qemu.pid');
  if (!existsSync(pidFile)) return null;
  const pid = readFileSync(pidFile, 'utf8').trim();
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((s) => s.length > 0);
}

/**
 * Writes an ELF dump of the VM (QMP dump-guest-memory) into a temporary directory removed at the
 * test's end, and returns its path.
 */
export async function dumpVm(t: Test, env: VmEnv): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-dump-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'vm.elf');
  const live = await Vm.connect({ qmp: env.qmp });
  try {
    await live.qmp!.execute('dump-guest-memory', { paging: false, protocol: `file:${file}` }, { timeout: 120_000 });
  } finally {
    await live.close();
  }
  return file;
}

/**
 * The distro VM (test-vms/distro: Debian 12 with systemd, docker and podman, booted from its disk),
 * booted by `make test-distro`, which exports VMICTL_DISTRO_QMP, VMICTL_DISTRO_GDB,
 * VMICTL_DISTRO_GROUND_TRUTH and VMICTL_DISTRO_CONTROL: its own variables, so these tests never run
 * against the initramfs VM. Its boot takes minutes under TCG, so no test boots one of its own:
 * without them the test is skipped with the reason, except in CI, where it fails.
 */
export function distroVm(t: TapLike): VmEnv | null {
  const { VMICTL_DISTRO_QMP, VMICTL_DISTRO_GDB, VMICTL_DISTRO_GROUND_TRUTH, VMICTL_DISTRO_CONTROL } = process.env;
  if (VMICTL_DISTRO_QMP && VMICTL_DISTRO_GDB && VMICTL_DISTRO_GROUND_TRUTH) {
    return { qmp: VMICTL_DISTRO_QMP, gdb: VMICTL_DISTRO_GDB, groundTruthFile: VMICTL_DISTRO_GROUND_TRUTH, control: VMICTL_DISTRO_CONTROL };
  }
  const why = 'no distro VM: VMICTL_DISTRO_QMP, VMICTL_DISTRO_GDB and VMICTL_DISTRO_GROUND_TRUTH are not set (make test-distro boots one)';
  if (process.env.CI) t.fail(`the distro VM is required in CI: ${why}`);
  else skipWithReason(t, why);
  return null;
}
