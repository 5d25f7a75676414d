// inspect with several containers, through the real CLI with the VM replaced by a list built here.
import t from 'tap';
import * as errors from '../../lib/errors';
import type { Container } from '../../lib/containers/model';
import { captureMain, type Main } from '../helpers/run-cli';

const ROOT = { pid: 1, mnt: 2, uts: 3, net: 4, ipc: 5, cgroup: 6, user: 7, time: 8 };
const WEB_ID = '99b23bdc2fce889f8749b6b1ece276dedd3ad4d0a33ac8c48208c709c5febbca';

function ctr(o: Partial<Container> & { id: string; initPid: number }): Container {
  return { runtime: 'runc', hostname: o.id, state: 'running', initNsPid: 1, pids: [o.initPid], processes: [], cgroup: `/${o.id}`, namespaces: ROOT, ...o };
}

const host = ctr({ id: 'host', runtime: 'host', hostname: 'vm', initPid: 1, cgroup: '/' });
const containers = [ctr({ id: WEB_ID, runtime: 'docker', hostname: 'web', initPid: 190 }), ctr({ id: 'ticker', name: 'ticker', initPid: 153 })];
const fakeVm = { async listContainers() { return { host, containers, warnings: [] }; } };

const { main } = t.mockRequire<{ main: Main }>('../../cli/main', {
  '../../lib/errors': errors,
  '../../cli/session': { withVm: (_flags: unknown, fn: (vm: unknown, signal: AbortSignal) => unknown) => fn(fakeVm, new AbortController().signal) },
});

const inspect = (...args: string[]) => captureMain(main, ['inspect', '--dump', '/nonexistent/dump.elf', ...args]);

t.test('one container: an object, as before', async (t) => {
  const r = await inspect('web');
  t.equal(r.code, 0);
  t.match(r.stdout, /^\{\n {2}"/, 'pretty-printed, an object');
  t.equal((JSON.parse(r.stdout) as Container).id, WEB_ID);
});

t.test('several: an array of the same objects, in the order given', async (t) => {
  const r = await inspect('ticker', '99b2', 'pid:1');
  t.equal(r.code, 0);
  const parsed = JSON.parse(r.stdout) as Container[];
  t.ok(Array.isArray(parsed));
  t.same(parsed.map((c) => c.id), ['ticker', WEB_ID, 'host']);
  t.same(parsed[1], JSON.parse((await inspect('web')).stdout), 'each element is what inspect prints for it alone');
});

t.test('one that matches nothing: exit 1, the not-found error, nothing printed', async (t) => {
  const r = await inspect('web', 'nope', 'ticker');
  t.equal(r.code, 1);
  t.equal(r.stdout, '');
  t.match(r.stderr, /^vmictl: no container matches "nope" \[ENOCONTAINER\]\n$/);
});
