// What the commands' options say and accept: the VM a command asks for when none is given, the
// values --timeout takes, and the options each command lists in its help.
import t from 'tap';
import { main } from '../../cli/main';
import { EXIT } from '../../cli/exit-codes';
import { captureMain } from '../helpers/run-cli';

const vmictl = (...args: string[]) => captureMain(main, args);

// a VM named by the environment would hide the missing --qmp
for (const name of ['VMICTL_QMP', 'VMICTL_GDB']) {
  const saved = process.env[name];
  delete process.env[name];
  t.teardown(() => { if (saved !== undefined) process.env[name] = saved; });
}

t.test('no VM given: a live-VM command asks for --qmp only, before anything else', async (t) => {
  const live: string[][] = [['exec', 'c1', 'ls'], ['syscall', 'c1', 'getpid'], ['recover'], ['kill', 'c1'], ['stop', 'c1'], ['pause', 'c1'], ['unpause', 'c1'], ['cp', 'c1:/etc/hostname', '-'], ['status']];
  for (const args of live) {
    const r = await vmictl(...args);
    t.equal(r.code, args[0] === 'exec' ? EXIT.execFailed : EXIT.usage, args.join(' '));
    t.equal(r.stderr, `vmictl: no VM given: pass --qmp ADDR (or set VMICTL_QMP)\nRun 'vmictl ${args[0]} --help' for usage.\n`);
    t.equal(r.stdout, '');
  }
});

t.test('no VM given: a command that reads dumps offers --dump too', async (t) => {
  for (const args of [['ps'], ['kernel'], ['check'], ['top', 'c1']]) {
    const r = await vmictl(...args);
    t.equal(r.code, EXIT.usage, args.join(' '));
    t.match(r.stderr, /^vmictl: no VM given: pass --qmp ADDR \(or VMICTL_QMP\), or --dump FILE\n/);
  }
});

/** The long options a command's --help lists. */
async function listed(...command: string[]): Promise<string[]> {
  const r = await vmictl(...command, '--help');
  return [...r.stdout.matchAll(/^ {2}(?:-\w, )?(--[\w-]+)/gm)].map((m) => m[1]!);
}

t.test('status lists only what it uses: QMP', async (t) => {
  t.same(await listed('status'), ['--qmp', '--json', '--help']);
  const r = await vmictl('status', '--qmp', 'unix:/q', '--max-read', '10');
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /^vmictl: unknown option '--max-read'\n/);
});

t.test('profile build lists no --profile: it makes one, from memory or a vmlinux', async (t) => {
  const options = await listed('profile', 'build');
  t.notOk(options.includes('--profile'), options.join(' '));
  t.ok(['--vmlinux', '--from-vm', '--output', '--qmp', '--gdb', '--memory', '--max-read', '--time-limit', '--dump'].every((o) => options.includes(o)), 'and every option it uses');
  t.match((await vmictl('profile', 'build', '--help')).stdout, /used with --from-vm only/);
  const r = await vmictl('profile', 'build', '--from-vm', '--dump', '/d', '--profile', '/p.json', '-o', '/o.json');
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /^vmictl: unknown option '--profile'\n/);
});
