// The VM options before the verb (`vmictl --qmp X ps`) and the config file's named VMs: what value
// each option of the verb ends up with, and from where, through the real program with its actions
// replaced by a recorder; and the usage errors, through the real CLI (they come before any VM).
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Command } from 'commander';
import { buildProgram, main } from '../../cli/main';
import { EXIT } from '../../cli/exit-codes';
import { allCommands, captureMain } from '../helpers/run-cli';

const ENV = ['VMICTL_QMP', 'VMICTL_GDB', 'VMICTL_VMLINUX', 'VMICTL_VM', 'XDG_CONFIG_HOME'];
const savedEnv = Object.fromEntries(ENV.map((k) => [k, process.env[k]]));
for (const k of ENV) delete process.env[k];
t.teardown(() => {
  for (const k of ENV) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
});

const home = mkdtempSync(join(tmpdir(), 'vmictl-config-'));
t.teardown(() => rmSync(home, { recursive: true, force: true }));
let nth = 0;

/** A fresh XDG_CONFIG_HOME holding `config` (text as is, an object as JSON), modes as a careful user has them. */
function withConfig(config: unknown): string {
  const xdg = join(home, `xdg${nth++}`);
  mkdirSync(join(xdg, 'vmictl'), { recursive: true, mode: 0o700 });
  chmodSync(join(xdg, 'vmictl'), 0o700);
  const file = join(xdg, 'vmictl', 'config.json');
  if (config !== undefined) {
    writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config), { mode: 0o600 });
    chmodSync(file, 0o600);
  }
  process.env.XDG_CONFIG_HOME = xdg;
  return file;
}

/** With no config file at all. */
function noConfig(): void {
  withConfig(undefined);
}

interface Parsed {
  command: string;
  opts: Record<string, unknown>;
  source: (key: string) => string | undefined;
}

async function parse(...argv: string[]): Promise<Parsed> {
  const program = buildProgram();
  let seen: Parsed | undefined;
  for (const cmd of allCommands(program)) {
    cmd.action((...a: unknown[]) => {
      const self = a.at(-1) as Command;
      seen = { command: self.name(), opts: { ...self.opts() }, source: (k) => self.getOptionValueSource(k) };
    });
  }
  await program.parseAsync(['node', 'vmictl', ...argv]);
  if (!seen) throw new Error(`no action ran for ${argv.join(' ')}`);
  return seen;
}

const vmictl = (...args: string[]) => captureMain(main, args);

const LAB = { qmp: 'unix:/run/lab/qmp.sock', gdb: 'unix:/run/lab/gdb.sock', vmlinux: '/srv/lab/vmlinux', profile: '/srv/lab/profile.json' };
const PROD = { qmp: 'tcp:127.0.0.1:4444', gdb: 'tcp:127.0.0.1:1234' };

t.test('VM options before the verb reach it, as after it', async (t) => {
  noConfig();
  // [the verb, its operands]: exec and syscall take their options before the container
  const verbs: Array<[string[], string[]]> = [[['ps'], []], [['kernel'], []], [['top'], ['c1']], [['check'], []], [['kill'], ['c1']], [['syscall'], ['c1', 'getpid']], [['exec'], ['c1', 'ls']], [['profile', 'build'], ['--from-vm', '-o', '/o.json']]];
  for (const [words, operands] of verbs) {
    const verb = [...words, ...operands];
    const before = await parse('--qmp', 'unix:/q', '--gdb', 'unix:/g', ...verb);
    const after = await parse(...words, '--qmp', 'unix:/q', '--gdb', 'unix:/g', ...operands);
    t.equal(before.opts.qmp, 'unix:/q', `${verb.join(' ')}: --qmp before`);
    t.equal(before.opts.gdb, 'unix:/g', `${verb.join(' ')}: --gdb before`);
    t.same(before.opts, after.opts, `${verb.join(' ')}: the same options either way`);
  }
  const ps = await parse('--profile', '/p.json', 'ps');
  t.equal(ps.opts.profile, '/p.json');
  const kill = await parse('--vmlinux', '/v', 'kill', 'c1', '--qmp', 'unix:/q');
  t.equal(kill.opts.vmlinux, '/v');
  const status = await parse('--qmp', 'unix:/q', 'status');
  t.equal(status.opts.qmp, 'unix:/q', 'status, which takes --qmp alone');
});

t.test('given before and after the verb, the one after wins', async (t) => {
  noConfig();
  const ps = await parse('--qmp', 'unix:/before', '--gdb', 'unix:/g', 'ps', '--qmp', 'unix:/after');
  t.equal(ps.opts.qmp, 'unix:/after');
  t.equal(ps.opts.gdb, 'unix:/g', 'the other option before the verb still applies');
});

t.test('an option before the verb beats the environment; after, too', async (t) => {
  noConfig();
  process.env.VMICTL_QMP = 'unix:/env';
  t.teardown(() => { delete process.env.VMICTL_QMP; });
  t.equal((await parse('--qmp', 'unix:/flag', 'ps')).opts.qmp, 'unix:/flag');
  t.equal((await parse('ps', '--qmp', 'unix:/flag')).opts.qmp, 'unix:/flag');
  const env = await parse('ps');
  t.equal(env.opts.qmp, 'unix:/env');
  t.equal(env.source('qmp'), 'env');
});

t.test('exec and syscall: the options before the verb do not change what the command gets', async (t) => {
  noConfig();
  const exec = await parse('--qmp', 'unix:/q', 'exec', '-u', '1000', 'c1', 'id', '-u', '--qmp', 'x');
  t.equal(exec.opts.qmp, 'unix:/q');
  t.equal(exec.opts.user, '1000');
  const program = buildProgram();
  let words: unknown;
  program.commands.find((c) => c.name() === 'exec')!.action((_c: string, w: string[]) => { words = w; });
  await program.parseAsync(['node', 'vmictl', '--gdb', 'unix:/g', '--qmp', 'unix:/q', 'exec', 'c1', 'id', '-u', '--qmp', 'x']);
  t.same(words, ['id', '-u', '--qmp', 'x'], 'everything after the container is the command\'s');
});

t.test('an option before the verb that the verb does not take is a usage error', async (t) => {
  noConfig();
  const status = await vmictl('--gdb', 'unix:/g', 'status');
  t.equal(status.code, EXIT.usage);
  t.equal(status.stderr, "vmictl: vmictl status takes no --gdb\nRun 'vmictl status --help' for usage.\n");
  const list = await vmictl('--qmp', 'unix:/q', 'completion', 'bash');
  t.equal(list.code, EXIT.usage);
  t.equal(list.stdout, '', 'nothing ran');
  const build = await vmictl('--vmlinux', '/v', 'profile', 'build', '-o', '/o.json');
  t.equal(build.code, EXIT.usage);
  t.match(build.stderr, /vmictl profile build has a --vmlinux of its own: give it after the command/);
  const exec = await vmictl('--dump', '/d', 'exec', 'c1', 'ls');
  t.equal(exec.code, EXIT.usage, 'the program\'s own usage error');
  t.match(exec.stderr, /^vmictl: unknown option '--dump'/, '--dump is not one of the VM options');
  const ps = await vmictl('--vmlinux', '/v', 'ps');
  t.equal(ps.code, EXIT.usage);
  t.equal(ps.stderr, "vmictl: vmictl ps takes no --vmlinux\nRun 'vmictl ps --help' for usage.\n");
});

t.test('the config file: --vm names a VM, whose fields fill what the user left out', async (t) => {
  withConfig({ vms: { lab: LAB, prod: PROD } });
  const kill = await parse('--vm', 'lab', 'kill', 'c1');
  t.match(kill.opts, LAB);
  t.equal(kill.source('qmp'), 'config');
  const after = await parse('kill', 'c1', '--vm', 'prod');
  t.match(after.opts, PROD);
  t.equal(after.opts.vmlinux, undefined, 'a field the VM has not stays unset');
  t.equal((await parse('ps', '--vm', 'lab')).opts.vmlinux, undefined, 'ps takes no --vmlinux: none is given to it');
  t.equal((await parse('status', '--vm', 'lab')).opts.qmp, LAB.qmp, 'status takes the qmp field alone');
  t.equal((await parse('--vm', 'lab', 'ps', '--vm', 'prod')).opts.qmp, PROD.qmp, '--vm after the verb wins');
  const build = await parse('--vm', 'lab', 'profile', 'build', '--from-vm', '-o', '/o.json');
  t.equal(build.opts.qmp, LAB.qmp);
  t.equal(build.opts.vmlinux, undefined, 'profile build\'s own --vmlinux (its input) is not the VM\'s');
  t.equal(build.opts.profile, undefined);
});

t.test('precedence: flag, then environment, then the named VM, then the default VM', async (t) => {
  withConfig({ default: 'lab', vms: { lab: LAB, prod: PROD } });
  t.teardown(() => { for (const k of ['VMICTL_VM', 'VMICTL_GDB', 'VMICTL_VMLINUX', 'VMICTL_QMP']) delete process.env[k]; });

  t.match((await parse('kill', 'c1')).opts, LAB, 'no VM named: the default');
  process.env.VMICTL_VM = 'prod';
  t.match((await parse('kill', 'c1')).opts, PROD, 'VMICTL_VM over the default');
  t.match((await parse('--vm', 'lab', 'kill', 'c1')).opts, { qmp: LAB.qmp }, '--vm over VMICTL_VM');

  process.env.VMICTL_GDB = 'unix:/env-gdb';
  process.env.VMICTL_VMLINUX = '/env/vmlinux';
  const env = await parse('--vm', 'lab', 'kill', 'c1');
  t.equal(env.opts.gdb, '/env-gdb'.replace(/^/, 'unix:'), 'the environment over the VM\'s field');
  t.equal(env.opts.vmlinux, '/env/vmlinux');
  t.equal(env.opts.qmp, LAB.qmp, 'the fields the environment leaves are the VM\'s');

  const flag = await parse('--gdb', 'unix:/flag-gdb', 'kill', 'c1', '--vm', 'lab', '--vmlinux', '/flag/vmlinux');
  t.equal(flag.opts.gdb, 'unix:/flag-gdb', 'a flag over the environment');
  t.equal(flag.opts.vmlinux, '/flag/vmlinux');
});

t.test('the default VM is not mixed with a VM given some other way', async (t) => {
  withConfig({ default: 'lab', vms: { lab: LAB } });
  const qmp = await parse('--qmp', 'unix:/other', 'kill', 'c1');
  t.equal(qmp.opts.qmp, 'unix:/other');
  t.equal(qmp.opts.gdb, undefined, 'not the default VM\'s gdbstub');
  t.equal(qmp.opts.vmlinux, undefined, 'nor its vmlinux');
  const dump = await parse('ps', '--dump', '/d');
  t.equal(dump.opts.qmp, undefined, '--dump: no default VM either');
  const named = await parse('--vm', 'lab', '--qmp', 'unix:/other', 'kill', 'c1');
  t.equal(named.opts.gdb, LAB.gdb, 'a VM named on purpose fills in around the flag');
  t.equal(named.opts.qmp, 'unix:/other');
});

t.test('no config file: nothing changes, and --vm is an error', async (t) => {
  noConfig();
  const ps = await parse('ps');
  t.equal(ps.opts.qmp, undefined);
  const r = await vmictl('--vm', 'lab', 'ps');
  t.equal(r.code, EXIT.usage);
  t.match(r.stderr, /^vmictl: no VM named "lab": there is no config file \(.*vmictl\/config\.json\)\nRun 'vmictl ps --help' for usage\.\n$/);
});

t.test('a config file that is wrong is a usage error naming the file, before any VM is reached', async (t) => {
  const bad: Array<[unknown, RegExp]> = [
    ['{ "vms": ', /not valid JSON/],
    ['[]', /must hold a JSON object/],
    [{ vms: { lab: LAB }, defualt: 'lab' }, /unknown key "defualt" \(known: default, vms\)/],
    [{ vms: { lab: { ...LAB, gbd: 'unix:/x' } } }, /unknown key "gbd" in vms\.lab/],
    [{ vms: { lab: { qmp: 42 } } }, /vms\.lab\.qmp must be a non-empty string/],
    [{ vms: { lab: { qmp: 'tcp:10.0.0.5:4444' } } }, /vms\.lab\.qmp: refusing non-loopback address/],
    [{ vms: { lab: { gdb: '192.168.1.2:1234' } } }, /vms\.lab\.gdb: refusing non-loopback address/],
    [{ vms: { lab: { qmp: 'qmp.sock' } } }, /vms\.lab\.qmp: not a socket address/],
    [{ vms: { lab: { qmp: './qmp.sock' } } }, /vms\.lab\.qmp: a unix socket path must be absolute/],
    [{ vms: { lab: { vmlinux: 'vmlinux' } } }, /vms\.lab\.vmlinux must be an absolute path/],
    [{ vms: { 'a b': LAB } }, /bad VM name "a b"/],
    [{ vms: [] }, /"vms" must be an object/],
    [{ default: 'prod', vms: { lab: LAB } }, /"default" names "prod", which is not in "vms"/],
  ];
  for (const [config, message] of bad) {
    const file = withConfig(config);
    for (const args of [['ps', '--qmp', 'unix:/nonexistent/q'], ['exec', '--qmp', 'unix:/nonexistent/q', 'c1', 'ls']]) {
      const r = await vmictl(...args);
      t.equal(r.code, args[0] === 'exec' ? EXIT.execFailed : EXIT.usage, `${JSON.stringify(config)}: ${args[0]}`);
      t.match(r.stderr, new RegExp(`^vmictl: config file ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: ${message.source}`));
      t.notMatch(r.stderr, /ENOENT|connect/, 'no VM was reached');
    }
  }
  withConfig({ vms: { lab: LAB, prod: PROD } });
  const unknown = await vmictl('--vm', 'test', 'ps');
  t.equal(unknown.code, EXIT.usage);
  t.match(unknown.stderr, /no VM named "test" \(it has lab, prod\)/);
});

t.test('a config file or directory that others could write, or that is not ours, is refused', async (t) => {
  const cases: Array<[string, (file: string) => void, RegExp]> = [
    ['file writable by group', (f) => chmodSync(f, 0o620), /config\.json is writable by group or others \(mode 620\)/],
    ['file writable by others', (f) => chmodSync(f, 0o602), /is writable by group or others \(mode 602\)/],
    ['directory writable by others', (f) => chmodSync(join(f, '..'), 0o777), /vmictl is writable by group or others \(mode 777\)/],
  ];
  const uid = process.getuid!();
  if (uid === 0) {
    // only root can give a file away
    cases.push(['file of another user', (f) => chownSync(f, 65534, 65534), /config\.json belongs to uid 65534, not to you \(0\)/]);
    cases.push(['directory of another user', (f) => chownSync(join(f, '..'), 65534, 65534), /vmictl belongs to uid 65534, not to you \(0\)/]);
  } else {
    t.comment(`not root (uid ${uid}): cannot make a file of another user, so ownership is not tested here`);
  }
  for (const [what, spoil, message] of cases) {
    const file = withConfig({ vms: { lab: LAB } });
    spoil(file);
    const r = await vmictl('--vm', 'lab', 'ps');
    t.equal(r.code, EXIT.usage, what);
    t.match(r.stderr, message, what);
  }
  const file = withConfig({ vms: { lab: LAB } });
  chmodSync(file, 0o644);
  chmodSync(join(file, '..'), 0o755);
  t.equal((await parse('--vm', 'lab', 'ps')).opts.qmp, LAB.qmp, 'readable by others is fine: the file holds no secret');
});

t.test('commands that reach no VM read no config file', async (t) => {
  withConfig('not json');
  const r = await vmictl('completion', 'bash');
  t.equal(r.code, 0, r.stderr);
});

t.test('--help says where the options go and which wins', async (t) => {
  const r = await vmictl('--help');
  t.match(r.stdout, /given in\s+both places, the one after the command wins/);
  for (const o of ['--vm <name>', '--qmp <addr>', '--gdb <addr>', '--profile <file>', '--vmlinux <file>']) t.match(r.stdout, new RegExp(`^ {2}${o}`, 'm'), o);
});
