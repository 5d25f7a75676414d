// Guest-chosen strings (comm, nodename, command line, cgroup names) carrying terminal escapes, read
// from guest memory and rendered by `ps` and `top`: the text output holds no raw control bytes and
// shows them escaped; the JSON output parses back to exactly what the guest wrote.
import t from 'tap';
import { listContainers } from '../../lib/containers/list';
import { renderPs, renderTop } from '../../cli/render/containers';
import { renderInspect } from '../../cli/render/inspect';
import { loadDisplayWidth } from '../../cli/render/width';
import { escapeForTerminal } from '../../lib/util/escape';
import { SyntheticGuest } from '../helpers/synthetic-kernel';

t.before(loadDisplayWidth);

const OSC = '\x1b]0;pwned\x07';
const EVIL_COMM = `x${OSC}\r\n`; // 14 bytes: fits comm[16]
const EVIL_HOST = `h${OSC}\x1b[2J\u009b6n\u202eevil\t`; // C0, C1 (as UTF-8) and a bidi override
const EVIL_ARGS = ['/bin/sh', '-c', `echo ${OSC}; printf '\x1b[31m'\b\x7f`];
const EVIL_CGROUP = `/ev${OSC}il`;
const ID = 'e5'.repeat(32);
const CG = `/system.slice/docker-${ID}.scope`;

/** Anything a terminal would act on: C0 but newline, DEL, C1, bidi controls, line separators. */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

async function guest() {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init', cmdline: ['/sbin/init'] });
  const ns = g.namespaces({ inums: { pid: 4026532601, mnt: 4026532602, uts: 4026532603 }, hostname: EVIL_HOST });
  g.addTask({ pid: 300, nsPids: [1], ns, comm: EVIL_COMM, cmdline: EVIL_ARGS, cgroup: CG, parent: init });
  // an empty command line: top shows [comm]
  g.addTask({ pid: 301, nsPids: [2], ns, comm: EVIL_COMM, cmdline: Buffer.alloc(0), cgroup: CG, parent: init });
  const ns2 = g.namespaces({ inums: { pid: 4026532701, mnt: 4026532702 } });
  g.addTask({ pid: 400, nsPids: [1], ns: ns2, comm: 'plain', cmdline: ['plain'], cgroup: EVIL_CGROUP, parent: init });
  return listContainers(await g.open());
}

t.test('the guest strings come back from memory byte for byte', async (t) => {
  const list = await guest();
  t.same(list.warnings, []);
  const [evil, plain] = list.containers;
  t.equal(evil!.hostname, EVIL_HOST);
  t.equal(evil!.processes[0]!.comm, EVIL_COMM);
  t.same(evil!.processes[0]!.cmdline, EVIL_ARGS);
  t.same(evil!.processes[1]!.cmdline, []);
  t.equal(plain!.cgroup, EVIL_CGROUP);
});

t.test('ps and top as text: escaped, no raw control bytes', async (t) => {
  const list = await guest();
  for (const truncate of [false, true]) {
    const ps = renderPs(list.containers, { truncate, width: 200 });
    t.notMatch(ps, RAW_CONTROL, `ps (truncate ${truncate}) has no raw control characters`);
    t.notOk(ps.includes('\x1b') || ps.includes('\x07'), 'no ESC, no BEL');
    const top = renderTop(list.containers[0]!, { truncate, width: 200 });
    t.notMatch(top, RAW_CONTROL, `top (truncate ${truncate}) has no raw control characters`);
    t.notOk(top.includes('\x1b') || top.includes('\x07'), 'no ESC, no BEL');
  }
  const ps = renderPs(list.containers, { truncate: false });
  t.ok(ps.includes(escapeForTerminal(EVIL_HOST)), 'the hostname is shown escaped, whole');
  t.ok(ps.includes('\\x1b]0;pwned\\x07'), 'as visible \\x escapes');
  t.ok(ps.includes('\\u202e'), 'the bidi override too');
  t.ok(ps.includes(escapeForTerminal(EVIL_CGROUP)), 'and the cgroup path');
  const top = renderTop(list.containers[0]!, { truncate: false });
  t.ok(top.includes(escapeForTerminal(EVIL_ARGS.join(' '))), 'the command line, escaped');
  t.ok(top.includes(`[${escapeForTerminal(EVIL_COMM)}]`), 'the comm of the process with no command line, escaped');
  t.equal(top.trimEnd().split('\n').length, 3, 'an escaped newline does not make a row');
});

t.test('--json: terminal-safe text that parses back to the guest strings', async (t) => {
  const list = await guest();
  const psText = renderPs(list.containers, { json: true });
  const topText = renderTop(list.containers[0]!, { json: true });
  const inspectText = renderInspect(list.containers);
  for (const [name, text] of [['ps', psText], ['top', topText], ['inspect', inspectText]] as const) {
    t.notMatch(text.trimEnd().replace(/\n/g, ''), RAW_CONTROL, `${name} --json has no raw control characters`);
  }
  const ps = JSON.parse(psText) as Array<{ hostname: string; cgroup: string; id: string }>;
  t.same(ps.map((c) => c.hostname), [EVIL_HOST, 'synthetic']);
  t.equal(ps[1]!.cgroup, EVIL_CGROUP);
  const top = JSON.parse(topText) as Array<{ comm: string; cmdline: string[] }>;
  t.same(top.map((p) => p.comm), [EVIL_COMM, EVIL_COMM]);
  t.same(top[0]!.cmdline, EVIL_ARGS);
  const inspect = JSON.parse(inspectText) as Array<{ hostname: string; processes: Array<{ comm: string }> }>;
  t.equal(inspect[0]!.hostname, EVIL_HOST);
  t.equal(inspect[0]!.processes[0]!.comm, EVIL_COMM);
});
