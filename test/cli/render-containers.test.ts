import t from 'tap';
import { renderPs, renderTop } from '../../cli/render/containers';
import { renderInspect } from '../../cli/render/inspect';
import { jsonText } from '../../cli/render/json';
import { loadDisplayWidth } from '../../cli/render/width';
import { groupContainers } from '../../lib/containers/group';
import type { Container, Namespaces, ProcessInfo } from '../../lib/containers/model';

t.before(loadDisplayWidth);

const ROOT: Namespaces = { pid: 4026531836, mnt: 4026531841, uts: 4026531838, net: 4026531840, ipc: 4026531839, cgroup: 4026531835, user: 4026531837, time: 4026531834 };
const WEB_ID = '99b23bdc2fce889f8749b6b1ece276dedd3ad4d0a33ac8c48208c709c5febbca';
const WEB_CG = `/system.slice/docker-${WEB_ID}.scope`;
const EVIL = 'evil\x1b]0;pwned\x07\u009b2J';

function ns(base: number): Namespaces {
  return { ...ROOT, pid: base + 1, mnt: base + 2, uts: base + 3, net: base + 4, ipc: base + 5, cgroup: base + 6 };
}

function proc(o: Partial<ProcessInfo> & { pid: number }): ProcessInfo {
  const comm = o.comm ?? 'proc';
  return {
    address: 0xffff888003a1c000n + BigInt(o.pid) * 0x2000n,
    tgid: o.pid,
    ppid: 1,
    comm,
    cmdline: [comm],
    uid: 0,
    euid: 0,
    gid: 0,
    egid: 0,
    state: 'S',
    startTime: 1_000_000_000n * BigInt(o.pid),
    nspids: [o.pid],
    pidNamespaces: [ROOT.pid],
    namespaces: ROOT,
    cgroup: '/',
    exe: `/bin/${comm}`,
    hostname: 'vmictl-test',
    kernelThread: false,
    threads: [],
    ...o,
  };
}

function inCtr(pid: number, nspid: number, base: number, o: Partial<ProcessInfo> = {}): ProcessInfo {
  return proc({ pid, nspids: [pid, nspid], pidNamespaces: [ROOT.pid, base + 1], namespaces: ns(base), ...o });
}

function model(): { host: Container; containers: Container[] } {
  const httpd = inCtr(190, 1, 4000, { comm: 'httpd', cmdline: ['httpd', '-f', '-p', '80', '-h', '/www'], cgroup: WEB_CG, hostname: 'web' });
  const { threads: _none, ...leader } = httpd;
  httpd.threads = [leader, { ...leader, pid: 191, address: leader.address + 0x2000n }];
  const procs = [
    proc({ pid: 1, ppid: 0, comm: 'init' }),
    proc({ pid: 2, ppid: 0, comm: 'kthreadd', kernelThread: true, cmdline: null, exe: null }),
    proc({ pid: 118, comm: 'busyd' }),
    inCtr(153, 1, 2000, { comm: 'sh', cgroup: '/ticker', hostname: 'ticker', cmdline: ['/bin/sh', '/workload.sh'] }),
    httpd,
    inCtr(195, 2, 4000, { ppid: 190, comm: 'exec', cmdline: null, uid: 1000, state: 'R', cgroup: WEB_CG, hostname: 'web' }),
    inCtr(160, 1, 3000, { comm: EVIL, cmdline: [EVIL, 'arg'], cgroup: '/evil', hostname: EVIL }),
    proc({ pid: 240, comm: 'logind', cgroup: '/system.slice/systemd-logind.service', namespaces: { ...ROOT, mnt: 8002 } }),
  ];
  return groupContainers(procs);
}

function byHostname(list: Container[], h: string): Container {
  return list.find((c) => c.hostname === h)!;
}

const NO_TTY = { truncate: false } as const;

t.test('ps --json: the documented shape, exactly', async (t) => {
  const { host, containers } = model();
  const parsed = JSON.parse(renderPs([host, ...containers], { json: true })) as Record<string, unknown>[];
  t.equal(parsed.length, 3, 'containers only: no host, no mount-namespace-only group by default');
  const web = parsed.find((c) => c.hostname === 'web')!;
  t.strictSame(web, {
    id: WEB_ID,
    runtime: 'docker',
    hostname: 'web',
    state: 'running',
    initPid: 190,
    initNsPid: 1,
    pids: [190, 195],
    processes: 2,
    cgroup: WEB_CG,
    namespaces: { pid: 4001, mnt: 4002, uts: 4003, net: 4004, ipc: 4005, cgroup: 4006, user: ROOT.user, time: ROOT.time },
  });
  t.same(Object.keys(web), ['id', 'runtime', 'hostname', 'state', 'initPid', 'initNsPid', 'pids', 'processes', 'cgroup', 'namespaces'], 'key order');
  const ticker = parsed.find((c) => c.hostname === 'ticker')!;
  t.equal(ticker.name, 'ticker', 'name where known');
  t.same(Object.keys(ticker.namespaces as object), ['pid', 'mnt', 'uts', 'net', 'ipc', 'cgroup', 'user', 'time']);
  for (const c of parsed) for (const v of Object.values(c.namespaces as object)) t.type(v, 'number');
});

t.test('ps: host only with host, mount-namespace-only groups only with all', async (t) => {
  const { host, containers } = model();
  const list = [host, ...containers];
  const ids = (o: object) => (JSON.parse(renderPs(list, { json: true, ...o })) as { id: string; runtime: string }[]).map((c) => c.runtime);
  t.same(ids({}), ['runc', 'runc', 'docker']);
  t.same(ids({ host: true }), ['host', 'runc', 'runc', 'docker']);
  t.same(ids({ all: true }), ['runc', 'runc', 'docker', 'unknown']);
  t.equal(renderPs([], { json: true }), '[]\n');
  t.equal(renderPs([], NO_TTY), 'CONTAINER ID   RUNTIME   HOSTNAME   STATE   INIT PID   PROCESSES   CGROUP\n');
});

t.test('ps text: columns, 12-character ids, aligned', async (t) => {
  const { host, containers } = model();
  const web = byHostname(containers, 'web');
  const ticker = byHostname(containers, 'ticker');
  const out = renderPs([host, ticker, web], { ...NO_TTY, host: true });
  t.equal(
    out,
    'CONTAINER ID   RUNTIME   HOSTNAME      STATE     INIT PID   PROCESSES   CGROUP\n' +
      'host           host      vmictl-test   running          1           3   /\n' +
      `ticker         runc      ticker        running        153           1   /ticker\n` +
      `99b23bdc2fce   docker    web           running        190           2   ${WEB_CG}\n`,
  );
  const long = { ...ticker, id: 'a-very-long-runc-container-name' };
  t.match(renderPs([long], NO_TTY), /^a-very-long…   runc/m, 'a long name is marked as cut');
});

t.test('a hostile hostname and comm: escaped in text, valid JSON that parses back to the same bytes', async (t) => {
  const { containers } = model();
  const evil = byHostname(containers, EVIL);
  for (const text of [renderPs(containers, NO_TTY), renderTop(evil, NO_TTY)]) {
    t.notOk(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/.test(text), 'no raw control bytes');
    t.ok(text.includes('evil\\x1b]0;pwned\\x07\\x9b2J'), 'shown escaped');
  }
  const cut = renderPs(containers, { truncate: true, width: 80 });
  t.notOk(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/.test(cut), 'no raw control bytes when cut');
  t.ok(cut.includes('evil\\x1b]0;pwned\\x07\\x9…'), 'escaped, then cut to 24 columns');
  for (const json of [renderPs(containers, { json: true }), renderTop(evil, { json: true }), renderInspect(evil)]) {
    t.notOk(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/.test(json), 'no raw control characters in JSON either');
    t.ok(json.includes('\\u001b]0;pwned\\u0007\\u009b2J'));
    t.doesNotThrow(() => JSON.parse(json));
  }
  const parsed = JSON.parse(renderPs(containers, { json: true })) as { hostname: string }[];
  t.ok(parsed.some((c) => c.hostname === EVIL), 'the same string after parsing');
  const top = JSON.parse(renderTop(evil, { json: true })) as { comm: string; cmdline: string[] }[];
  t.equal(top[0]!.comm, EVIL);
  t.same(top[0]!.cmdline, [EVIL, 'arg']);
});

t.test('top --json: the documented shape', async (t) => {
  const web = byHostname(model().containers, 'web');
  const parsed = JSON.parse(renderTop(web, { json: true })) as Record<string, unknown>[];
  t.strictSame(parsed, [
    { pid: 190, nspid: 1, nspids: [190, 1], ppid: 1, comm: 'httpd', cmdline: ['httpd', '-f', '-p', '80', '-h', '/www'], uid: 0, state: 'S', threads: 2, startTime: '190000000000' },
    { pid: 195, nspid: 2, nspids: [195, 2], ppid: 190, comm: 'exec', cmdline: [], uid: 1000, state: 'R', threads: 1, startTime: '195000000000' },
  ]);
});

t.test('top text: PID NSPID PPID UID STATE CMD; [comm] when there is no command line', async (t) => {
  const web = byHostname(model().containers, 'web');
  t.equal(
    renderTop(web, NO_TTY),
    'PID   NSPID   PPID    UID   STATE   CMD\n' + //
      '190       1      1      0   S       httpd -f -p 80 -h /www\n' +
      '195       2    190   1000   R       [exec]\n',
  );
  const host = model().host;
  t.match(renderTop(host, NO_TTY), /^  2       2      0     0   S       \[kthreadd\]$/m, 'host: nspid is the host pid');
  const cut = renderTop(web, { truncate: true, width: 50 }).split('\n')[1]!;
  t.equal(cut.length, 50, 'cut to the terminal width');
  t.ok(cut.endsWith('…'));
});

t.test('inspect: the public model (ps fields, processes listed), start times decimal, no kernel addresses', async (t) => {
  const web = byHostname(model().containers, 'web');
  const out = renderInspect(web);
  t.match(out, /^\{\n {2}"id": /, 'pretty-printed');
  t.notMatch(out, /0xffff/, 'no kernel address anywhere');
  const parsed = JSON.parse(out) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  t.equal(parsed.id, WEB_ID);
  t.same(Object.keys(parsed.processes[0]).sort(), ['cmdline', 'comm', 'egid', 'euid', 'exe', 'gid', 'nspid', 'nspids', 'pid', 'ppid', 'startTime', 'state', 'threads', 'tids', 'uid']);
  t.equal(parsed.processes[0].startTime, '190000000000');
  t.same(parsed.processes[0].tids, [190, 191]);
  t.equal(parsed.processes[0].threads, 2);
  t.notOk('warnings' in parsed.processes[0], 'internal warnings are not printed');
  const withAddresses = JSON.parse(renderInspect(web, { kernelAddresses: true })) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  t.same(withAddresses.processes[0].taskStructs, ['0xffff888003b98000', '0xffff888003b9a000'], '--kernel-addresses: each task_struct, in the order of tids');
  t.same(parsed.namespaces, { pid: 4001, mnt: 4002, uts: 4003, net: 4004, ipc: 4005, cgroup: 4006, user: ROOT.user, time: ROOT.time });
  t.same(parsed.pids, [190, 195]);
  t.ok(Array.isArray(JSON.parse(renderInspect([web]))), 'a list gives an array');
});

t.test('jsonText', async (t) => {
  t.equal(jsonText({ a: 10n, startTime: 10n, bootTime: 3n }), '{"a":"0xa","startTime":"10","bootTime":"3"}');
  t.equal(jsonText('\u2028\u202e\u007f'), '"\\u2028\\u202e\\u007f"');
  t.equal(JSON.parse(jsonText('\u2028\u202e\u007f')), '\u2028\u202e\u007f');
});
