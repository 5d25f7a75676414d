// exec and syscall leave everything after the container to the command, as docker exec does: the
// real CLI parses the command line, and the operation below it (execInContainer, openInjection) is
// replaced by one that records what reached it.
import t from 'tap';
import type { ExecSpec } from '../../lib/ops/exec';
import type { SyscallArgument } from '../../lib/inject';
import * as errors from '../../lib/errors';
import { captureMain, type Main } from '../helpers/run-cli';

const QMP = ['--qmp', 'unix:/nonexistent/qmp.sock'];

const specs: ExecSpec[] = [];
const calls: Array<{ nr: number; args: readonly SyscallArgument[] }> = [];
const injected: Array<{ pid?: number; container?: string }> = [];

const fakeSession = {
  target: { pid: 4242, nspid: 1, comm: 'sh', container: 'c1' },
  async syscallWith(nr: number, args: readonly SyscallArgument[]) {
    calls.push({ nr, args });
    return { result: 0n, out: args.flatMap((a) => (typeof a === 'object' && 'out' in a ? [Buffer.alloc(a.out)] : [])) };
  },
  async close() {},
};

const { main } = t.mockRequire<{ main: Main }>('../../cli/main', {
  // one error tree for the CLI and this test
  '../../lib/errors': errors,
  '../../cli/session': { withVm: (_flags: unknown, fn: (vm: unknown, signal: AbortSignal) => unknown) => fn({}, new AbortController().signal) },
  '../../lib/ops/exec': {
    async execInContainer(_vm: unknown, spec: ExecSpec) {
      specs.push(spec);
      return { exitCode: 0 };
    },
  },
  '../../lib/inject': t.createMock(require('../../lib/inject') as Record<string, unknown>, {
    async openInjection(_vm: unknown, target: { pid?: number; container?: string }) {
      injected.push(target);
      return fakeSession;
    },
  }),
});

async function exec(...args: string[]): Promise<ExecSpec> {
  specs.length = 0;
  const r = await captureMain(main, ['exec', ...args]);
  if (r.code !== 0 || specs.length !== 1) throw new Error(`exec ${args.join(' ')}: status ${r.code}, ${specs.length} calls: ${r.stderr}`);
  return specs[0]!;
}

t.test('exec: the flags after the container are the command\'s', async (t) => {
  const id = await exec(...QMP, 'c1', 'id', '-u', '1000');
  t.same(id.command, ['id', '-u', '1000']);
  t.equal(id.user, undefined, '-u did not become vmictl\'s user');

  const grep = await exec(...QMP, 'c1', 'grep', '-e', 'root', '/etc/passwd');
  t.same(grep.command, ['grep', '-e', 'root', '/etc/passwd']);
  t.same(grep.env, [], '-e did not become an environment variable');

  const ls = await exec(...QMP, 'c1', 'ls', '-w', '80', '/');
  t.same(ls.command, ['ls', '-w', '80', '/']);
  t.equal(ls.cwd, undefined, '-w did not become the working directory');

  const long = await exec(...QMP, 'c1', 'sh', '--privileged', '--help', '--timeout', '5');
  t.same(long.command, ['sh', '--privileged', '--help', '--timeout', '5']);
  t.equal(long.privileged, false);
  t.equal(long.timeout, 20000);
  t.equal(specs.length, 1, '--help after the container is the command\'s, not a request for help');
});

t.test('exec: -- after the container still separates, and only that one', async (t) => {
  t.same((await exec(...QMP, 'c1', '--', 'ls', '-l')).command, ['ls', '-l']);
  t.same((await exec(...QMP, 'c1', 'ls', '--', '-l')).command, ['ls', '--', '-l'], 'a later -- is the command\'s');
  t.same((await exec(...QMP, 'c1', '--', '--', 'x')).command, ['--', 'x'], 'so is a second one');
  t.same((await exec(...QMP, '--', 'c1', 'ls', '-l')).command, ['ls', '-l'], '-- before the container ends vmictl\'s options too');
  t.equal((await exec(...QMP, '--', 'c1', 'ls', '-l')).container, 'c1');
});

t.test('exec: vmictl\'s own options before the container still work', async (t) => {
  const s = await exec(...QMP, '-u', '1000:1001', '-e', 'A=1', '--env', 'B=2', '-w', '/tmp', '--privileged', '--timeout', '5000', 'c1', 'id', '-u');
  t.same(s.command, ['id', '-u']);
  t.same(s.user, { uid: 1000, gid: 1001 });
  t.same(s.env, ['A=1', 'B=2']);
  t.equal(s.cwd, '/tmp');
  t.equal(s.privileged, true);
  t.equal(s.timeout, 5000);
  t.equal(s.container, 'c1');
});

t.test('exec: -- with no command after it reaches no VM', async (t) => {
  specs.length = 0;
  const r = await captureMain(main, ['exec', ...QMP, 'c1', '--']);
  t.not(r.code, 0);
  t.match(r.stderr, /no command given/);
  t.equal(specs.length, 0);
});

async function syscall(...args: string[]): Promise<{ stdout: string; nr: number; args: readonly SyscallArgument[] }> {
  calls.length = 0;
  const r = await captureMain(main, ['syscall', ...args]);
  if (r.code !== 0 || calls.length !== 1) throw new Error(`syscall ${args.join(' ')}: status ${r.code}, ${calls.length} calls: ${r.stderr}`);
  return { stdout: r.stdout, ...calls[0]! };
}

t.test('syscall: the words after the container are the call\'s', async (t) => {
  // lseek is 8 on x86-64; -0x10 looks like a cluster of short flags to an option parser
  const s = await syscall(...QMP, 'c1', 'lseek', '3', '-0x10', '1');
  t.equal(s.nr, 8);
  t.same(s.args, [3n, -16n, 1n]);
  t.same((await syscall(...QMP, 'c1', '--', 'lseek', '3', '-0x10', '1')).args, [3n, -16n, 1n], '-- after the container separates');
});

t.test('syscall: its own options before the container still work', async (t) => {
  injected.length = 0;
  const s = await syscall(...QMP, '--json', '--pid', '4242', 'c1', 'getpid');
  t.equal(s.nr, 39);
  t.same(injected, [{ pid: 4242 }]);
  t.match(JSON.parse(s.stdout), { syscall: 'getpid', result: '0' });
});

t.test('syscall: one of its options after the container says where it goes', async (t) => {
  for (const args of [['c1', 'getpid', '--json'], ['c1', '--json', 'getpid'], ['c1', 'kill', '1', '--pid=5']]) {
    calls.length = 0;
    const r = await captureMain(main, ['syscall', ...QMP, ...args]);
    t.not(r.code, 0, args.join(' '));
    t.match(r.stderr, /--(json|pid=5) is an option of vmictl syscall: put it before the container/);
    t.equal(calls.length, 0, 'nothing was injected');
  }
});
