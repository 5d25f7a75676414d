/**
 * What both ways of running `vmictl exec` share: the spec and result, the command's environment
 * and program paths, and the relay: the process that holds the read ends of the command's stdout
 * and stderr pipes (poll + read, injected) hands out what comes, then reaps the command (wait4)
 * for its exit status.
 */
import { VmiError } from '../errors';
import { reapChild, type ChildProcess, type ExecveAddresses } from '../inject/child';
import { SyscallError } from '../inject/errors';
import type { PendingCall } from '../inject/parked-thread';
import { errnoOf } from '../inject/errno';
import type { SyscallArgument } from '../inject/thread-calls';
import { HOST_WAIT_SLICE_MS } from '../inject/host-wait';
import { encodeWinsize, TIOCSWINSZ, type WindowSize } from './pty';

export interface ExecSpec {
  /** id, name, hostname, prefix or pid:N (as resolveContainer takes). */
  container: string;
  /** argv; argv[0] is the program: an absolute path, or a name looked up in PATH inside the container. */
  command: string[];
  /** K=V entries added to (or replacing those of) the environment the command starts from. */
  env?: string[];
  /** Working directory inside the container (default /). */
  cwd?: string;
  /** User (and group) ids to run as (default: those of the container process the command is forked from). */
  user?: { uid: number; gid?: number };
  /**
   * Run from a root-namespace root process of the VM, which enters the container's namespaces,
   * cgroup and root, keeping every privilege of the VM's root (all capabilities, no seccomp, no
   * LSM label). Without it the command is forked from one of the container's own processes.
   */
  privileged?: boolean;
  /** Receive the command's output as it comes (awaited: backpressure). */
  stdout?: (data: Buffer) => unknown;
  stderr?: (data: Buffer) => unknown;
  /**
   * The command's input (`-i`): relayed to its stdin as it comes; its end closes the command's
   * stdin. Without it the command's stdin is /dev/null.
   */
  stdin?: AsyncIterable<Buffer | string>;
  /**
   * `-t`: the command runs on a pseudo-terminal of the container (its controlling terminal, on
   * 0, 1 and 2; its output all comes to `stdout`), with the size this returns, asked again while
   * it runs (a change is passed on: the command gets SIGWINCH).
   */
  tty?: { windowSize(): WindowSize };
  /** Aborting kills the command (SIGKILL) and cleans up. */
  signal?: AbortSignal;
  /** How long to wait to catch the process the command is started from, ms (default 20 000). */
  timeout?: number;
  /** Bound on one injected syscall, ms (default 20 000). */
  callTimeout?: number;
  journal?: string | false;
  /** Helper process (host pid) with `privileged`; default: chosen among the root-namespace root processes. */
  helperPid?: number;
  /** Told the pids as soon as they exist (tests look at them from inside the guest). */
  onStarted?: (info: { helperPid: number; pid: number }) => void;
  /** Told which process the command is started from, once it is caught. */
  onSource?: (info: ExecSource) => void;
}

export interface ExecSource {
  /** Host pid. */
  pid: number;
  comm: string;
  /** Whether it is the container's init. */
  init: boolean;
  /** Whether it is a root-namespace helper (privileged). */
  privileged: boolean;
}

export interface ExecResult {
  /** Shell-style: the exit code, or 128 + the signal that killed it. */
  exitCode: number;
  /** The raw wait status. */
  status: number;
  /** Host pid of the command. */
  pid: number;
  /** Host pid of the process the command was started from (a container process, or the root helper). */
  helperPid: number;
  source: ExecSource;
  container: string;
  stdoutBytes: number;
  stderrBytes: number;
}

export const F_SETPIPE_SZ = 1031n;
export const PIPE_SIZE = 1 << 20;
const READ_CHUNK = 1 << 20;
const POLLIN = 0x1;
const POLL_MS = 1000;
const WNOHANG = 1n;
const SIGKILL = 9n;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function parseEnv(lines: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of lines) {
    const i = l.indexOf('=');
    if (i > 0) m.set(l.slice(0, i), l.slice(i + 1));
  }
  return m;
}

/** The environment the command gets: `environ` (a process's, NUL-separated) with defaults and the user's additions. */
export function commandEnvironment(environ: Buffer, hostname: string, extra: readonly string[]): Map<string, string> {
  const env = parseEnv(environ.toString('utf8').split('\0').filter(Boolean));
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
  if (!env.has('HOSTNAME') && hostname) env.set('HOSTNAME', hostname);
  for (const [k, v] of parseEnv([...extra])) env.set(k, v);
  return env;
}

/** The program paths to try: the path itself, or the name in each PATH directory. */
export function programPaths(name: string, env: Map<string, string>): string[] {
  if (name.includes('/')) return [name];
  const dirs = (env.get('PATH') ?? DEFAULT_PATH).split(':').filter((d) => d.startsWith('/'));
  return dirs.slice(0, 16).map((d) => `${d.replace(/\/+$/, '')}/${name}`);
}

export function checkSpec(spec: ExecSpec): void {
  if (spec.command.length === 0 || !spec.command[0]) throw new VmiError('EUSAGE', 'exec: no command given');
  if (spec.cwd !== undefined && !spec.cwd.startsWith('/')) throw new VmiError('EUSAGE', `exec: the working directory must be absolute: ${JSON.stringify(spec.cwd)}`);
  for (const e of spec.env ?? []) if (!/^[^=\0]+=/.test(e) || e.includes('\0')) throw new VmiError('EUSAGE', `exec: not K=V: ${JSON.stringify(e)}`);
  if (spec.helperPid !== undefined && !spec.privileged) throw new VmiError('EUSAGE', 'exec: a helper process is only used with privileged');
  // the root helper would take a SIGPIPE of a closed stdin itself, and cannot hand a terminal it opens to the command
  if (spec.privileged && spec.stdin) throw new VmiError('EUSAGE', 'exec: -i is not supported with --privileged');
  if (spec.privileged && spec.tty) throw new VmiError('EUSAGE', 'exec: -t is not supported with --privileged');
}

/** A process that runs the relay's calls: an injection session or a forked child. */
export interface Relayer {
  syscall(nr: number | string, ...args: bigint[]): Promise<bigint>;
  syscallWith(nr: number | string, args: readonly SyscallArgument[]): Promise<{ result: bigint; out: Buffer[] }>;
  read(fd: number, n: number): Promise<Buffer>;
  write(fd: number, data: Buffer): Promise<number>;
  /** Waits for host work (a consumer of the output) without keeping the VM stopped. */
  awaitHost<T>(work: Promise<T> | T): Promise<T>;
}

/** pipe2(O_CLOEXEC) in `r`, made bigger (best effort: fewer round trips for a chatty command). */
export async function makePipe(r: Relayer, where: string): Promise<[number, number]> {
  const { result, out } = await r.syscallWith('pipe2', [{ out: 8 }, 0o2000000n]);
  if (errnoOf(result)) throw new VmiError('EEXEC', `pipe2 in ${where} failed (errno ${errnoOf(result)})`);
  const rd = out[0].readInt32LE(0);
  const wr = out[0].readInt32LE(4);
  await r.syscall('fcntl', BigInt(rd), F_SETPIPE_SZ, BigInt(PIPE_SIZE));
  return [rd, wr];
}

/**
 * The host's input as the relay takes it: what has come and not been taken, without waiting
 * (one read of the source under way at a time).
 */
export class HostInput {
  readonly #it: AsyncIterator<Buffer | string>;
  #reading = false;
  #chunk: Buffer | undefined;
  #ended = false;

  constructor(source: AsyncIterable<Buffer | string>) {
    this.#it = source[Symbol.asyncIterator]();
  }

  /** What came (a read is started if none is under way), `undefined` if nothing yet, 'end' once the source is done. */
  take(): Buffer | 'end' | undefined {
    if (this.#chunk) {
      const c = this.#chunk;
      this.#chunk = undefined;
      return c;
    }
    if (this.#ended) return 'end';
    if (!this.#reading) {
      this.#reading = true;
      this.#it.next().then((r) => {
        if (r.done) this.#ended = true;
        else this.#chunk = Buffer.from(r.value);
      }, () => { this.#ended = true; }).finally(() => { this.#reading = false; });
    }
    return undefined;
  }

  /** Stops reading the source (a stream is destroyed: nothing keeps the host process waiting on it). */
  close(): void {
    this.#ended = true;
    void this.#it.return?.()?.catch(() => undefined);
  }
}

/** The relay's ends in the guest: the command's output (stderr apart unless on a terminal), and its input. */
export interface RelayEnds {
  out: number;
  err?: number;
  /** The write end of the command's stdin (closed at the host's EOF), or the terminal's master. */
  in?: number;
  /** `out` and `in` are a pseudo-terminal's master: EIO reading it is the end of the output. */
  tty?: boolean;
}

const POLLOUT = 0x4;
const POLLERR = 0x8;
const POLLHUP = 0x10;

/**
 * Reads the command's output until EOF, handing out what comes as it comes, and writes the host's
 * input (spec.stdin) to it as it comes; `pid` is the command as `r` numbers it (killed on abort).
 * While host input may come, `r` waits in poll for one host-wait slice at a time, so that what
 * is typed reaches the command within a slice while the VM runs.
 */
export async function relay(r: Relayer, ends: RelayEnds, pid: number, spec: ExecSpec, where: string): Promise<[number, number]> {
  const open = new Map<number, 0 | 1>([[ends.out, 0]]);
  if (ends.err !== undefined) open.set(ends.err, 1);
  const counts: [number, number] = [0, 0];
  const sinks = [spec.stdout, spec.stderr];
  let input = spec.stdin && ends.in !== undefined ? new HostInput(spec.stdin) : undefined;
  let pending: Buffer | undefined;
  let size = '';
  let killed = false;
  const endInput = async () => {
    input?.close();
    input = undefined;
    pending = undefined;
    // a terminal's master stays open (closing it would hang up the command's terminal)
    if (!ends.tty && ends.in !== undefined) await r.syscall('close', BigInt(ends.in));
  };
  try {
    while (open.size > 0) {
      if (spec.signal?.aborted && !killed) {
        await r.syscall('kill', BigInt(pid), SIGKILL);
        killed = true;
      }
      if (spec.tty) {
        const ws = encodeWinsize(spec.tty.windowSize());
        if (ws.toString('hex') !== size) {
          await r.syscallWith('ioctl', [BigInt(ends.out), TIOCSWINSZ, { in: ws }]);
          size = ws.toString('hex');
        }
      }
      if (input && !pending) {
        const got = input.take();
        if (got === 'end') await endInput();
        else pending = got;
      }
      const events = new Map<number, number>([...open.keys()].map((fd) => [fd, POLLIN]));
      if (pending) events.set(ends.in!, (events.get(ends.in!) ?? 0) | POLLOUT);
      const fds = [...events.keys()];
      const pollfds = Buffer.alloc(8 * fds.length);
      fds.forEach((fd, i) => { pollfds.writeInt32LE(fd, 8 * i); pollfds.writeInt16LE(events.get(fd)!, 8 * i + 4); });
      // host input that has not come yet is looked for again after one slice
      const wait = input && !pending ? HOST_WAIT_SLICE_MS : POLL_MS;
      const { result, out } = await r.syscallWith('poll', [{ inout: pollfds }, BigInt(fds.length), BigInt(wait)]);
      if (result === -4n) continue; // EINTR
      if (errnoOf(result)) throw new VmiError('EEXEC', `poll in ${where} failed (errno ${errnoOf(result)})`);
      for (let i = 0; i < fds.length; i++) {
        const revents = out[0].readInt16LE(8 * i + 6);
        if (revents === 0) continue;
        const fd = fds[i];
        if (pending && fd === ends.in && revents & (POLLOUT | POLLERR | POLLHUP)) {
          const n = await writeSome(r, fd, pending);
          if (n === 'closed') await endInput();
          else pending = n < pending.length ? pending.subarray(n) : undefined;
        }
        if (!open.has(fd) || !(revents & (POLLIN | POLLERR | POLLHUP))) continue;
        const data = await readSome(r, fd, ends.tty === true);
        const which = open.get(fd)!;
        if (data === 'again') continue;
        if (data.length === 0) {
          open.delete(fd);
          continue;
        }
        counts[which] += data.length;
        // a slow consumer (a pager) must not hold the VM stopped
        await r.awaitHost(sinks[which]?.(data));
      }
    }
  } finally {
    input?.close();
  }
  if (!ends.tty && input && ends.in !== undefined) await r.syscall('close', BigInt(ends.in));
  if (killed) throw new VmiError('EABORT', 'exec aborted: the command was killed');
  return counts;
}

/** A read of one of the command's outputs: EOF is empty; a terminal's master says EIO once the command's side is closed. */
async function readSome(r: Relayer, fd: number, tty: boolean): Promise<Buffer | 'again'> {
  try {
    return await r.read(fd, READ_CHUNK);
  } catch (err) {
    const name = err instanceof SyscallError ? err.errnoName : undefined;
    if (tty && name === 'EIO') return Buffer.alloc(0);
    if (name === 'EAGAIN') return 'again';
    throw err;
  }
}

/** A write of host input: how much went, or 'closed' when nothing reads it any more (EPIPE; EIO on a terminal). */
async function writeSome(r: Relayer, fd: number, data: Buffer): Promise<number | 'closed'> {
  try {
    return await r.write(fd, data.subarray(0, READ_CHUNK));
  } catch (err) {
    const name = err instanceof SyscallError ? err.errnoName : undefined;
    if (name === 'EAGAIN') return 0;
    if (name === 'EPIPE' || name === 'EIO') return 'closed';
    throw err;
  }
}

/** wait4 without blocking `r` for long: the command may run on after closing its output. */
export async function waitExit(r: Relayer, pid: number, spec: ExecSpec, onReaped: () => void): Promise<number> {
  let killed = false;
  for (;;) {
    if (spec.signal?.aborted && !killed) {
      await r.syscall('kill', BigInt(pid), SIGKILL);
      killed = true;
    }
    const w = await reapChild(r, pid, WNOHANG);
    if (w.pid === pid) {
      onReaped();
      if (killed) throw new VmiError('EABORT', 'exec aborted: the command was killed');
      return w.status;
    }
    await r.syscall('poll', 0n, 0n, BigInt(200));
  }
}

/** Kills and reaps a child of `r` (best effort: cleanup after a failure). */
export async function killAndReap(r: Relayer, pid: number): Promise<void> {
  try {
    await r.syscall('kill', BigInt(pid), SIGKILL);
    await reapChild(r, pid);
  } catch {
    // already reaped, or the process that would reap it is gone
  }
}

/**
 * execve in `child` of each program path in turn (their strings placed by placeExecve) until one
 * is found; `vforkParent` is the pending clone that comes back when one runs.
 */
export async function execveFirstFound(child: ChildProcess, sets: readonly ExecveAddresses[], vforkParent: PendingCall, name: string): Promise<void> {
  let last: unknown;
  for (const addrs of sets) {
    try {
      await child.execveAt(addrs, vforkParent);
      return;
    } catch (err) {
      last = err;
      if ((err as { errnoName?: string }).errnoName !== 'ENOENT' && (err as { errnoName?: string }).errnoName !== 'ENOTDIR') break;
    }
  }
  const e = last as { errnoName?: string; errno?: number };
  if (sets.length > 1 && (e.errnoName === 'ENOENT' || e.errnoName === 'ENOTDIR')) throw new SyscallError('execve', e.errno!, `${JSON.stringify(name)} (not found in the container's PATH)`);
  throw last;
}
