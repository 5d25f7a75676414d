/**
 * One owner of the VM's run state: of all lib/, only lib/target/run-state.ts sends QMP `stop`,
 * `cont` and `query-status` (or their HMP forms). A second sender would decide on its own which
 * stop it may undo, which is how a VM gets continued under a hijacked thread.
 *
 * This reads the source: any quote style, whitespace and line breaks, a type argument, a request
 * object or JSON text. A command name held in a variable cannot be checked, so a non-literal
 * first argument to execute() is refused as well.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import t from 'tap';

const ROOT = join(__dirname, '..', '..');
const LIB = join(ROOT, 'lib');
const OWNER = 'lib/target/run-state.ts';

const Q = String.raw`(['"\x60])`; // a quote of any style, captured so that the closing one matches
const QMP = '(stop|cont|query-status)';
const HMP = String.raw`\s*(stop|cont|c|info\s+status)\s*`;
const GENERIC = String.raw`(?:<[^()]*?>)?`; // execute<{ running: boolean }>(…

const RULES: { what: string; re: RegExp }[] = [
  { what: 'execute() call', re: new RegExp(String.raw`\bexecute\s*${GENERIC}\s*\(\s*${Q}${QMP}\1`, 'g') },
  // { execute: 'stop' }, {"execute": "cont"}, '{"execute":"stop"}', "{\"execute\":\"cont\"}"
  { what: 'request object or JSON', re: new RegExp(String.raw`\bexecute\\?['"\x60]?\s*:\s*\\?${Q}${QMP}\\?\1`, 'g') },
  { what: 'HMP command', re: new RegExp(String.raw`\bhmp\s*${GENERIC}\s*\(\s*${Q}${HMP}\1`, 'g') },
  { what: 'HMP command line', re: new RegExp(String.raw`command-line\\?['"\x60]?\s*:\s*\\?${Q}${HMP}\\?\1`, 'g') },
  // `const cmd = 'query-status'` sent later; 'stop' and 'cont' alone are also event names (gdb's 'stop')
  { what: 'query-status name', re: new RegExp(String.raw`${Q}query-status\1`, 'g') },
  // execute(command) with a variable: not a declaration like `execute(command: string)`
  { what: 'execute() with a computed name', re: /\bexecute\s*(?:<[^()]*?>)?\s*\(\s*(?![\s'"`)])[^,):]*[,)]/g },
  { what: 'execute() with a computed name', re: /\bexecute\s*(?:<[^()]*?>)?\s*\(\s*`[^`]*\$\{/g },
];

interface Hit {
  file: string;
  line: number;
  what: string;
  text: string;
}

function findSends(file: string, source: string): Hit[] {
  const hits: Hit[] = [];
  for (const { what, re } of RULES) {
    for (const m of source.matchAll(re)) {
      const line = source.slice(0, m.index).split('\n').length;
      hits.push({ file, line, what, text: m[0].replace(/\s+/g, ' ') });
    }
  }
  return hits;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return tsFiles(path);
    return e.isFile() && e.name.endsWith('.ts') ? [path] : [];
  });
}

t.test('the detector finds every form of a send', async (t) => {
  const caught = [
    "await qmp.execute('stop');",
    'await this.qmp!.execute("cont")',
    'vm.qmp.execute(`query-status`)',
    "execute (\n    'cont',\n    undefined, opts)",
    "(await vm.qmp.execute<{ running: boolean }>('query-status')).running",
    "q.execute<Record<string, unknown>>('stop')",
    "socket.write(JSON.stringify({ execute: 'stop' }))",
    "send({ 'execute': \"cont\" })",
    `socket.write('{"execute":"stop"}\\n')`,
    `socket.write("{\\"execute\\": \\"cont\\"}")`,
    "await qmp.hmp('stop')",
    'await qmp.hmp(" cont ")',
    "await qmp.hmp('c')",
    'await qmp.hmp(`info  status`)',
    "execute('human-monitor-command', { 'command-line': 'stop' })",
    "const cmd = 'query-status';",
    'await qmp.execute(command, undefined, opts)',
    'await qmp.execute(which)',
    'await qmp.execute(`${verb}`)',
  ];
  for (const src of caught) t.ok(findSends('x.ts', src).length > 0, `caught: ${src}`);
  const ignored = [
    "conn.on('stop', (r) => deliver(r))",
    "this.emit('stop', reply, solicited)",
    "await qmp.execute('query-kvm')",
    "await qmp.execute('stopped')",
    "await qmp.execute('query-status-x')",
    "await qmp.execute('system_reset')",
    "await qmp.hmp('info mtree -f')",
    "await qmp.hmp('cpu 1')",
    'execute(command: string, args?: object): Promise<unknown>;',
    "execute<T = unknown>(command: string, args?: object, opts: CallOptions = {}): Promise<T> {",
    "`could not ${freeze ? 'stop' : 'continue'} every process`",
  ];
  for (const src of ignored) t.same(findSends('x.ts', src), [], `not a send: ${src}`);
});

t.test(`only ${OWNER} sends stop, cont and query-status`, async (t) => {
  const files = tsFiles(LIB);
  t.ok(files.length > 50, `lib/ read (${files.length} files)`);
  const hits = files.flatMap((f) => findSends(relative(ROOT, f).split(sep).join('/'), readFileSync(f, 'utf8')));
  const owner = hits.filter((h) => h.file === OWNER);
  t.ok(owner.length >= 3, 'the owner itself is seen sending them (the detector is not blind)');
  const others = hits.filter((h) => h.file !== OWNER);
  t.same(others.map((h) => `${h.file}:${h.line}: ${h.what}: ${h.text}`), [], 'no other sender');
});
