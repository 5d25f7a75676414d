// vmictl's exit statuses and what it prints with them: 2 and a one-line hint for a wrong command
// line, 1 and one line for a failure (a missing file included), check's 0/1/3, exec's 125/126/127
// and its command's own. The real CLI runs in-process; where a VM would be needed, the operation
// below the CLI (withVm, checkKernel, execInContainer) is replaced by one the test steers.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import * as errors from '../../lib/errors';
import * as injectErrors from '../../lib/inject/errors';
import { SyscallError } from '../../lib/inject/errors';
import type { CheckReport } from '../../lib/integrity/check';
import { main as realMain } from '../../cli/main';
import { EXIT, execExitStatus } from '../../cli/exit-codes';
import { captureMain, type CliRun, type Main } from '../helpers/run-cli';

const vmictl = (...args: string[]) => captureMain(realMain, args);
const NOWHERE = path.join('/nonexistent', 'vmictl-test', 'nope.elf');

/** stderr is these lines and nothing else: no help text, no stack. */
function lines(t: Test, r: CliRun, expected: RegExp[]): void {
  const got = r.stderr.split('\n');
  t.equal(got.pop(), '', 'stderr ends with a newline');
  t.equal(got.length, expected.length, `stderr has ${expected.length} line(s): ${JSON.stringify(r.stderr)}`);
  expected.forEach((re, i) => t.match(got[i], re));
  t.notMatch(r.stderr, /Usage:|Options:|\n\s+at /, 'no help text, no stack');
}

t.test('a wrong command line: 2, the error and a pointer to the command\'s help', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['ps', '--x'], /^vmictl: unknown option '--x'$/],
    [['ps', '--memory', 'fast', '--dump', NOWHERE], /^vmictl: option '--memory <backend>' argument 'fast' is invalid\. Allowed choices are auto, gdbstub, procmem\.$/],
    [['top'], /^vmictl: missing required argument 'container'$/],
    [['ps', 'extra'], /^vmictl: too many arguments for 'ps'/],
    [['ps', '--max-read', 'lots', '--dump', NOWHERE], /^vmictl: --max-read needs a positive number, not "lots"$/],
    [['profile', 'info', '/p.json', '--tpye', 'x'], /^vmictl: unknown option '--tpye'/],
  ];
  for (const [args, message] of cases) {
    const r = await vmictl(...args);
    t.equal(r.code, EXIT.usage, args.join(' '));
    const help = args[0] === 'profile' ? 'vmictl profile info' : `vmictl ${args[0]}`;
    lines(t, r, [message, new RegExp(`^Run '${help} --help' for usage\\.$`)]);
    t.equal(r.stdout, '');
  }
  const unknown = await vmictl('pss');
  t.equal(unknown.code, EXIT.usage);
  lines(t, unknown, [/^vmictl: unknown command 'pss'/, /^Run 'vmictl --help' for usage\.$/]);
});

t.test('exec\'s wrong command lines are 125, out of the range of its command\'s statuses', async (t) => {
  for (const args of [['exec', '--x', 'c1', 'ls'], ['exec'], ['exec', '--timeout']]) {
    const r = await vmictl(...args);
    t.equal(r.code, EXIT.execFailed, args.join(' '));
    lines(t, r, [/^vmictl: /, /^Run 'vmictl exec --help' for usage\.$/]);
  }
});

t.test('no command: the help, and 2', async (t) => {
  for (const args of [[], ['profile']]) {
    const r = await vmictl(...args);
    t.equal(r.code, EXIT.usage, `vmictl ${args.join(' ')}`);
    t.match(r.stderr, /^Usage: vmictl /, 'the help, on stderr');
    t.notMatch(r.stderr, /vmictl: /, 'and no error line above it');
  }
});

t.test('--help ends with the table of exit codes; exec and check say theirs', async (t) => {
  const help = await vmictl('--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /\nExit codes:\n {2}0 .*\n {2}1 .*\n {2}2 .*wrong command line.*\n {2}3 .*check could not check\n {2}125 .*\n {2}126 .*\n {2}127 .*not found\n {2}128\+n /);
  t.equal((await vmictl('exec', '--help')).code, 0, 'exec --help: 0, not exec\'s 125');
  t.match((await vmictl('exec', '--help')).stdout, /Exit status: the command's own; 127 .* 126 .* 125 /);
  t.match((await vmictl('check', '--help')).stdout, /Exit status: 0 nothing found, 1 something found, 2 wrong command line, 3 could not check/);
});

t.test('--help, --version and help COMMAND print and exit 0', async (t) => {
  for (const args of [['--help'], ['-h'], ['--version'], ['help', 'ps'], ['ps', '--help'], ['profile', 'info', '--help']]) {
    const r = await vmictl(...args);
    t.equal(r.code, 0, args.join(' '));
    t.not(r.stdout, '');
    t.equal(r.stderr, '');
  }
});

t.test('a missing file is a failure: 1, one line naming it, no stack', async (t) => {
  for (const args of [['ps', '--dump', NOWHERE], ['kernel', '--dump', NOWHERE, '--json'], ['profile', 'info', NOWHERE]]) {
    const r = await vmictl(...args);
    t.equal(r.code, EXIT.failed, args.join(' '));
    lines(t, r, [new RegExp(`^vmictl: cannot \\w+ "${NOWHERE}": no such file or directory \\[ENOENT\\]$`)]);
    t.equal(r.stdout, '');
  }
});

// check and exec with the VM and the operation replaced

let checkResult: () => Promise<CheckReport> = async () => { throw new Error('not set'); };
let execResult: () => Promise<{ exitCode: number }> = async () => { throw new Error('not set'); };
let psResult: () => Promise<unknown> = async () => { throw new Error('not set'); };

const { main: mocked } = t.mockRequire<{ main: Main }>('../../cli/main', {
  // one error tree for the CLI and this test
  '../../lib/errors': errors,
  '../../lib/inject/errors': injectErrors,
  '../../cli/session': { withVm: (_flags: unknown, fn: (vm: unknown, signal: AbortSignal) => unknown) => fn({ listContainers: () => psResult() }, new AbortController().signal) },
  '../../lib/integrity/check': { checkKernel: () => checkResult() },
  '../../lib/ops/exec': { execInContainer: () => execResult() },
});
const withFakes = (verb: string, ...rest: string[]) => captureMain(mocked, [verb, '--qmp', 'unix:/nonexistent/qmp.sock', ...rest]);

function report(findings: CheckReport['findings']): CheckReport {
  return { findings, checked: { functions: 10, syscallTableEntries: 400, textBytes: 1000, patchSites: 5, idtGates: 256, tracingAttachments: 0 }, mode: 'vmlinux', ms: 3 };
}

t.test('check: 0 clean, 1 findings, 3 when it could not check', async (t) => {
  checkResult = async () => report([]);
  const clean = await withFakes('check');
  t.equal(clean.code, EXIT.ok, clean.stderr);
  t.match(clean.stdout, /^0 finding\(s\)/m);

  checkResult = async () => report([{ kind: 'syscall-table', address: 0xffffffff82000000n, symbol: 'sys_call_table[62]', expected: '0xffffffff81000000', found: '0xffffffffc0000000' }]);
  const found = await withFakes('check', '--json');
  t.equal(found.code, EXIT.checkFindings, found.stderr);
  t.equal((JSON.parse(found.stdout) as { findings: unknown[] }).findings.length, 1);

  const failures: Array<[string, () => Error]> = [
    ['a vmictl error', () => new errors.MissingSymbolError('sys_call_table')],
    ['a missing file', () => Object.assign(new Error("ENOENT: no such file or directory, open '/vmlinux'"), { code: 'ENOENT', errno: -2, syscall: 'open', path: '/vmlinux' })],
    ['a bug', () => new TypeError('x is undefined')],
  ];
  for (const [what, error] of failures) {
    checkResult = async () => { throw error(); };
    const r = await withFakes('check');
    t.equal(r.code, EXIT.checkNotDone, what);
    lines(t, r, [/^vmictl: (no symbol or field "sys_call_table" in the profile \[ENOSYM\]|cannot open "\/vmlinux": no such file or directory \[ENOENT\]|internal error: TypeError: x is undefined)$/]);
  }

  checkResult = async () => { throw new errors.TerminatedError('SIGINT', 2); };
  t.equal((await withFakes('check')).code, 130, 'stopped by Ctrl-C: 128 + 2, as every command');

  t.equal((await withFakes('check', '--bogus')).code, EXIT.usage, 'a wrong command line is 2, for check too');
});

t.test('a failure of any other command: 1 and one line, a bug included', async (t) => {
  psResult = async () => { throw new TypeError("Cannot read properties of undefined (reading 'pid')"); };
  const r = await withFakes('ps');
  t.equal(r.code, EXIT.failed);
  lines(t, r, [/^vmictl: internal error: TypeError: Cannot read properties of undefined \(reading 'pid'\)$/]);
  psResult = async () => { throw new errors.ValidationError('task list loops'); };
  const v = await withFakes('ps');
  t.equal(v.code, EXIT.failed);
  lines(t, v, [/^vmictl: task list loops \[EINVALID\]$/]);
});

t.test('exec ends with its command\'s status, or docker exec\'s codes', async (t) => {
  const cases: Array<[string, () => Promise<{ exitCode: number }>, number, RegExp | undefined]> = [
    ['the command exited 0', async () => ({ exitCode: 0 }), 0, undefined],
    ['the command exited 1', async () => ({ exitCode: 1 }), 1, undefined],
    ['the command exited 7', async () => ({ exitCode: 7 }), 7, undefined],
    ['SIGKILL killed the command', async () => ({ exitCode: 137 }), 137, undefined],
    ['not found', async () => { throw new SyscallError('execve', 2, '"nope" (not found in the container\'s PATH)'); }, 127, /execve "nope" .*ENOENT/],
    ['not executable', async () => { throw new SyscallError('execve', 13); }, 126, /execve: EACCES/],
    ['vmictl failed', async () => { throw new injectErrors.AcquireTimeoutError([], 20000); }, 125, /no thread of the target .*\[EINJECT\]/],
    ['vmictl has a bug', async () => { throw new RangeError('bad offset'); }, 125, /internal error: RangeError: bad offset/],
  ];
  for (const [what, result, status, message] of cases) {
    execResult = result;
    const r = await withFakes('exec', 'c1', 'true');
    t.equal(r.code, status, what);
    if (message) lines(t, r, [message]);
    else t.equal(r.stderr, '', `${what}: nothing from vmictl`);
  }
  execResult = async () => ({ exitCode: 0 });
  const usage = await withFakes('exec', '-u', 'root', 'c1', 'id');
  t.equal(usage.code, EXIT.execFailed, 'a bad value of one of exec\'s options: 125');
  lines(t, usage, [/^vmictl: -u takes UID\[:GID\] as numbers, not "root"$/, /^Run 'vmictl exec --help' for usage\.$/]);
});

t.test('execExitStatus: the mapping of exec\'s outcomes to statuses', async (t) => {
  t.equal(execExitStatus({ exitCode: 0 }), 0, 'the command\'s own status');
  t.equal(execExitStatus({ exitCode: 3 }), 3);
  t.equal(execExitStatus({ exitCode: 130 }), 130, 'killed by SIGINT in the guest');
  const execve = (errno: number) => execExitStatus({ error: new SyscallError('execve', errno) });
  t.equal(execve(2), 127, 'ENOENT: not found');
  t.equal(execve(20), 127, 'ENOTDIR: not found (a PATH entry that is a file)');
  t.equal(execve(13), 126, 'EACCES: cannot run');
  t.equal(execve(8), 126, 'ENOEXEC: cannot run');
  t.equal(execve(1), 126, 'EPERM: cannot run');
  t.equal(execve(7), 126, 'E2BIG: cannot run');
  t.equal(execExitStatus({ error: new SyscallError('openat', 2) }), 125, 'another syscall\'s ENOENT is vmictl\'s failure');
  t.equal(execExitStatus({ error: new errors.VmiError('ENOCONTAINER', 'no container c1') }), 125);
  t.equal(execExitStatus({ error: new Error('bug') }), 125);
  t.equal(execExitStatus({ error: undefined }), 125);
});

t.test('docs/commands.md lists the codes --help lists', async (t) => {
  const doc = fs.readFileSync(path.join(__dirname, '../../docs/commands.md'), 'utf8');
  const inDoc = [...doc.matchAll(/^\| (\d+(?: \+ n)?) \|/gm)].map((m) => m[1]!.replace(/ /g, ''));
  const inHelp = [...(await vmictl('--help')).stdout.matchAll(/^ {2}(\d+(?:\+n)?) /gm)].map((m) => m[1]);
  t.same(inDoc, inHelp);
  t.same(inHelp, ['0', '1', '2', '3', '125', '126', '127', '128+n']);
});
