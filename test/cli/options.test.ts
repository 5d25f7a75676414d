// What the commands' options say and accept: the VM a command asks for when none is given, the
// values --timeout takes, the options each command lists in its help and the units they say.
import t from 'tap';
import { buildProgram, main } from '../../cli/main';
import { EXIT } from '../../cli/exit-codes';
import { allCommands, captureMain } from '../helpers/run-cli';

const vmictl = (...args: string[]) => captureMain(main, args);

// a VM named by the environment or the user's config file would hide the missing --qmp
for (const name of ['VMICTL_QMP', 'VMICTL_GDB', 'VMICTL_VM', 'XDG_CONFIG_HOME']) {
  const saved = process.env[name];
  delete process.env[name];
  t.teardown(() => { if (saved !== undefined) process.env[name] = saved; });
}
process.env.XDG_CONFIG_HOME = '/nonexistent/vmictl-test-config';

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

t.test('status lists only what it uses: QMP (or the config file\'s VM)', async (t) => {
  t.same(await listed('status'), ['--vm', '--qmp', '--json', '--help']);
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

t.test('--timeout and --call-timeout take a whole number of milliseconds a timer can wait', async (t) => {
  const takers: Array<[string[], string]> = [
    [['exec', 'c1', 'ls'], '--timeout'], [['syscall', 'c1', 'getpid'], '--timeout'], [['syscall', 'c1', 'getpid'], '--call-timeout'],
    [['cp', 'c1:/a', '/tmp/a'], '--timeout'], [['kill', 'c1'], '--timeout'], [['stop', 'c1'], '--timeout'], [['pause', 'c1'], '--timeout'], [['unpause', 'c1'], '--timeout'],
  ];
  for (const [[verb, ...operands], flag] of takers) {
    const usage = verb === 'exec' ? EXIT.execFailed : EXIT.usage;
    // 2^31 ms: setTimeout would fire at once
    for (const bad of ['abc', '0', '-5', '1.5', '1e3', '0x10', '', '2147483648']) {
      const r = await vmictl(verb!, flag, bad, ...operands);
      t.equal(r.code, usage, `${verb} ${flag} ${JSON.stringify(bad)}`);
      t.equal(r.stderr, `vmictl: option '${flag} <ms>' argument '${bad}' is invalid. It takes a whole number of milliseconds from 1 to 2147483647.\nRun 'vmictl ${verb} --help' for usage.\n`);
    }
    for (const good of ['1', '250', '2147483647']) {
      // accepted: the command goes on, to the VM it was not given
      const r = await vmictl(verb!, flag, good, ...operands);
      t.match(r.stderr, /^vmictl: no VM given/, `${verb} ${flag} ${good}`);
    }
    t.match((await vmictl(verb!, '--help')).stdout, new RegExp(`${flag} <ms> +(?:(?!\\n {2}-)[\\s\\S])*?,\\s+in\\s+milliseconds`), `${verb} --help says ${flag} is in milliseconds`);
  }
});

t.test('every option measured in a unit says which in its help', async (t) => {
  const said: Record<string, RegExp> = { ms: /, in milliseconds/, seconds: /, in seconds/, MiB: /, in MiB/, bytes: /bytes/ };
  let seen = 0;
  for (const cmd of allCommands(buildProgram())) {
    for (const o of cmd.options) {
      const unit = /<(\w+)>/.exec(o.flags)?.[1];
      if (/time/.test(o.long ?? '')) t.ok(unit === 'ms' || unit === 'seconds', `${cmd.name()} ${o.flags}: a time option names its unit`);
      if (unit === undefined || !(unit in said)) continue;
      t.match(o.description, said[unit]!, `${cmd.name()} ${o.flags}`);
      seen++;
    }
  }
  t.ok(seen > 30, `${seen} options with units`);
});
