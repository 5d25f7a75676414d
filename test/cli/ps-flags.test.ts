// ps's docker flags (-q, --no-trunc, -f, --format) through the real CLI, with the VM replaced by a
// container list built here.
import t from 'tap';
import * as errors from '../../lib/errors';
import type { Container } from '../../lib/containers/model';
import { captureMain, type Main } from '../helpers/run-cli';

const ROOT = { pid: 1, mnt: 2, uts: 3, net: 4, ipc: 5, cgroup: 6, user: 7, time: 8 };
const WEB_ID = '99b23bdc2fce889f8749b6b1ece276dedd3ad4d0a33ac8c48208c709c5febbca';
const DB_ID = '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
const EVIL = 'evil\x1b]0;pwned\x07';

function ctr(o: Partial<Container> & { id: string; initPid: number }): Container {
  return {
    runtime: 'docker',
    hostname: o.id.slice(0, 12),
    state: 'running',
    initNsPid: 1,
    pids: [o.initPid],
    processes: [],
    cgroup: `/system.slice/docker-${o.id}.scope`,
    namespaces: ROOT,
    isolation: 'pid-namespace',
    ...o,
  };
}

const host = ctr({ id: 'host', runtime: 'host', hostname: 'vm', initPid: 1, cgroup: '/', isolation: 'host' });
const containers = [
  ctr({ id: WEB_ID, hostname: 'web', initPid: 190 }),
  ctr({ id: DB_ID, hostname: 'db', state: 'paused', initPid: 300 }),
  ctr({ id: 'ticker', runtime: 'runc', name: 'ticker', hostname: 'tick-host', initPid: 153, cgroup: '/ticker' }),
  ctr({ id: 'evil', runtime: 'runc', name: 'evil', hostname: EVIL, initPid: 160, cgroup: '/evil' }),
  ctr({ id: 'a-very-long-runc-name', runtime: 'runc', initPid: 170, cgroup: '/long' }),
];

let reads = 0;
const fakeVm = {
  async listContainers() {
    reads++;
    return { host, containers, warnings: [] };
  },
};

const { main } = t.mockRequire<{ main: Main }>('../../cli/main', {
  '../../lib/errors': errors,
  '../../cli/session': { withVm: (_flags: unknown, fn: (vm: unknown, signal: AbortSignal) => unknown) => fn(fakeVm, new AbortController().signal) },
});

const ps = (...args: string[]) => captureMain(main, ['ps', '--dump', '/nonexistent/dump.elf', ...args]);

t.test('-q: the short ids, one a line; --no-trunc makes them whole', async (t) => {
  const ids = `${WEB_ID.slice(0, 12)}\n${DB_ID.slice(0, 12)}\nticker\nevil\na-very-long-runc-name\n`;
  t.equal((await ps('-q')).stdout, ids, 'a long name whole, not cut as in the table: -q is for feeding other commands');
  t.match((await ps()).stdout, /^a-very-long…   runc/m, 'the table still cuts it');
  t.equal((await ps('--quiet', '--no-trunc')).stdout, `${WEB_ID}\n${DB_ID}\nticker\nevil\na-very-long-runc-name\n`);
  t.equal((await ps('-q', '-a')).stdout.split('\n')[0], 'host', '-a adds the host as in the table');
});

t.test('--no-trunc: whole ids in the table; without it the table is as before', async (t) => {
  const whole = await ps('--no-trunc');
  t.match(whole.stdout, new RegExp(`^${WEB_ID}   docker`, 'm'));
  const cut = await ps();
  t.match(cut.stdout, new RegExp(`^${WEB_ID.slice(0, 12)}   docker`, 'm'));
  t.notMatch(cut.stdout, new RegExp(`^${WEB_ID}`, 'm'), 'the cgroup names it whole, the id column does not');
});

t.test('-f: one key ORs its values, different keys AND', async (t) => {
  const ids = async (...f: string[]) => (await ps('-q', ...f)).stdout.trim().split('\n').filter(Boolean);
  t.same(await ids('-f', 'runtime=runc'), ['ticker', 'evil', 'a-very-long-runc-name']);
  t.same(await ids('-f', 'state=paused'), [DB_ID.slice(0, 12)]);
  t.same(await ids('-f', 'name=tick'), ['ticker'], 'a substring of the name');
  t.same(await ids('-f', 'name=we'), [WEB_ID.slice(0, 12)], 'a substring of the hostname');
  t.same(await ids('-f', 'id=99b2'), [WEB_ID.slice(0, 12)], 'an id prefix');
  t.same(await ids('-f', 'id=b2'), [], 'a prefix, not a substring');
  t.same(await ids('-f', 'state=paused', '-f', 'runtime=runc'), [], 'different keys: AND');
  t.same(await ids('--filter', 'name=web', '--filter', 'name=db'), [WEB_ID.slice(0, 12), DB_ID.slice(0, 12)], 'the same key: OR');
  t.same(await ids('-f', 'runtime=docker', '-f', 'name=db', '-f', 'name=tick'), [DB_ID.slice(0, 12)]);
  const json = JSON.parse((await ps('--json', '-f', 'runtime=runc')).stdout) as { id: string }[];
  t.same(json.map((c) => c.id), ['ticker', 'evil', 'a-very-long-runc-name'], '--json is filtered too');
});

t.test('wrong filters and templates: usage errors, before the VM is read', async (t) => {
  const before = reads;
  for (const args of [['-f', 'color=red'], ['-f', 'runtime'], ['-f', '=x'], ['--format', '{{.Nope}}'], ['--json', '--format', 'json'], ['-q', '--json']]) {
    const r = await ps(...args);
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.stdout, '');
    t.match(r.stderr, /^vmictl: .*\nRun 'vmictl ps --help' for usage\.\n$/);
  }
  t.equal(reads, before, 'nothing was read');
  t.match((await ps('--format', '{{.Nope}}')).stderr, /unknown field \{\{\.Nope\}\}; fields: ID, Runtime/);
});

t.test('--format json: one object a line, each the --json array element', async (t) => {
  const lines = (await ps('--format', 'json')).stdout.split('\n');
  t.equal(lines.pop(), '');
  const array = JSON.parse((await ps('--json')).stdout) as unknown[];
  t.same(lines.map((l) => JSON.parse(l)), array);
  t.equal(lines.length, 5);
  t.ok(lines[3]!.includes('\\u001b]0;pwned\\u0007'), 'escaped as --json escapes');
});

t.test('--format templates: fields substituted and escaped, the rest kept', async (t) => {
  const r = await ps('--format', '{{.ID}} {{.Runtime}} {{ .Hostname }}/{{.State}} pid={{.InitPid}} [{{.Name}}]', '-f', 'name=web', '-f', 'name=evil');
  t.equal(r.stdout, `${WEB_ID.slice(0, 12)} docker web/running pid=190 []\nevil runc evil\\x1b]0;pwned\\x07/running pid=160 [evil]\n`);
  t.notMatch(r.stdout, /[\x00-\x08\x0b-\x1f\x7f-\x9f]/, 'no raw control bytes');
  t.equal((await ps('--no-trunc', '--format', '{{.ID}}', '-f', 'id=99')).stdout, `${WEB_ID}\n`);
  t.equal((await ps('--format', '{{.Pids}}|{{.Processes}}|{{.Cgroup}}', '-f', 'name=tick')).stdout, '153|0|/ticker\n');
});

t.test('help names the filter keys and template fields', async (t) => {
  // commander wraps help to the width: compare with the wrapping undone
  const help = (await captureMain(main, ['ps', '--help'])).stdout.replace(/\s+/g, ' ');
  t.match(help, /runtime, state, name, id/);
  t.match(help, /ID, Runtime, Name, PodUid, Hostname, State, InitPid, InitNsPid, Pids, Processes, Cgroup/);
});
