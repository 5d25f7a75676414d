// The --json of the commands that need a live VM (pause, unpause, kill, stop, syscall, cp, check,
// recover, status), run through the CLI against the test guest: each conforms to its schema in
// docs/schemas/, and pause/unpause/kill/stop act on several containers in one run, as the guest
// itself sees it (cgroup.freeze, runc state, the ids and cgroups its ground truth lists).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { captureMain, type CliRun } from '../helpers/run-cli';
import { main } from '../../cli/main';
import { guestRun, readGroundTruth, testVm, type VmEnv } from '../helpers/vm';
import { validate, type Schema } from '../helpers/json-schema';

const SCHEMAS = path.join(__dirname, '../../docs/schemas');
const OP = ['--timeout', '120000'];

function conforms(t: Test, schemaName: string, r: CliRun): unknown {
  const schema = JSON.parse(fs.readFileSync(path.join(SCHEMAS, `${schemaName}.schema.json`), 'utf8')) as Schema;
  const value = JSON.parse(r.stdout) as unknown;
  t.same(validate(schema, value), [], `${schemaName} --json conforms to its schema`);
  return value;
}

async function sh(env: VmEnv, cmd: string): Promise<string> {
  const r = await guestRun(env, cmd, 120_000);
  if (r.status !== 0) throw new Error(`guest command failed (${r.status}): ${cmd}\n${r.output}`);
  return r.output.replace(/\r/g, '');
}

const local = fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-json-vm-'));
t.teardown(() => fs.rmSync(local, { recursive: true, force: true }));

t.test('--json against the test VM', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  // the connection flags right after the verb: what follows a syscall's container is the syscall's
  const vmictl = (verb: string, ...args: string[]) => captureMain(main, [verb, '--qmp', env.qmp, '--gdb', env.gdb, ...args]);
  const ps = JSON.parse((await vmictl('ps', '--json')).stdout) as Array<{ id: string; hostname: string }>;
  const idOf = (host: string) => ps.find((c) => c.hostname === host)!.id;
  const web = readGroundTruth(env.groundTruthFile).containers.find((c) => c.hostname === 'web')!;
  const webId = web.id;
  const tickerPid = Number(/"pid":\s*(\d+)/.exec(await sh(env, 'runc state ticker; echo'))![1]);
  const cgroupDir = async (pid: number) => `/sys/fs/cgroup${(await sh(env, `cat /proc/${pid}/cgroup`)).trim().replace(/^0::/, '')}`;
  const dirs = [await cgroupDir(tickerPid), `/sys/fs/cgroup${web.cgroup}`];
  const frozen = async () => (await sh(env, `cat ${dirs.map((d) => `${d}/cgroup.freeze`).join(' ')}`)).split(/\s+/).filter(Boolean);
  t.teardown(() => guestRun(env, dirs.map((d) => `echo 0 > ${d}/cgroup.freeze`).join('; ')).then(() => undefined, () => undefined));

  await t.test('pause and unpause two containers and one that does not exist, in one run', async (t) => {
    const p = await vmictl('pause', ...OP, '--json', 'ticker', webId.slice(0, 12), 'no-such-container');
    t.equal(p.code, 1, 'exit 1: one of them failed');
    t.match(p.stderr, /no container matches "no-such-container" \[ENOCONTAINER\]/, 'its error on stderr');
    const r = conforms(t, 'pause', p) as Array<{ id?: string; ok: boolean }>;
    t.same(r.map((o) => [o.id, o.ok]), [[idOf('ticker'), true], [webId, true], [undefined, false]], 'one object each, ids as ps --json prints them');
    t.equal(idOf('web'), webId, 'ps\'s id for web is the one its cgroup carries, as the guest lists it');
    t.same(await frozen(), ['1', '1'], 'the guest: both cgroups frozen');
    const again = await vmictl('pause', ...OP, 'ticker');
    t.equal(again.code, 1, 'pausing a paused container fails');
    const u = await vmictl('unpause', ...OP, 'ticker', 'web');
    t.same([u.code, u.stdout], [0, 'ticker\nweb\n'], 'unpause: each printed as given, exit 0');
    t.same(await frozen(), ['0', '0'], 'the guest: both thawed');
  });

  await t.test('kill (a harmless SIGCONT) to two containers; syscall; cp; recover; status; check', async (t) => {
    const k = await vmictl('kill', ...OP, '--json', '-s', 'SIGCONT', 'ticker', 'web');
    t.equal(k.code, 0, k.stderr);
    const r = conforms(t, 'kill', k) as Array<{ outcome: { signalled: number[] } }>;
    t.ok(r[0]!.outcome.signalled.includes(tickerPid), `ticker's init, pid ${tickerPid} as runc state says, got it`);
    conforms(t, 'syscall', await vmictl('syscall', '--json', 'ticker', 'getpid'));
    conforms(t, 'syscall', await vmictl('syscall', '--json', 'ticker', 'uname'));
    const cp = await vmictl('cp', ...OP, '--json', 'ticker:/tmp/counter', path.join(local, 'counter'));
    t.equal(cp.code, 0, cp.stderr);
    t.equal((conforms(t, 'cp', cp) as { files: number }).files, 1);
    conforms(t, 'recover', await vmictl('recover', '--json'));
    // status speaks QMP only: it takes no --gdb
    conforms(t, 'status', await captureMain(main, ['status', '--json', '--qmp', env.qmp]));
    const check = await vmictl('check', '--json', '--no-text');
    t.ok(check.code === 0 || check.code === 1, `check ran (${check.stderr.trim()})`);
    conforms(t, 'check', check);
  });

  await t.test('stop two throwaway runc containers in one run', async (t) => {
    const boxes = ['jsonbox1', 'jsonbox2'];
    t.teardown(() => guestRun(env, boxes.map((b) => `runc delete -f ${b} >/dev/null 2>&1; rm -rf /run/${b}`).join('; ')).then(() => undefined, () => undefined));
    for (const b of boxes) await sh(env, `runc delete -f ${b} >/dev/null 2>&1; rm -rf /run/${b}; cp -a /containers/ticker /run/${b} && sed -i 's/"hostname": "ticker"/"hostname": "${b}"/' /run/${b}/config.json && runc run -d --bundle /run/${b} ${b} </dev/null >/dev/null 2>&1`);
    const s = await vmictl('stop', ...OP, '--json', '-t', '2', ...boxes);
    t.equal(s.code, 0, s.stderr);
    const r = conforms(t, 'stop', s) as Array<{ container: string; name: string; remaining: number[] }>;
    t.same(r.map((o) => [o.container, o.name, o.remaining]), boxes.map((b) => [b, b, []]));
    for (const b of boxes) t.equal((await sh(env, `cat /sys/fs/cgroup/${b}/cgroup.procs 2>/dev/null | wc -w`)).trim(), '0', `the guest: no process left in ${b}'s cgroup`);
  });
});
