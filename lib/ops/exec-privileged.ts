/**
 * `vmictl exec`: run a command inside a container, through injected system calls only.
 *
 * A root-namespace root process of the VM (the helper; not init when another will do) is
 * hijacked. It makes two pipes (stdout, stderr) and vforks a child; the child opens the container
 * init's namespaces (/proc/<pid>/ns/*) and root (/proc/<pid>/root) while it still sees the host's
 * /proc, joins the container's cgroup (writes 0 to its cgroup.procs), puts /dev/null and the pipes
 * on 0, 1, 2, setns()es into every namespace the container does not share with the helper,
 * chroots to the container's root, chdir()s, sets its user, clears its signal mask, closes every
 * other descriptor, and vforks again with CLONE_PARENT, so that the pid and time namespaces apply
 * and the helper itself is the command's parent; that grandchild execve()s the command (each PATH
 * directory in turn for a bare name: no shell needed). The child exits, the helper reaps it,
 * closes its ends of the pipes it gave away, relays what comes out of the read ends (poll + read,
 * injected) and reaps the command with wait4 to get its exit status.
 *
 * Every path out — error, abort — kills and reaps what was started, closes the helper's pipe
 * descriptors and restores the helper, so nothing is left in the guest.
 */
import { VmiError } from '../errors';
import { helperCandidates } from './helper';
import type { Vm } from '../vm';
import type { Container, NamespaceKind, ProcessInfo } from '../containers/model';
import { resolveContainer } from '../containers/resolve';
import { openInjection, type InjectionSession } from '../inject';
import { CLONE_PARENT, exitStatus, reapChild, vfork, type ChildProcess } from '../inject/child';
import { errnoOf } from '../inject/errno';
import { SyscallError } from '../inject/errors';

export interface ExecSpec {
  /** id, name, hostname, prefix or pid:N (as resolveContainer takes). */
  container: string;
  /** argv; argv[0] is the program: an absolute path, or a name looked up in PATH inside the container. */
  command: string[];
  /** K=V entries added to (or replacing those of) the environment of the container's init. */
  env?: string[];
  /** Working directory inside the container (default /). */
  cwd?: string;
  /** User (and group) ids to run as (default: root, 0:0). */
  user?: { uid: number; gid?: number };
  /** Receive the command's output as it comes (awaited: backpressure). */
  stdout?: (data: Buffer) => unknown;
  stderr?: (data: Buffer) => unknown;
  /** Aborting kills the command (SIGKILL) and cleans up. */
  signal?: AbortSignal;
  /** How long to wait to catch the helper, ms (default 20 000). */
  timeout?: number;
  /** Bound on one injected syscall, ms (default 20 000). */
  callTimeout?: number;
  journal?: string | false;
  /** Helper process (host pid); default: chosen among the root-namespace root processes. */
  helperPid?: number;
  /** Told the pids as soon as they exist (tests look at them from inside the guest). */
  onStarted?: (info: { helperPid: number; pid: number }) => void;
}

export interface ExecResult {
  /** Shell-style: the exit code, or 128 + the signal that killed it. */
  exitCode: number;
  /** The raw wait status. */
  status: number;
  /** Host pid of the command. */
  pid: number;
  helperPid: number;
  container: string;
  stdoutBytes: number;
  stderrBytes: number;
}

/** setns order: the user namespace first (it gives the rights for the others), mnt late (it hides /proc/<pid>). */
const NS_ORDER: readonly NamespaceKind[] = ['user', 'cgroup', 'ipc', 'uts', 'net', 'pid', 'time', 'mnt'];
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_DIRECTORY = 0o200000;
const O_CLOEXEC = 0o2000000;
const AT_FDCWD = -100;
const F_SETPIPE_SZ = 1031n;
const PIPE_SIZE = 1 << 20;
const READ_CHUNK = 1 << 20;
const POLLIN = 0x1;
const POLL_MS = 1000;
const WNOHANG = 1n;
const SIGKILL = 9n;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function parseEnv(lines: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of lines) {
    const i = l.indexOf('=');
    if (i > 0) m.set(l.slice(0, i), l.slice(i + 1));
  }
  return m;
}

/** The program paths to try: the path itself, or the name in each PATH directory. */
function programPaths(name: string, env: Map<string, string>): string[] {
  if (name.includes('/')) return [name];
  const dirs = (env.get('PATH') ?? DEFAULT_PATH).split(':').filter((d) => d.startsWith('/'));
  return dirs.slice(0, 16).map((d) => `${d.replace(/\/+$/, '')}/${name}`);
}

/** Runs `spec.command` in the container; resolves with its exit status once it has ended. */
export async function execInContainer(vm: Vm, spec: ExecSpec): Promise<ExecResult> {
  if (spec.command.length === 0 || !spec.command[0]) throw new VmiError('EUSAGE', 'exec: no command given');
  if (spec.cwd !== undefined && !spec.cwd.startsWith('/')) throw new VmiError('EUSAGE', `exec: the working directory must be absolute: ${JSON.stringify(spec.cwd)}`);
  for (const e of spec.env ?? []) if (!/^[^=\0]+=/.test(e) || e.includes('\0')) throw new VmiError('EUSAGE', `exec: not K=V: ${JSON.stringify(e)}`);
  const list = await vm.listContainers({ signal: spec.signal });
  const c = resolveContainer(list.containers, spec.container);
  const init = c.processes.find((p) => p.pid === c.initPid);
  if (!init) throw new VmiError('ENOPROCESS', `container ${c.name ?? c.id} has no init process (${c.initPid})`);
  const helpers = spec.helperPid ? list.host.processes.filter((p) => p.pid === spec.helperPid) : helperCandidates(list);
  if (helpers.length === 0) throw new VmiError('ENOPROCESS', spec.helperPid ? `no root-namespace process ${spec.helperPid}` : 'no root-namespace process running as root to run the exec from');
  const joins = NS_ORDER.filter((k) => init.namespaces[k] !== 0 && init.namespaces[k] !== helpers[0].namespaces[k]);
  // the helper is left to its own signal handling: an abort is dealt with here, between calls
  const s = await openInjection(vm, { processes: helpers, label: 'the root-namespace helper processes' }, {
    timeout: spec.timeout ?? 20_000,
    callTimeout: spec.callTimeout ?? 20_000,
    journal: spec.journal,
  });
  const run = new ExecRun(s, c, init, joins, spec);
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
  ) {}

  async #pipe(): Promise<[number, number]> {
    const { result, out } = await this.s.syscallWith('pipe2', [{ out: 8 }, BigInt(O_CLOEXEC)]);
    if (errnoOf(result)) throw new VmiError('EEXEC', `pipe2 in the helper failed (errno ${errnoOf(result)})`);
    const r = out[0].readInt32LE(0);
    const w = out[0].readInt32LE(4);
    this.fds.add(r).add(w);
    // a bigger pipe: fewer round trips for a chatty command (best effort)
    await this.s.syscall('fcntl', BigInt(r), F_SETPIPE_SZ, BigInt(PIPE_SIZE));
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
    const env = parseEnv(environ.toString('utf8').split('\0').filter(Boolean));
    if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
    if (!env.has('HOSTNAME') && this.c.hostname) env.set('HOSTNAME', this.c.hostname);
    for (const [k, v] of parseEnv(spec.env ?? [])) env.set(k, v);
    const envList = [...env].map(([k, v]) => `${k}=${v}`);
    const programs = programPaths(spec.command[0], env);

    const [outR, outW] = await this.#pipe();
    const [errR, errW] = await this.#pipe();
    let pid = 0;
    const { pid: childPid } = await vfork(s, s.engine, async (child) => {
      const gc = await this.#prepareChild(child, outW, errW, programs, spec.command, envList);
      const r = await vfork(child, s.engine, async (grandchild, childCall) => {
        let last: unknown;
        for (const addrs of gc) {
          try {
            await grandchild.execveAt(addrs, childCall);
            return;
          } catch (err) {
            last = err;
            if ((err as { errnoName?: string }).errnoName !== 'ENOENT' && (err as { errnoName?: string }).errnoName !== 'ENOTDIR') break;
          }
        }
        const e = last as { errnoName?: string; errno?: number };
        if (gc.length > 1 && (e.errnoName === 'ENOENT' || e.errnoName === 'ENOTDIR')) throw new SyscallError('execve', e.errno!, `${JSON.stringify(spec.command[0])} (not found in the container's PATH)`);
        throw last;
      }, { flags: CLONE_PARENT, onChild: (p) => this.unreaped.add((pid = p)) });
      return r;
    }, { onChild: (p) => this.unreaped.add(p) });
    await s.remakeScratchWritable();
    await this.#reap(childPid);
    spec.onStarted?.({ helperPid: s.target.pid, pid });
    // only the command holds the write ends now: EOF when it (and what it started) is done
    await this.#closeFd(outW);
    await this.#closeFd(errW);
    const counts = await this.#relay(outR, errR, pid);
    const status = await this.#waitExit(pid);
    return { exitCode: exitStatus(status), status, pid, helperPid: s.target.pid, container: this.c.name ?? this.c.id, stdoutBytes: counts[0], stderrBytes: counts[1] };
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

  /** Reads both pipes until both are at EOF, handing out what comes as it comes. */
  async #relay(outR: number, errR: number, pid: number): Promise<[number, number]> {
    const s = this.s;
    const open = new Map<number, 0 | 1>([[outR, 0], [errR, 1]]);
    const counts: [number, number] = [0, 0];
    const sinks = [this.spec.stdout, this.spec.stderr];
    let killed = false;
    while (open.size > 0) {
      if (this.spec.signal?.aborted && !killed) {
        await s.syscall('kill', BigInt(pid), SIGKILL);
        killed = true;
      }
      const fds = [...open.keys()];
      const pollfds = Buffer.alloc(8 * fds.length);
      fds.forEach((fd, i) => { pollfds.writeInt32LE(fd, 8 * i); pollfds.writeInt16LE(POLLIN, 8 * i + 4); });
      const { result, out } = await s.syscallWith('poll', [{ inout: pollfds }, BigInt(fds.length), BigInt(POLL_MS)]);
      if (result === -4n) continue; // EINTR: a signal for the helper
      if (errnoOf(result)) throw new VmiError('EEXEC', `poll in the helper failed (errno ${errnoOf(result)})`);
      for (let i = 0; i < fds.length; i++) {
        if (out[0].readInt16LE(8 * i + 6) === 0) continue;
        const fd = fds[i];
        const data = await s.read(fd, READ_CHUNK);
        const which = open.get(fd)!;
        if (data.length === 0) {
          open.delete(fd);
          continue;
        }
        counts[which] += data.length;
        await sinks[which]?.(data);
      }
    }
    if (killed) throw new VmiError('EABORT', 'exec aborted: the command was killed');
    return counts;
  }

  /** wait4 without blocking the helper for long: the command may run on after closing its output. */
  async #waitExit(pid: number): Promise<number> {
    let killed = false;
    for (;;) {
      if (this.spec.signal?.aborted && !killed) {
        await this.s.syscall('kill', BigInt(pid), SIGKILL);
        killed = true;
      }
      const r = await reapChild(this.s, pid, WNOHANG);
      if (r.pid === pid) {
        this.unreaped.delete(pid);
        if (killed) throw new VmiError('EABORT', 'exec aborted: the command was killed');
        return r.status;
      }
      await this.s.syscall('poll', 0n, 0n, BigInt(200));
    }
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
