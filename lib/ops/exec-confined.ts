/**
 * `vmictl exec` (the default): the command is forked from one of the container's own processes
 * (exec-source.ts chooses which; init first), so that it has that process's confinement and no
 * more: its credentials and capability sets, securebits, LSM label, seccomp filter and
 * no_new_privs, namespaces (a vfork child of a process in the container's pid namespace is in it
 * already), cgroup and root. That is what `docker exec` gives.
 *
 * That process (P) is caught and vforks a child (C), a copy of P that never runs P's code: C
 * blocks every signal (so none of P's handlers runs in it, and a SIGPIPE of a closed stdin stays
 * pending), makes the pipes (stdout, stderr; stdin with -i, else it opens /dev/null), chdir()s,
 * and vforks the command (G), which puts them on 0, 1, 2, takes the user of -u (setgroups,
 * setresgid, setresuid: only if P can), clears its signal mask, closes every other descriptor and
 * execve()s. With -t, C opens a pseudo-terminal from the container's /dev/ptmx instead
 * (pty.ts) and G, in a session of its own (setsid), opens its slave as controlling terminal
 * (TIOCSCTTY) for 0, 1 and 2. C then closes the command's ends and is the relay: it polls and
 * reads the pipes or the master, writes the host's input, and reaps G (exec-relay.ts). C's
 * descriptor table is its own (no CLONE_FILES), so P never holds the pipes or the terminal. P
 * stays in vfork (in the kernel, killable) until C exits; then P reaps C and is put back.
 *
 * Every path out kills and reaps G from C, makes C exit, and reaps C from P.
 */
import { VmiError } from '../errors';
import type { Vm } from '../vm';
import type { Container, ProcessInfo } from '../containers/model';
import { openInjection, type InjectionSession } from '../inject';
import { exitStatus, reapChild, vfork, type ChildProcess } from '../inject/child';
import { SyscallError } from '../inject/errors';
import { taskConfinement } from '../kernel/helpers/cred';
import { ignoredSignals } from '../kernel/helpers/signal';
import { readEnviron } from '../kernel/helpers/mm';
import { ContainerStateError, PrivilegeError } from './errors';
import { forkSources } from './exec-source';
import { commandEnvironment, execveFirstFound, killAndReap, makePipe, programPaths, relay, waitExit, type ExecResult, type ExecSource, type ExecSpec, type RelayEnds } from './exec-relay';
import { openPtyMaster, TIOCSCTTY } from './pty';

const O_RDWR = 2;
const O_NOCTTY = 0o400;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const F_SETFL = 4n;
const AT_FDCWD = -100;
const SIG_SETMASK = 2n;
const SIGKILL = 9;
const SIGCHLD = 17;
const SIGSTOP = 19;
/** The kernel's struct sigaction on x86-64 (handler, flags, restorer, mask): all zero is SIG_DFL. */
const SIGACTION_SIZE = 32;

/** P may reap C before we do: its own SIGCHLD handler runs on its way back from vfork, or it ignores SIGCHLD. */
function ignoreEchild(err: unknown): void {
  if (!(err instanceof SyscallError && err.errnoName === 'ECHILD')) throw err;
}

/** Runs `spec.command` in container `c` forked from one of its processes (see the file's comment). */
export async function execConfined(vm: Vm, c: Container, init: ProcessInfo, spec: ExecSpec): Promise<ExecResult> {
  const name = c.name ?? c.id;
  if (c.state === 'paused') throw new ContainerStateError(`container ${name} is paused: its processes cannot start a command`);
  const kernel = await vm.kernel();
  const candidates = await Promise.all(c.processes.map(async (p) => ({ process: p, confinement: await taskConfinement(kernel, p.address) })));
  const initC = candidates.find((x) => x.process.pid === init.pid)!;
  const sources = forkSources(c, initC, candidates, spec.user);
  if (sources.length === 0) throw new VmiError('ENOPROCESS', `container ${name}: no running process confined as its init (${init.pid}) to start the command from`);
  const s = await openInjection(vm, { processes: sources, label: `the processes of container ${JSON.stringify(name)} confined as its init`, cgroup: init.cgroup }, {
    timeout: spec.timeout ?? 20_000,
    callTimeout: spec.callTimeout ?? 20_000,
    journal: spec.journal,
    // a container's processes may all be blocked for good (a server in accept)
    wake: 'freeze',
  });
  const p = sources.find((x) => x.pid === s.target.pid);
  const source: ExecSource = { pid: s.target.pid, comm: p?.comm ?? '', init: s.target.pid === init.pid, privileged: false };
  spec.onSource?.(source);
  const sourceC = candidates.find((x) => x.process.pid === s.target.pid)?.confinement ?? initC.confinement;
  const user = spec.user;
  const changeUser = user !== undefined && !(user.uid === sourceC.euid && user.uid === sourceC.uid && (user.gid ?? user.uid) === sourceC.gid && (user.gid ?? user.uid) === sourceC.egid);
  let unreapedC: number | undefined;
  try {
    // P's ignored signals: C must not ignore SIGCHLD, the command ignores none
    const ignored = await ignoredSignals(kernel, p?.address ?? init.address);
    // P's environment, from its own memory (P is stopped): no calls
    const mm = await kernel.readU64((p ?? init).address + BigInt(kernel.profile.fieldOffset('task_struct', 'mm')));
    const environ = await readEnviron(kernel, mm, { max: 256 * 1024 }).catch(() => Buffer.alloc(0));
    const env = commandEnvironment(environ, c.hostname, spec.env ?? []);
    const envList = [...env].map(([k, v]) => `${k}=${v}`);
    const programs = programPaths(spec.command[0], env);
    const { pid: cPid, value } = await vfork(s, s.engine, (child) => runInChild(child, s, programs, envList, changeUser ? user : undefined, ignored, spec, name), {
      onForked: (pid) => { unreapedC = pid; },
    });
    unreapedC = cPid;
    await s.remakeScratchWritable();
    await reapChild(s, cPid).catch(ignoreEchild);
    unreapedC = undefined;
    return { exitCode: exitStatus(value.status), status: value.status, pid: value.pid, helperPid: s.target.pid, source, container: name, stdoutBytes: value.counts[0], stderrBytes: value.counts[1] };
  } finally {
    if (unreapedC !== undefined && !s.closed) {
      await s.remakeScratchWritable().catch(() => undefined);
      await reapChild(s, unreapedC).catch(() => undefined);
    }
    await s.end();
  }
}

/** In C: the pipes (or the terminal), the command's vfork, the relay; the command's wait status. */
async function runInChild(child: ChildProcess, s: InjectionSession, programs: string[], env: string[], user: { uid: number; gid?: number } | undefined, ignored: readonly number[], spec: ExecSpec, name: string) {
  // nothing of the container's code runs in C: not even its signal handlers; and C reaps the
  // command itself, even where P ignores SIGCHLD (which would reap it at once)
  const [all, dfl] = await child.place([Buffer.alloc(8, 0xff), Buffer.alloc(SIGACTION_SIZE)]);
  await child.call('rt_sigprocmask', SIG_SETMASK, all, 0n, 8n);
  if (ignored.includes(SIGCHLD)) await child.call('rt_sigaction', BigInt(SIGCHLD), dfl, 0n, 8n);
  const io = spec.tty ? await terminalEnds(child) : await pipeEnds(child, spec.stdin !== undefined);
  await child.callWithPath('chdir', spec.cwd ?? '/');
  // what G needs before its execve goes with execve's strings: G then places nothing itself
  const sets = await child.placeExecve(programs, spec.command, env, [Buffer.alloc(8), Buffer.alloc(SIGACTION_SIZE), ...(io.slavePath ? [io.slavePath] : [])]);
  const [empty, dflG, slavePath] = sets[0].extra;
  let gPid: number | undefined;
  let hostPid = 0;
  try {
    await vfork(child, s.engine, async (g, childCall) => {
      if (slavePath !== undefined) {
        // a session of its own, with the terminal as its controlling terminal (as a login shell has it)
        await g.call('setsid');
        const slave = await g.call('openat', BigInt(AT_FDCWD), slavePath, BigInt(O_RDWR | O_NOCTTY), 0n);
        await g.call('ioctl', slave, TIOCSCTTY, 0n);
        for (const fd of [0n, 1n, 2n]) await g.call('dup3', slave, fd, 0n);
      } else {
        for (const [from, to] of io.dups) await g.call('dup3', BigInt(from), BigInt(to), 0n);
      }
      if (user) await takeUser(g, user, name);
      // as docker exec starts it: every signal at its default, none blocked
      for (const sig of ignored) if (sig !== SIGCHLD && sig !== SIGKILL && sig !== SIGSTOP) await g.call('rt_sigaction', BigInt(sig), dflG, 0n, 8n);
      await g.call('rt_sigprocmask', SIG_SETMASK, empty, 0n, 8n);
      // nothing but 0, 1, 2 goes to the command
      await g.call('close_range', 3n, 0xffffffffn, 0n);
      await execveFirstFound(g, sets, childCall, spec.command[0]);
    }, { onChild: (p) => { hostPid = p; }, onForked: (p) => { gPid = p; } });
    // the fork left C's mapping copy-on-write
    await child.dropMapping();
    spec.onStarted?.({ helperPid: s.target.pid, pid: hostPid });
    // only the command holds its ends now: EOF when it (and what it started) is done
    for (const fd of io.given) await child.call('close', BigInt(fd));
    const counts = await relay(child, io.ends, gPid!, spec, 'the forked child');
    const status = await waitExit(child, gPid!, spec, () => { gPid = undefined; });
    return { status, counts, pid: hostPid };
  } finally {
    if (gPid !== undefined) await killAndReap(child, gPid);
  }
}

/** C's side and the command's: what the relay uses, what G puts on 0, 1, 2, what C closes once G has it. */
interface ChildIo {
  ends: RelayEnds;
  dups: [number, number][];
  given: number[];
  slavePath?: Buffer;
}

/** Pipes for stdout and stderr, and for stdin with -i (else /dev/null); C writes stdin without blocking. */
async function pipeEnds(child: ChildProcess, input: boolean): Promise<ChildIo> {
  const [outR, outW] = await makePipe(child, 'the forked child');
  const [errR, errW] = await makePipe(child, 'the forked child');
  let inR: number;
  let inW: number | undefined;
  if (input) {
    [inR, inW] = await makePipe(child, 'the forked child');
    await child.call('fcntl', BigInt(inW), F_SETFL, BigInt(O_NONBLOCK));
  } else {
    inR = await child.openat(AT_FDCWD, '/dev/null', O_RDWR | O_CLOEXEC);
  }
  return { ends: { out: outR, err: errR, in: inW }, dups: [[inR, 0], [outW, 1], [errW, 2]], given: [inR, outW, errW] };
}

/** -t: a pseudo-terminal of the container's own devpts (lib/ops/pty.ts); G opens its slave. */
async function terminalEnds(child: ChildProcess): Promise<ChildIo> {
  const { master, number } = await openPtyMaster(child);
  return { ends: { out: master, in: master, tty: true }, dups: [], given: [], slavePath: Buffer.from(`/dev/pts/${number}\0`) };
}

/** -u in the command before its execve: the supplementary groups dropped, then the group and user ids. */
async function takeUser(g: ChildProcess, user: { uid: number; gid?: number }, name: string): Promise<void> {
  const gid = BigInt(user.gid ?? user.uid);
  try {
    await g.call('setgroups', 0n, 0n);
    await g.call('setresgid', gid, gid, gid);
    await g.call('setresuid', BigInt(user.uid), BigInt(user.uid), BigInt(user.uid));
  } catch (err) {
    if (err instanceof SyscallError && err.errnoName === 'EPERM') throw new PrivilegeError(name, `exec -u ${user.uid}: ${err.syscall} was refused in container ${name} (EPERM)`);
    throw err;
  }
}
