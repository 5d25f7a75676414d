// vmictl's exit statuses and what it prints with them: 2 and a one-line hint for a wrong command
// line, 1 and one line for a failure (a missing file included). The real CLI runs in-process;
// where a VM would be needed, withVm is replaced by one the test steers.
import * as path from 'node:path';
import t, { type Test } from 'tap';
import * as errors from '../../lib/errors';
import { main as realMain } from '../../cli/main';
import { EXIT } from '../../cli/exit-codes';
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

t.test('no command: the help, and 2', async (t) => {
  for (const args of [[], ['profile']]) {
    const r = await vmictl(...args);
    t.equal(r.code, EXIT.usage, `vmictl ${args.join(' ')}`);
    t.match(r.stderr, /^Usage: vmictl /, 'the help, on stderr');
    t.notMatch(r.stderr, /vmictl: /, 'and no error line above it');
  }
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

// other commands with the VM replaced

let psResult: () => Promise<unknown> = async () => { throw new Error('not set'); };

const { main: mocked } = t.mockRequire<{ main: Main }>('../../cli/main', {
  // one error tree for the CLI and this test
  '../../lib/errors': errors,
  '../../cli/session': { withVm: (_flags: unknown, fn: (vm: unknown, signal: AbortSignal) => unknown) => fn({ listContainers: () => psResult() }, new AbortController().signal) },
});
const withFakes = (verb: string, ...rest: string[]) => captureMain(mocked, [verb, '--qmp', 'unix:/nonexistent/qmp.sock', ...rest]);

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
