import t from 'tap';
import { VmiError } from '../../lib/errors';
import type { Container, ProcessInfo } from '../../lib/containers/model';
import { unknownNamespaces } from '../../lib/containers/model';
import { resolveContainer, ContainerNotFoundError, AmbiguousContainerError } from '../../lib/containers/resolve';

function proc(pid: number, threads: number[] = []): ProcessInfo {
  const base = {
    address: 0n,
    pid,
    tgid: pid,
    ppid: 1,
    comm: 'p',
    cmdline: ['p'],
    uid: 0,
    euid: 0,
    gid: 0,
    egid: 0,
    state: 'S',
    startTime: 0n,
    nspids: [pid],
    pidNamespaces: [1],
    namespaces: unknownNamespaces(),
    cgroup: '/',
    exe: null,
    hostname: '',
    kernelThread: false,
  };
  return { ...base, threads: threads.map((tid) => ({ ...base, pid: tid })) };
}

function ctr(id: string, hostname: string, pids: number[], extra: Partial<Container> = {}): Container {
  const processes = pids.map((p) => proc(p));
  return {
    id,
    runtime: 'docker',
    hostname,
    state: 'running',
    initPid: pids[0]!,
    initNsPid: 1,
    pids,
    processes,
    cgroup: '/',
    namespaces: unknownNamespaces(),
    ...extra,
  };
}

const WEB = '99b23bdc2fce889f8749b6b1ece276dedd3ad4d0a33ac8c48208c709c5febbca';
const TREE = '4e702439403765df0972083beff1e6748cb50ce8f9348bd25ebc75d54933dbeb';
const KUBE = '5293f1ed0f9ecd8b952b1d4875f940f00185b15ffdcf7f045c64caf1d9be5982';
const WEB2 = '99b2' + '0'.repeat(60);

function list(): Container[] {
  const tree = ctr(TREE, 'tree', [171, 178, 179, 180]);
  tree.processes[1]!.threads = [{ ...tree.processes[1]!, pid: 185 }];
  return [
    ctr('host', 'vmictl-test', [1, 2, 118]),
    ctr(KUBE, 'nested', [133, 141, 142], { runtime: 'containerd' }),
    ctr('ticker', 'ticker', [153], { runtime: 'runc', name: 'ticker' }),
    tree,
    ctr(WEB, 'web', [190]),
    ctr(WEB2, 'twin', [300]),
    ctr('0123456789ab', 'twin', [310], { runtime: 'unknown' }),
    ctr('deadbeefcafe', 'beef', [320], { runtime: 'unknown', name: 'web-named' }),
  ];
}

t.test('full id, prefix, hostname, name, pid:', async (t) => {
  const l = list();
  t.equal(resolveContainer(l, WEB).hostname, 'web', 'full id');
  t.equal(resolveContainer(l, '4e70').hostname, 'tree', 'prefix');
  t.equal(resolveContainer(l, '5').hostname, 'nested', 'one-character prefix');
  t.equal(resolveContainer(l, 'nested').id, KUBE, 'hostname');
  t.equal(resolveContainer(l, 'web-named').id, 'deadbeefcafe', 'name');
  t.equal(resolveContainer(l, 'ticker').id, 'ticker', 'runc id');
  t.equal(resolveContainer(l, 'pid:141').id, KUBE, 'pid of a child');
  t.equal(resolveContainer(l, 'pid:185').id, TREE, 'pid of a thread');
  t.equal(resolveContainer(l, 'pid:1').id, 'host', 'the host when it is in the list');
  t.equal(resolveContainer(l, 'host').id, 'host');
});

t.test('exact matches win over prefixes', async (t) => {
  const l = list();
  l.push(ctr('beefbeef' + '0'.repeat(56), 'deadbeefcafe', [330]));
  t.equal(resolveContainer(l, 'deadbeefcafe').hostname, 'beef', 'an exact id beats a hostname');
  t.equal(resolveContainer(l, 'web').id, WEB, 'a hostname beats the prefix of "web-named"');
  l.push(ctr('abc' + '1'.repeat(61), 'x', [340]), ctr('ab' + '2'.repeat(62), 'abc', [350]));
  t.equal(resolveContainer(l, 'abc').hostname, 'abc', 'a hostname beats an id prefix');
});

t.test('ambiguous: prefix, hostname, full id', async (t) => {
  const l = list();
  const e1 = t.throws(() => resolveContainer(l, '99b2')) as AmbiguousContainerError;
  t.type(e1, AmbiguousContainerError);
  t.type(e1, VmiError);
  t.equal(e1.code, 'EAMBIGUOUS');
  t.same(e1.candidates, [WEB, WEB2]);
  t.match(e1.message, /"99b2" is an id prefix of 2 containers: "99b23bdc2fce" \(hostname "web"\), "99b200000000" \(hostname "twin"\)/);

  const e2 = t.throws(() => resolveContainer(l, 'twin')) as AmbiguousContainerError;
  t.same(e2.candidates, [WEB2, '0123456789ab']);
  t.match(e2.message, /is the hostname of 2 containers/);

  const dup = [...l, ctr(WEB, 'web-again', [400])];
  const e3 = t.throws(() => resolveContainer(dup, WEB)) as AmbiguousContainerError;
  t.same(e3.candidates, [WEB, WEB]);

  const many = Array.from({ length: 15 }, (_, i) => ctr(`f${i.toString(16)}${'0'.repeat(62)}`, `h${i}`, [500 + i]));
  const e4 = t.throws(() => resolveContainer(many, 'f')) as AmbiguousContainerError;
  t.equal(e4.candidates.length, 15);
  t.match(e4.message, /and 5 more$/);
});

t.test('not found', async (t) => {
  const l = list();
  for (const spec of ['nope', 'pid:999', 'ffff', '', 'pid:', 'pid:-1', 'pid:12a', 'pid:99999999999', 'TICKER']) {
    const e = t.throws(() => resolveContainer(l, spec), spec) as ContainerNotFoundError;
    t.type(e, ContainerNotFoundError, spec);
    t.equal(e.code, 'ENOCONTAINER', spec);
  }
  const e = t.throws(() => resolveContainer([], 'web')) as ContainerNotFoundError;
  t.equal(e.spec, 'web');
  t.equal(e.message, 'no container matches "web"');
});

t.test('guest-controlled hostnames in messages are JSON-quoted: no raw ESC or BEL', async (t) => {
  const evil = ctr('a'.repeat(64), 'x\x1b]0;pwned\x07', [10]);
  const e = t.throws(() => resolveContainer([evil, ctr('a'.repeat(63) + 'b', 'y', [11])], 'aaa')) as AmbiguousContainerError;
  t.notOk(/[\x1b\x07]/.test(e.message), 'JSON.stringify quoting leaves no raw ESC or BEL');
});
