import type { Command } from 'commander';
import { connectionOptions, millisecondsOption, type ConnectionFlags } from '../options';
import { withVm } from '../session';
import { VmiError } from '../../lib/errors';
import { escapeForTerminal } from '../../lib/util/escape';
// guest strings (comm, uname) in JSON: C1 controls and bidi overrides escaped too
import { jsonText } from '../render/json';
import type { RecoverJson, SyscallJson } from '../render/syscall';
import { openInjection, type InjectionSession, type SyscallArgument } from '../../lib/inject';
import { errnoMessage, errnoName, errnoOf } from '../../lib/inject/errno';
import { parseUtsname, UTSNAME_FIELDS, UTSNAME_SIZE } from '../../lib/inject/structs';
import { resolveSyscall, syscallName, SYSCALLS_X86_64 } from '../../lib/inject/syscalls';
import { recoverAcquisition, recoverAll, recoverInjection } from '../../lib/inject/recover';
import { basename } from 'node:path';

interface SyscallFlags extends ConnectionFlags {
  json?: boolean;
  timeout: number;
  callTimeout: number;
  pid?: string;
  wake: boolean;
}

/** Symbolic values researchers type often. */
const CONSTANTS: Readonly<Record<string, bigint>> = {
  AT_FDCWD: -100n,
  O_RDONLY: 0n,
  O_WRONLY: 1n,
  O_RDWR: 2n,
  O_DIRECTORY: 0o200000n,
  O_CLOEXEC: 0o2000000n,
};

const MAX_PRINTED = 4096;

/**
 * One command-line argument as a syscall argument: a number (decimal, 0x hex, negative), a
 * constant (AT_FDCWD, O_RDONLY…), `str:TEXT` (a NUL-terminated string in the target), `buf:N` (an
 * N-byte output buffer, printed after the call) or `hex:BYTES` (bytes in the target).
 */
export function parseSyscallArgument(text: string): SyscallArgument {
  if (text.startsWith('str:')) return { in: Buffer.from(`${text.slice(4)}\0`, 'utf8') };
  if (text.startsWith('hex:')) {
    const h = text.slice(4);
    if (!/^([0-9a-fA-F]{2})*$/.test(h)) throw new VmiError('EUSAGE', `not hex bytes: ${JSON.stringify(text)}`);
    return { in: Buffer.from(h, 'hex') };
  }
  if (text.startsWith('buf:')) {
    const n = Number(text.slice(4));
    if (!Number.isInteger(n) || n < 0 || n > 16 << 20) throw new VmiError('EUSAGE', `buf:N needs a size up to 16 MiB: ${JSON.stringify(text)}`);
    return { out: n };
  }
  if (Object.prototype.hasOwnProperty.call(CONSTANTS, text)) return CONSTANTS[text];
  if (/^-?(0x[0-9a-fA-F]+|[0-9]+)$/.test(text)) {
    const neg = text.startsWith('-');
    const v = BigInt(neg ? text.slice(1) : text);
    const value = neg ? -v : v;
    if (value >= 1n << 64n || value < -(1n << 63n)) throw new VmiError('EUSAGE', `${text} does not fit 64 bits`);
    return value;
  }
  throw new VmiError('EUSAGE', `not a syscall argument: ${JSON.stringify(text)} (a number, a constant such as AT_FDCWD, str:TEXT, hex:BYTES or buf:N)`);
}

function describeArgument(text: string): string {
  return text.startsWith('str:') ? JSON.stringify(text.slice(4)) : text;
}

/** The buffer after the call, as escaped text when it looks like text, else hex. */
function showBuffer(b: Buffer, used: number): string {
  const shown = b.subarray(0, Math.min(b.length, Math.max(0, used), MAX_PRINTED));
  const printable = shown.every((c) => c === 0x0a || c === 0x09 || (c >= 0x20 && c < 0x7f));
  const body = printable ? JSON.stringify(escapeForTerminal(shown.toString('latin1'))) : shown.toString('hex');
  return `${body}${used > shown.length ? ` (${used - shown.length} more bytes)` : ''}`;
}

function resultText(r: bigint): string {
  const errno = errnoOf(r);
  if (errno) return `-1 ${errnoName(errno)} (${errnoMessage(errno)})`;
  return r < 0n || r > 0xffffn ? `${r} (0x${BigInt.asUintN(64, r).toString(16)})` : String(r);
}

function syscallJson(s: InjectionSession, name: string, nr: number, result: bigint, more: Pick<SyscallJson, 'buffers' | 'uname'>): SyscallJson {
  const errno = errnoOf(result);
  return {
    target: { pid: s.target.pid, nspid: s.target.nspid, comm: s.target.comm },
    syscall: name,
    number: nr,
    result: result.toString(),
    ...(errno ? { errno: errnoName(errno) } : {}),
    ...more,
  };
}

interface Output {
  stdout: string;
  stderr: string;
  failed: boolean;
}

/**
 * Runs the syscall and returns what to print. Nothing is printed while the session holds the
 * target: a closed pipe (`| head`) makes the CLI exit on the spot, which must not happen mid-injection.
 */
async function run(s: InjectionSession, name: string, nr: number, argv: string[], flags: SyscallFlags): Promise<Output> {
  const o: Output = { stdout: '', stderr: '', failed: false };
  const where = `pid ${s.target.pid} (${escapeForTerminal(s.target.comm)})${s.target.container ? ` in ${escapeForTerminal(s.target.container)}` : ''}, pid ${s.target.nspid} in its namespace`;
  if (nr === SYSCALLS_X86_64.uname && argv.length === 0) {
    const { result, out } = await s.syscallWith(nr, [{ out: UTSNAME_SIZE }]);
    const errno = errnoOf(result);
    o.stderr += `vmictl: injected into ${where}\n`;
    if (errno) o.failed = true;
    const u = errno ? undefined : parseUtsname(out[0]);
    if (flags.json) o.stdout += `${jsonText(syscallJson(s, 'uname', nr, result, u ? { uname: u } : {}))}\n`;
    else if (!u) o.stdout += `uname() = ${resultText(result)}\n`;
    else for (const f of UTSNAME_FIELDS) o.stdout += `${f.padEnd(11)} ${escapeForTerminal(u[f])}\n`;
    return o;
  }
  const args = argv.map(parseSyscallArgument);
  const { result, out } = await s.syscallWith(nr, args);
  const errno = errnoOf(result);
  if (errno) o.failed = true;
  const used = errno ? 0 : Number(result > BigInt(Number.MAX_SAFE_INTEGER) ? 0n : result);
  if (flags.json) {
    o.stdout += `${jsonText(syscallJson(s, name, nr, result, { buffers: out.map((b) => b.toString('hex')) }))}\n`;
  } else {
    o.stdout += `${name}(${argv.map(describeArgument).map(escapeForTerminal).join(', ')}) = ${resultText(result)}\n`;
    if (!errno) out.forEach((b, i) => { o.stdout += `  buffer ${i}: ${showBuffer(b, used > 0 && used <= b.length ? used : b.length)}\n`; });
  }
  o.stderr += `vmictl: injected into ${where}\n`;
  return o;
}

/**
 * The syscall's name and arguments from the words after the container: a `--` right after it is
 * vmictl's separator. An option of `syscall` among them is a usage error that says where it goes
 * (no syscall argument starts with `--`, and a negative number is not one of our flags).
 */
export function syscallWords(cmd: Command, words: readonly string[]): { name: string; args: string[] } {
  const rest = words[0] === '--' ? words.slice(1) : [...words];
  const misplaced = rest.find((w) => {
    const flag = w.split('=')[0];
    return cmd.options.some((o) => o.long === flag || o.short === flag);
  });
  if (misplaced !== undefined) throw new VmiError('EUSAGE', `${misplaced} is an option of vmictl syscall: put it before the container`);
  if (rest.length === 0) throw new VmiError('EUSAGE', 'syscall: no system call given after the container');
  return { name: rest[0], args: rest.slice(1) };
}

/** `vmictl syscall [OPTIONS] CONTAINER NAME [ARGS...]` and `vmictl recover`. */
export function registerSyscall(program: Command): void {
  connectionOptions(
    program
      .command('syscall')
      .description('make a process of a container run one system call (clientless injection) and print the result')
      .argument('<container>', 'id, id prefix, name, hostname, or pid:<host pid> (any process of it is used)')
      .argument('<name>', 'syscall name (getpid, uname, openat…) or number')
      .argument('[args...]', 'arguments: numbers, AT_FDCWD/O_* constants, str:TEXT, hex:BYTES, buf:N (an output buffer)'),
    { dump: false, injects: true },
  )
    // what follows the container is the syscall's: `syscall c1 kill 1 -9` never reads -9 as a flag
    .passThroughOptions()
    .option('--json', 'print JSON')
    .option('--pid <pid>', 'inject into this process (host pid) instead of any process of the container')
    .addOption(millisecondsOption('--timeout <ms>', 'how long to wait for a thread to come back from a syscall', 10000))
    .addOption(millisecondsOption('--call-timeout <ms>', 'how long the injected syscall may take', 10000))
    .option('--no-wake', 'never freeze and thaw the container to restart a syscall that blocks for good (a server in accept)')
    .action(async (container: string, first: string, more: string[], flags: SyscallFlags, cmd: Command) => {
      const { name, args: argv } = syscallWords(cmd, [first, ...more]);
      let nr: number;
      try {
        nr = resolveSyscall(name);
      } catch (err) {
        throw new VmiError('EUSAGE', (err as Error).message);
      }
      argv.forEach(parseSyscallArgument);
      const label = syscallName(nr) ?? String(nr);
      const out = await withVm(flags, async (vm, stopSignal) => {
        const target = flags.pid ? { pid: Number(flags.pid) } : { container };
        const s = await openInjection(vm, target, { timeout: flags.timeout, callTimeout: flags.callTimeout, signal: stopSignal, wake: flags.wake ? 'freeze' : 'never' });
        try {
          return await run(s, label, nr, argv, flags);
        } finally {
          await s.close();
        }
      });
      process.stderr.write(out.stderr);
      process.stdout.write(out.stdout);
      if (out.failed) process.exitCode = 1;
    });

  connectionOptions(
    program
      .command('recover')
      .description('put back processes whose syscall injection was cut short (vmictl killed), from the journal')
      .argument('[journal]', 'one journal file (default: every journal of this VM whose vmictl is gone)'),
    { dump: false },
  )
    .option('--force', 'also take journals whose vmictl still runs or that name another VM')
    .option('--resume', 'run the VM even after a journal that could not be recovered (its target may hold injected registers)')
    .option('--json', 'print JSON')
    .action(async (journal: string | undefined, flags: ConnectionFlags & { force?: boolean; json?: boolean; resume?: boolean }) => {
      await withVm(flags, async (vm, signal) => {
        const opts = { signal, resumeAfterFailure: flags.resume };
        const one = (path: string) => (/^acquire-/.test(basename(path)) ? recoverAcquisition : recoverInjection)(vm, path, opts);
        const outcomes = journal ? [await one(journal)] : await recoverAll(vm, { ...opts, force: flags.force });
        if (flags.json) process.stdout.write(`${jsonText(outcomes.map((x): RecoverJson[number] => ({ journal: x.journal, pid: x.pid, comm: x.comm, action: x.action, detail: x.detail })))}\n`);
        else if (outcomes.length === 0) process.stdout.write('nothing to recover\n');
        else for (const o of outcomes) process.stdout.write(`${o.action}: ${o.pid ? `pid ${o.pid} (${escapeForTerminal(o.comm)}): ` : ''}${escapeForTerminal(o.detail)} [${escapeForTerminal(o.journal)}]\n`);
        if (outcomes.some((o) => o.action === 'failed')) process.exitCode = 1;
      });
    });
}
