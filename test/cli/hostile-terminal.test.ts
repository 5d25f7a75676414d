// The CLI end to end over a hostile guest: a synthetic guest written as an ELF dump (what
// dump-guest-memory makes) whose containers have hostnames carrying terminal escapes. `ps`, `top`,
// `inspect` and the error that names two containers with that hostname, run through main() as a
// user would with --dump: nothing raw reaches the terminal, the escapes are shown, JSON parses back
// to the guest's bytes.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { serializeProfile } from '../../lib/kernel/profile';
import { SyntheticGuest } from '../helpers/synthetic-kernel';
import { runCli, writeDump } from '../helpers/synthetic-dump';

const OSC = '\x1b]0;pwned\x07';
const HOST = `web${OSC}`;
const TWIN = `twin${OSC}\u009b2J`;
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-hostile-cli-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const dump = path.join(dir, 'guest.elf');
const profile = path.join(dir, 'synthetic.json');
{
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init', cmdline: ['/sbin/init'] });
  const web = g.namespaces({ inums: { pid: 4026532601, mnt: 4026532602, uts: 4026532603 }, hostname: HOST });
  g.addTask({ pid: 300, nsPids: [1], ns: web, comm: `sh${OSC}`, cmdline: ['/bin/sh', '-c', `echo ${OSC}`], cgroup: `/system.slice/docker-${'ab'.repeat(32)}.scope`, parent: init });
  for (const [i, id] of ['cd', 'ef'].entries()) {
    const ns = g.namespaces({ inums: { pid: 4026532701 + 10 * i, mnt: 4026532702 + 10 * i, uts: 4026532703 + 10 * i }, hostname: TWIN });
    g.addTask({ pid: 400 + i, nsPids: [1], ns, comm: 'twin', cgroup: `/system.slice/docker-${id.repeat(32)}.scope`, parent: init });
  }
  writeDump(g, dump);
  fs.writeFileSync(profile, serializeProfile(g.profile.doc));
}

const vmictl = (...args: string[]) => runCli(...args, '--dump', dump, '--profile', profile);

function terminalSafe(t: Test, what: string, text: string): void {
  t.notMatch(text.replace(/\n/g, ''), RAW_CONTROL, `${what}: no raw control characters`);
}

t.test('ps shows the hostname escaped', async (t) => {
  const r = await vmictl('ps');
  t.equal(r.code, 0, r.stderr);
  terminalSafe(t, 'ps', r.stdout + r.stderr);
  t.ok(r.stdout.includes('web\\x1b]0;pwned\\x07'), 'the escape is visible, as \\x escapes');
  t.ok(r.stdout.includes('twin\\x1b]0;pwned\\x07\\x9b2J'), 'the C1 control too');
});

t.test('ps --json parses back to the guest bytes', async (t) => {
  const r = await vmictl('ps', '--json');
  t.equal(r.code, 0, r.stderr);
  terminalSafe(t, 'ps --json', r.stdout);
  const list = JSON.parse(r.stdout) as Array<{ hostname: string }>;
  t.same(list.map((c) => c.hostname).sort(), [TWIN, TWIN, HOST].sort());
});

t.test('inspect: JSON, terminal-safe, exact', async (t) => {
  const r = await vmictl('inspect', 'ab'.repeat(6));
  t.equal(r.code, 0, r.stderr);
  terminalSafe(t, 'inspect', r.stdout);
  const c = JSON.parse(r.stdout) as { hostname: string; processes: Array<{ comm: string; cmdline: string[] }> };
  t.equal(c.hostname, HOST);
  t.equal(c.processes[0]!.comm, `sh${OSC}`);
  t.same(c.processes[0]!.cmdline, ['/bin/sh', '-c', `echo ${OSC}`]);
});

t.test('top: the command line escaped', async (t) => {
  const r = await vmictl('top', HOST);
  t.equal(r.code, 0, r.stderr);
  terminalSafe(t, 'top', r.stdout);
  t.ok(r.stdout.includes('echo \\x1b]0;pwned\\x07'));
});

t.test('an error that names the containers a hostname matches: escaped', async (t) => {
  const r = await vmictl('top', TWIN);
  t.equal(r.code, 1);
  terminalSafe(t, 'error', r.stderr);
  t.match(r.stderr, /is the hostname of 2 containers/);
  t.match(r.stderr, /EAMBIGUOUS/);
  t.ok(r.stderr.includes('\\x9b') || r.stderr.includes('\\\\u009b'), 'the C1 control shows as an escape');
  t.equal(r.stdout, '');
});

t.test('kernel: text and JSON terminal-safe', async (t) => {
  for (const json of [false, true]) {
    const r = await vmictl('kernel', ...(json ? ['--json'] : []));
    t.equal(r.code, 0, r.stderr);
    terminalSafe(t, `kernel${json ? ' --json' : ''}`, r.stdout + r.stderr);
    if (json) t.match(JSON.parse(r.stdout), { banner: /^Linux version 6\.1\.0-synthetic/ });
  }
});
