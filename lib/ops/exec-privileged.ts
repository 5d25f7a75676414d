/**
 * `vmictl exec --privileged`: the command is started from a root-namespace root process of the
 * VM (the helper; not init when another will do) and keeps its privileges: every capability of
 * the initial user namespace, no seccomp filter, no LSM label, no no_new_privs. Only asked for
 * explicitly; the default is exec-confined.ts.
 *
 * The helper makes two pipes (stdout, stderr) and vforks a child; the child opens the container
 * init's namespaces (/proc/<pid>/ns/*) and root (/proc/<pid>/root) while it still sees the host's
 * /proc, joins the container's cgroup (writes 0 to its cgroup.procs), puts /dev/null and the pipes
 * on 0, 1, 2, setns()es into every namespace the container does not share with the helper,
 * chroots to the container's root, chdir()s, sets its user, clears its signal mask, closes every
 * other descriptor, and vforks again with CLONE_PARENT, so that the pid and time namespaces apply
 * and the helper itself is the command's parent; that grandchild execve()s the command. The child
 * exits, the helper reaps it, closes its ends of the pipes it gave away, relays the output and
 * reaps the command (exec-relay.ts).
 *
 * Every path out — error, abort — kills and reaps what was started, closes the helper's pipe
 * descriptors and restores the helper, so nothing is left in the guest.
 */
import { VmiError } from '../errors';
import type { Vm } from '../vm';
import type { Container, NamespaceKind, ProcessInfo } from '../containers/model';
import type { ContainerList } from '../containers/list';
import { openInjection, rootHelperTarget, type InjectionSession } from '../inject';
import { CLONE_PARENT, exitStatus, reapChild, vfork, type ChildProcess } from '../inject/child';
import { errnoOf } from '../inject/errno';
import { commandEnvironment, execveFirstFound, makePipe, programPaths, relay, waitExit, type ExecResult, type ExecSource, type ExecSpec } from './exec-relay';

/** setns order: the user namespace first (it gives the rights for the others), mnt late (it hides /proc/<pid>). */
const NS_ORDER: readonly NamespaceKind[] = ['user', 'cgroup', 'ipc', 'uts', 'net', 'pid', 'time', 'mnt'];
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;
const AT_FDCWD = -100;
const SIGKILL = 9n;

/** Runs `spec.command` in container `c` from a root-namespace root helper (see the file's comment). */
export async function execPrivileged(vm: Vm, list: ContainerList, c: Container, init: ProcessInfo, spec: ExecSpec): Promise<ExecResult> {
  const helpers = spec.helperPid ? list.host.processes.filter((p) => p.pid === spec.helperPid) : (await rootHelperTarget(vm, list)).processes;
  if (helpers.length === 0) throw new VmiError('ENOPROCESS', spec.helperPid ? `no root-namespace process ${spec.helperPid}` : 'no root-namespace process running as root to run the exec from');
  const joins = NS_ORDER.filter((k) => init.namespaces[k] !== 0 && init.namespaces[k] !== helpers[0].namespaces[k]);
  // the helper is left to its own signal handling: an abort is dealt with here, between calls
  const s = await openInjection(vm, { processes: helpers, label: 'the root-namespace helper processes' }, {
    timeout: spec.timeout ?? 20_000,
    callTimeout: spec.callTimeout ?? 20_000,
    journal: spec.journal,
  });
  const source: ExecSource = { pid: s.target.pid, comm: helpers.find((p) => p.pid === s.target.pid)?.comm ?? '', init: false, privileged: true };
  spec.onSource?.(source);
  const run = new ExecRun(s, c, init, joins, spec, source);
  try {
    return await run.run();
  } finally {
    await run.cleanup();
    await s.end();
  }
}

class ExecRun {
  /** Descriptors the helper holds (closed at the end). */
  readonly fds = new Set<number>();
  /** Children of the helper not yet reaped. */
  readonly unreaped = new Set<number>();
  constructor(
    readonly s: InjectionSession,
    readonly c: Container,
    readonly init: ProcessInfo,
    readonly joins: readonly NamespaceKind[],
    readonly spec: ExecSpec,
    readonly source: ExecSource,
  ) {}

  async #pipe(): Promise<[number, number]> {
    const [r, w] = await makePipe(this.s, 'the helper');
    this.fds.add(r).add(w);
    return [r, w];
  }

  async #closeFd(fd: number): Promise<void> {
    this.fds.delete(fd);
    await this.s.syscall('close', BigInt(fd));
  }

  async run(): Promise<ExecResult> {
    const s = this.s;
    const spec = this.spec;
    const initPid = this.init.pid;
    // the container init's environment, with the user's additions
    const environ = await s.readFile(`/proc/${initPid}/environ`, 256 * 1024).catch(() => Buffer.alloc(0));
    const env = commandEnvironment(environ, this.c.hostname, spec.env ?? []);
    const envList = [...env].map(([k, v]) => `${k}=${v}`);
    const programs = programPaths(spec.command[0], env);

    const [outR, outW] = await this.#pipe();
    const [errR, errW] = await this.#pipe();
    let pid = 0;
    const { pid: childPid } = await vfork(s, s.engine, async (child) => {
      const gc = await this.#prepareChild(child, outW, errW, programs, spec.command, envList);
      const r = await vfork(child, s.engine, (grandchild, childCall) => execveFirstFound(grandchild, gc, childCall, spec.command[0]), { flags: CLONE_PARENT, onChild: (p) => this.unreaped.add((pid = p)) });
      return r;
    }, { onChild: (p) => this.unreaped.add(p) });
    await s.remakeScratchWritable();
    await this.#reap(childPid);
    spec.onStarted?.({ helperPid: s.target.pid, pid });
    // only the command holds the write ends now: EOF when it (and what it started) is done
    await this.#closeFd(outW);
    await this.#closeFd(errW);
    const counts = await relay(s, { out: outR, err: errR }, pid, spec, 'the helper');
    const status = await waitExit(s, pid, spec, () => this.unreaped.delete(pid));
    return { exitCode: exitStatus(status), status, pid, helperPid: s.target.pid, source: this.source, container: this.c.name ?? this.c.id, stdoutBytes: counts[0], stderrBytes: counts[1] };
  }

  /**
   * In the child, still in the helper's namespaces: opens what it needs, joins the cgroup, sets
   * up 0, 1, 2, enters the namespaces and the root, takes the user, and places execve's strings
   * (one set per program path to try) for the grandchild.
   */
  async #prepareChild(child: ChildProcess, outW: number, errW: number, programs: string[], argv: string[], env: string[]) {
    const initPid = this.init.pid;
    const nsFds: [NamespaceKind, number][] = [];
    for (const k of this.joins) nsFds.push([k, await child.openat(AT_FDCWD, `/proc/${initPid}/ns/${k}`, O_RDONLY | O_CLOEXEC)]);
    const rootFd = await child.openat(AT_FDCWD, `/proc/${initPid}/root`, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const nullFd = await child.openat(AT_FDCWD, '/dev/null', O_RDWR | O_CLOEXEC);
    const cgroup = this.c.cgroup;
    if (cgroup && cgroup !== '/') {
      if (!/^(\/[^/\0]+)+$/.test(cgroup) || cgroup.split('/').includes('..')) throw new VmiError('EINVAL', `not a cgroup path: ${JSON.stringify(cgroup)}`);
      const procs = await child.openat(AT_FDCWD, `/sys/fs/cgroup${cgroup}/cgroup.procs`, O_WRONLY | O_CLOEXEC);
      await child.write(procs, Buffer.from('0'));
      await child.call('close', BigInt(procs));
    }
    await child.call('dup3', BigInt(nullFd), 0n, 0n);
    await child.call('dup3', BigInt(outW), 1n, 0n);
    await child.call('dup3', BigInt(errW), 2n, 0n);
    for (const [k, fd] of nsFds) {
      const r = await child.syscall('setns', BigInt(fd), 0n);
      if (errnoOf(r)) throw new VmiError('EEXEC', `setns into the ${k} namespace of ${initPid} failed: errno ${errnoOf(r)}`);
    }
    await child.call('fchdir', BigInt(rootFd));
    await child.callWithPath('chroot', '.');
    await child.callWithPath('chdir', this.spec.cwd ?? '/');
    const user = this.spec.user;
    if (user) {
      const gid = BigInt(user.gid ?? user.uid);
      await child.call('setgroups', 0n, 0n);
      await child.call('setresgid', gid, gid, gid);
      await child.call('setresuid', BigInt(user.uid), BigInt(user.uid), BigInt(user.uid));
    }
    const [mask] = await child.place([Buffer.alloc(8)]);
    await child.call('rt_sigprocmask', 2n /* SIG_SETMASK */, mask, 0n, 8n);
    const sets = await child.placeExecve(programs, argv, env);
    // nothing but 0, 1, 2 goes to the command
    await child.call('close_range', 3n, 0xffffffffn, 0n);
    return sets;
  }

  async #reap(pid: number): Promise<number> {
    const { status } = await reapChild(this.s, pid);
    this.unreaped.delete(pid);
    return status;
  }

  /** Kills and reaps every child started, closes the helper's descriptors (errors swallowed: best effort, reported by the caller's state). */
  async cleanup(): Promise<void> {
    if (this.s.closed) return;
    // after a failed fork the scratch pages may still be copy-on-write
    if (this.unreaped.size > 0) await this.s.remakeScratchWritable().catch(() => undefined);
    for (const pid of this.unreaped) {
      try {
        await this.s.syscall('kill', BigInt(pid), SIGKILL);
        await reapChild(this.s, pid);
      } catch {
        // already reaped or the session failed
      }
    }
    this.unreaped.clear();
    for (const fd of [...this.fds]) await this.#closeFd(fd).catch(() => undefined);
  }
}
