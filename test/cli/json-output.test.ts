// --json through the real CLI: every command that can run without a VM (on an ELF dump of a
// synthetic guest, a fake QMP, a profile file, or with the operations below the CLI replaced)
// prints JSON that its docs/schemas/<command>.schema.json accepts, and a hostile guest string
// (a C1 CSI U+009B, a bidi override U+202E, ESC) reaches the output escaped and parses back whole.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import * as errors from '../../lib/errors';
import * as ops from '../../lib/ops';
import type { Container } from '../../lib/containers/model';
import { ContainerNotFoundError } from '../../lib/containers/resolve';
import { serializeProfile } from '../../lib/kernel/profile';
import { SyntheticGuest } from '../helpers/synthetic-kernel';
import { runCli, writeDump } from '../helpers/synthetic-dump';
import { captureMain, type CliRun, type Main } from '../helpers/run-cli';
import { FakeQmpServer } from '../helpers/fake-qmp';
import { validate, type Schema } from '../helpers/json-schema';

const SCHEMAS = path.join(__dirname, '../../docs/schemas');
const EVIL = 'a\u009bb\u202ec\x1b';
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

function conforms(t: Test, schemaName: string, r: CliRun): unknown {
  t.notMatch(r.stdout.replace(/\n/g, ''), RAW_CONTROL, `${schemaName}: no raw control character on stdout`);
  t.notMatch(r.stderr.replace(/\n/g, ''), RAW_CONTROL, `${schemaName}: nor on stderr`);
  const schema = JSON.parse(fs.readFileSync(path.join(SCHEMAS, `${schemaName}.schema.json`), 'utf8')) as Schema;
  const value = JSON.parse(r.stdout) as unknown;
  t.same(validate(schema, value), [], `${schemaName}: the output conforms to its schema`);
  return value;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-json-cli-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const dump = path.join(dir, 'guest.elf');
const profile = path.join(dir, 'synthetic.json');
const WEB = 'ab'.repeat(32);
{
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init', cmdline: ['/sbin/init'] });
  const web = g.namespaces({ inums: { pid: 4026532601, mnt: 4026532602, uts: 4026532603 }, hostname: `web${EVIL}` });
  const sh = g.addTask({ pid: 300, nsPids: [1], ns: web, comm: EVIL, cmdline: ['/bin/sh', '-c', `echo ${EVIL}`], cgroup: `/system.slice/docker-${WEB}.scope`, parent: init });
  g.addTask({ pid: 301, nsPids: [2], ns: web, comm: 'sleep', cmdline: ['sleep', '1'], cgroup: `/system.slice/docker-${WEB}.scope`, parent: sh });
  writeDump(g, dump);
  fs.writeFileSync(profile, serializeProfile(g.profile.doc));
}
const onDump = (...args: string[]) => runCli(...args, '--dump', dump, '--profile', profile);

t.test('ps, top, inspect, kernel on a dump: schema, and the hostile comm and hostname escaped', async (t) => {
  const ps = conforms(t, 'ps', await onDump('ps', '--json')) as Array<{ id: string; hostname: string }>;
  t.same(ps.map((c) => [c.id, c.hostname]), [[WEB, `web${EVIL}`]], 'the hostname parses back to the guest\'s bytes');
  const top = await onDump('top', '--json', WEB.slice(0, 12));
  t.ok(top.stdout.includes('a\\u009bb\\u202ec\\u001b'), 'top: the comm as \\u escapes');
  t.same((conforms(t, 'top', top) as Array<{ comm: string }>).map((p) => p.comm), [EVIL, 'sleep']);
  const inspect = await onDump('inspect', WEB.slice(0, 12));
  t.ok(inspect.stdout.includes('a\\u009bb\\u202ec\\u001b'), 'inspect: the comm as \\u escapes');
  const one = conforms(t, 'inspect', inspect) as { id: string; processes: Array<{ comm: string; taskStructs?: string[] }> };
  t.equal(one.id, ps[0]!.id, 'inspect\'s id is ps\'s');
  t.equal(one.processes[0]!.comm, EVIL);
  t.notOk(inspect.stdout.includes('"0xffff'), 'no kernel address without --kernel-addresses');
  const withAddresses = conforms(t, 'inspect', await onDump('inspect', '--kernel-addresses', WEB.slice(0, 12))) as typeof one;
  t.match(withAddresses.processes[0]!.taskStructs, [/^0xffff[0-9a-f]+$/], '--kernel-addresses: the task_struct of each task');
  const several = JSON.parse((await onDump('inspect', WEB.slice(0, 12), 'pid:1')).stdout) as unknown[];
  t.equal(several.length, 2, 'several: an array');
  for (const [i, x] of several.entries()) t.same(validate(JSON.parse(fs.readFileSync(path.join(SCHEMAS, 'inspect.schema.json'), 'utf8')) as Schema, x), [], `inspect element ${i} conforms`);
  conforms(t, 'kernel', await onDump('kernel', '--json'));
});

t.test('profile info, with and without --type', async (t) => {
  const info = conforms(t, 'profile-info', await runCli('profile', 'info', '--json', profile)) as { file: string };
  t.equal(info.file, profile);
  const type = conforms(t, 'profile-info-type', await runCli('profile', 'info', '--json', '--type', 'task_struct', profile)) as { fields: Array<{ name: string; type: string }> };
  t.ok(type.fields.some((f) => f.name === 'comm' && /^char\[16\]$/.test(f.type)), 'task_struct.comm is char[16], as C writes it');
});

t.test('status, from a QMP that answers with a hostile run state', async (t) => {
  const server = await FakeQmpServer.start({ handlers: { 'query-status': () => ({ return: { status: `running${EVIL}`, singlestep: false, running: true } }) } });
  t.teardown(() => server.close());
  const r = await runCli('status', '--json', '--qmp', server.address);
  t.equal(r.code, 0, r.stderr);
  t.equal((conforms(t, 'status', r) as { status: string }).status, `running${EVIL}`);
});

// the operations replaced: what kill/stop/pause/cp/check do with their results, for any guest

const ROOT = { pid: 1, mnt: 2, uts: 3, net: 4, ipc: 5, cgroup: 6, user: 7, time: 8 };
function ctr(o: Partial<Container> & { id: string; initPid: number }): Container {
  return { runtime: 'runc', hostname: o.id, state: 'running', initNsPid: 1, pids: [o.initPid], processes: [], cgroup: `/${o.id}`, namespaces: ROOT, ...o };
}
const evil = ctr({ id: 'c'.repeat(64), runtime: 'docker', hostname: `h${EVIL}`, initPid: 200 });
const ticker = ctr({ id: 'ticker', name: 'ticker', initPid: 153 });
const byName = new Map([['evil', evil], ['ticker', ticker]]);
const SIGKILL = { name: 'SIGKILL', number: 9 };

/** Each spec found by name, or not found; `stuck` leaves a process of it running. */
async function batch<T>(specs: readonly string[], result: (c: Container) => T): Promise<ops.BatchOutcome<T>[]> {
  return specs.map((spec) => {
    const c = byName.get(spec);
    return c ? { spec, container: c, result: result(c) } : { spec, error: new ContainerNotFoundError(spec) };
  });
}
const signalled = (c: Container) => ({ signalled: [c.initPid], gone: [], failed: [], via: 1 });

const { main } = t.mockRequire<{ main: Main }>('../../cli/main', {
  '../../lib/errors': errors,
  '../../cli/session': { withVm: (_flags: unknown, fn: (vm: unknown, signal: AbortSignal) => unknown) => fn({}, new AbortController().signal) },
  '../../lib/ops': {
    ...ops,
    killContainers: (_vm: unknown, specs: string[]) => batch(specs, (c): ops.KillResult => ({ id: c.id, container: ops.containerLabel(c), signal: SIGKILL, outcome: signalled(c), remaining: c === ticker ? [c.initPid] : [] })),
    stopContainers: (_vm: unknown, specs: string[]) => batch(specs, (c): ops.StopResult => ({ id: c.id, container: ops.containerLabel(c), endedOnTerm: false, term: signalled(c), kill: signalled(c), remaining: [] })),
    pauseContainers: (_vm: unknown, specs: string[]) => batch(specs, (c): ops.PauseResult => ({ id: c.id, container: ops.containerLabel(c), method: 'cgroup2', directory: `/sys/fs/cgroup${c.cgroup}${EVIL}`, via: 1 })),
    unpauseContainers: (_vm: unknown, specs: string[]) => batch(specs, (c): ops.PauseResult => ({ id: c.id, container: ops.containerLabel(c), method: 'signals', pids: [c.initPid], via: 1 })),
    copyFromContainer: async (): Promise<ops.CopyReport> => ({ files: 1, directories: 1, symlinks: 0, bytes: 5, skipped: [{ path: `d/${EVIL}`, reason: 'a fifo' }], errors: [], dropped: { skipped: 0, errors: 0 }, resolvedInRoot: true, via: 200 }),
  },
  '../../lib/integrity/check': { checkKernel: async () => ({ findings: [{ kind: 'inline-hook', address: 0xffffffff81000000n, symbol: `__x64_sys_kill${EVIL}`, expected: '0f1f44', found: 'e9aabb', detail: 'jumps to 0xffffffffc0000000' }], checked: { functions: 3, syscallTableEntries: 400, textBytes: 100, patchSites: 1, idtGates: 256, tracingAttachments: 0 }, mode: 'vmlinux', ms: 4 }) },
});
const mocked = (...args: string[]) => captureMain(main, [...args, '--qmp', 'unix:/nonexistent/qmp.sock']);

t.test('pause/unpause/kill/stop with several containers: each done, each reported, exit 1 if any failed', async (t) => {
  for (const verb of ['pause', 'unpause', 'stop'] as const) {
    const text = await mocked(verb, 'evil', 'nope', 'ticker');
    t.equal(text.code, 1, `${verb}: exit 1, one was not found`);
    t.equal(text.stdout, 'evil\nticker\n', `${verb}: each success printed as given, the rest still done`);
    t.equal(text.stderr, 'vmictl: no container matches "nope" [ENOCONTAINER]\n', `${verb}: the failure on stderr`);
    const json = await mocked(verb, '--json', 'evil', 'nope', 'ticker');
    t.equal(json.code, 1);
    const list = conforms(t, verb, json) as Array<{ container: string; id?: string; name?: string; ok: boolean; error?: { code: string } }>;
    t.same(list.map((o) => [o.container, o.id, o.name, o.ok, o.error?.code]), [['evil', evil.id, `h${EVIL}`, true, undefined], ['nope', undefined, undefined, false, 'ENOCONTAINER'], ['ticker', 'ticker', 'ticker', true, undefined]], `${verb} --json: one object per container, in order, with ps's id`);
    t.ok(json.stdout.includes('h\\u009bb\\u202ec\\u001b') || json.stdout.includes('a\\u009bb\\u202ec\\u001b'), `${verb} --json: the hostile name as \\u escapes`);
  }
  const kill = await mocked('kill', '--json', 'evil', 'ticker');
  t.equal(kill.code, 1, 'kill: a process of ticker is still running after SIGKILL: exit 1');
  const k = conforms(t, 'kill', kill) as Array<{ ok: boolean; remaining: number[]; error?: { code: string } }>;
  t.same(k.map((o) => [o.ok, o.remaining, o.error?.code]), [[true, [], undefined], [false, [153], 'EINCOMPLETE']]);
  t.equal(kill.stderr, 'vmictl: ticker: still running: pids 153\n');
  const all = await mocked('kill', 'evil');
  t.same([all.code, all.stdout, all.stderr], [0, 'evil\n', ''], 'all done: exit 0, the name printed');
});

t.test('cp --json and check --json: the schema, the hostile path and symbol escaped', async (t) => {
  const local = path.join(dir, 'out');
  const cp = await mocked('cp', '--json', `evil:/d`, local);
  t.equal(cp.code, 0, cp.stderr);
  t.equal((conforms(t, 'cp', cp) as { skipped: Array<{ path: string }> }).skipped[0]!.path, `d/${EVIL}`);
  const check = await mocked('check', '--json');
  t.equal(check.code, 1, 'a finding: exit 1');
  t.equal((conforms(t, 'check', check) as { findings: Array<{ symbol: string }> }).findings[0]!.symbol, `__x64_sys_kill${EVIL}`);
});
