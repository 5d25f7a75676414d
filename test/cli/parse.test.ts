// What each command's parser makes of a command line, with options after the operands as users
// type them: the program's real commands, their actions replaced by a recorder. exec and syscall
// stop at the container; every other command reads its options wherever they are.
import t from 'tap';
import type { Command } from 'commander';
import { buildProgram } from '../../cli/main';
import { allCommands } from '../helpers/run-cli';

interface Parsed {
  command: string;
  args: unknown[];
  opts: Record<string, unknown>;
}

async function parse(...argv: string[]): Promise<Parsed> {
  const program = buildProgram();
  let seen: Parsed | undefined;
  for (const cmd of allCommands(program)) {
    cmd.exitOverride();
    cmd.action((...a: unknown[]) => {
      const self = a.at(-1) as Command;
      seen = { command: self.name(), args: a.slice(0, -2), opts: self.opts() };
    });
  }
  await program.parseAsync(['node', 'vmictl', ...argv]);
  if (!seen) throw new Error(`no action ran for ${argv.join(' ')}`);
  return seen;
}

const Q = ['--qmp', 'unix:/q'];

const cases: Array<[string[], unknown[], Record<string, unknown>]> = [
  [['ps', ...Q, '--json', '-a', '--max-tasks', '5'], [], { json: true, all: true, maxTasks: '5', qmp: 'unix:/q', memory: 'auto' }],
  [['top', 'c1', ...Q, '--json', '--max-cmdline', '100'], ['c1'], { json: true, maxCmdline: '100' }],
  [['inspect', 'c1', '--dump', '/d', '--profile', '/p'], [['c1']], { dump: '/d', profile: '/p' }],
  [['kernel', '--json', '--memory', 'gdbstub', '--dump', '/d'], [], { json: true, memory: 'gdbstub', dump: '/d' }],
  [['status', '--json', ...Q], [], { json: true, qmp: 'unix:/q' }],
  [['kill', 'c1', ...Q, '-s', 'TERM', '--all', '--json'], [['c1']], { signal: 'TERM', all: true, json: true }],
  [['stop', 'c1', 'c2', ...Q, '-t', '5', '--json'], [['c1', 'c2']], { time: '5', json: true }],
  [['pause', 'c1', 'c2', 'c3', ...Q, '--json'], [['c1', 'c2', 'c3']], { json: true }],
  [['unpause', 'c1', ...Q], [['c1']], {}],
  [['cp', 'c1:/a', '/b', ...Q, '-r', '-f', '--no-progress', '--max-bytes', '10'], ['c1:/a', '/b'], { recursive: true, force: true, progress: false, maxBytes: '10' }],
  [['check', ...Q, '--json', '--no-text', '--syscalls', 'kill,openat', '--record', '--baseline', '/b'], [], { json: true, text: false, syscalls: 'kill,openat', record: true, baseline: '/b' }],
  [['recover', '/j', ...Q, '--force', '--resume', '--json'], ['/j'], { force: true, resume: true, json: true }],
  [['profile', 'build', '--vmlinux', '/v', '-o', '/out.json', '--no-hash', '--system-map', '/m'], [], { vmlinux: '/v', output: '/out.json', hash: false, systemMap: '/m' }],
  [['profile', 'build', '--from-vm', ...Q, '-o', '/out.json'], [], { fromVm: true, qmp: 'unix:/q', output: '/out.json' }],
  [['profile', 'info', '/p.json', '--type', 'task_struct', '--json'], ['/p.json'], { type: 'task_struct', json: true }],
  [['exec', ...Q, '-u', '0', 'c1', 'ls', '-l', '--json'], ['c1', ['ls', '-l', '--json']], { user: '0' }],
  [['syscall', ...Q, '--json', 'c1', 'kill', '1', '-0x9'], ['c1', 'kill', ['1', '-0x9']], { json: true }],
];

for (const [argv, args, opts] of cases) {
  t.test(argv.join(' '), async (t) => {
    const p = await parse(...argv);
    t.equal(p.command, argv[0] === 'profile' ? argv[1] : argv[0]);
    t.same(p.args, args);
    t.match(p.opts, opts);
  });
}

t.test('the program\'s own options before the verb', async (t) => {
  const program = buildProgram();
  for (const cmd of allCommands(program)) cmd.exitOverride().configureOutput({ writeOut: () => undefined });
  for (const [flag, code] of [['--version', 'commander.version'], ['-V', 'commander.version'], ['--help', 'commander.helpDisplayed'], ['-h', 'commander.helpDisplayed']]) {
    const err = await program.parseAsync(['node', 'vmictl', flag!]).then(() => undefined, (e: unknown) => e);
    t.match(err, { exitCode: 0, code }, flag);
  }
});
