/**
 * Loading ISF profiles: a hand-written file shaped like dwarf2json output, exact big addresses,
 * lookups through anonymous members, validation errors, and the writer's round trip.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import t from 'tap';
import { MissingSymbolError, ValidationError, VmiError } from '../../lib/errors';
import { Profile, parseProfile, serializeProfile, writeProfile, readProfileText } from '../../lib/kernel/profile';
import { parseJsonExact, quoteBigIntegers } from '../../lib/kernel/profile/json';

const SMALL = path.join(__dirname, '..', 'fixtures', 'isf', 'small.json');
const BANNER =
  'Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)';

/** The error that fn throws, or undefined (tap's t.throws takes no predicate). */
function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-isf-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

t.test('a dwarf2json-shaped file loads unchanged', (t) => {
  const p = Profile.load(SMALL);
  t.equal(p.doc.metadata.format, '6.2.0');
  t.equal(p.doc.metadata.producer?.name, 'dwarf2json');
  t.equal(p.banner, BANNER, 'banner from linux_banner constant_data (base64), without the newline and NUL');
  t.same(p.counts, { baseTypes: 12, userTypes: 12, enums: 2, symbols: 6 });
  t.equal(p.pointerSize, 8);
  t.end();
});

t.test('addresses above 2^53 stay exact', (t) => {
  const p = Profile.load(SMALL);
  t.equal(p.symbol('init_task'), 0xffffffff82a1aa40n);
  t.equal(p.symbol('_text'), 0xffffffff81000000n);
  t.equal(p.symbol('linux_banner'), 0xffffffff8211ffe0n);
  t.equal(p.symbol('fixed_percpu_data'), 0n, 'a symbol at address 0 (per-cpu) is a real symbol');
  t.equal(p.symbol('current_task'), 0x21a00n);
  t.ok(p.hasSymbol('init_top_pgt'));
  t.notOk(p.hasSymbol('no_such_symbol'));
  t.notOk(p.hasSymbol('constructor'), 'Object.prototype names are not symbols');
  t.throws(() => p.symbol('no_such_symbol'), MissingSymbolError);
  t.same(p.symbolType('init_task'), { kind: 'struct', name: 'task_struct' });
  t.end();
});

t.test('sizes and field lookups', (t) => {
  const p = Profile.load(SMALL);
  t.equal(p.typeSize('task_struct'), 9728);
  t.equal(p.typeSize('struct list_head'), 16, 'a "struct " prefix is accepted');
  t.equal(p.typeSize('int'), 4);
  t.equal(p.typeSize('pointer'), 8);
  t.equal(p.typeSize('pid_type'), 4, 'enum size');
  t.throws(() => p.typeSize('nope'), { code: 'ENOSYM' });

  const tasks = p.field('task_struct', 'tasks');
  t.same(tasks, { name: 'tasks', offset: 2192, type: { kind: 'struct', name: 'list_head' }, size: 16 });
  t.equal(p.fieldOffset('task_struct', 'tasks.prev'), 2200, 'nested struct path');
  t.equal(p.field('task_struct', 'comm').size, 16, 'array size is count * element');
  t.equal(p.field('task_struct', 'nsproxy').size, 8, 'pointer size');
  t.equal(p.field('task_struct', 'pids_state').size, 4, 'enum field size');
  t.equal(p.field('task_struct', 'signal_handler').size, 8, 'function pointer');
  t.equal(p.fieldOffset('pid', 'numbers'), 80);
  t.equal(p.fieldOffset('pid', 'numbers[0].nr'), 80, 'array element path');
  t.equal(p.fieldOffset('pid', 'tasks[2].first'), 16 + 2 * 8, 'array index scales by the element size');
  t.notOk(p.hasField('pid', 'numbers[5].nr'), 'index past a known count');
  t.equal(p.fieldOffset('upid', 'nr'), 0);

  // mm_struct's fields live in an anonymous struct: C names them directly, so do we.
  t.equal(p.fieldOffset('mm_struct', 'pgd'), 8, 'seen through an anonymous struct');
  t.equal(p.fieldOffset('mm_struct', 'unnamed_field_0.pgd'), 8, 'and by the dwarf2json name');
  t.equal(p.fieldOffset('task_struct', 'rcu_users'), 2384, 'seen through an anonymous union');
  t.equal(p.fieldOffset('task_struct', 'rcu_users.refs.counter'), 2384, 'then into named structs');

  const bf = p.field('task_struct', 'in_iowait');
  t.same(bf.type, { kind: 'bitfield', bit_position: 3, bit_length: 1, type: { kind: 'base', name: 'unsigned int' } });
  t.equal(bf.size, 4, 'a bitfield reports its storage type size');

  t.equal(p.firstField('task_struct', ['state', '__state']).offset, 24, 'feature detection: 5.14 renamed state to __state');
  t.equal(p.firstField('task_struct', ['__state', 'state']).name, '__state');
  const e1 = caught(() => p.firstField('task_struct', ['a', 'b']));
  t.ok(e1 instanceof MissingSymbolError && /"a", "b"/.test(e1.message), 'firstField names every alternative');
  t.notOk(p.hasField('task_struct', 'nsproxy.count'), 'no path through a pointer');
  t.notOk(p.hasField('task_struct', 'comm.x'));
  t.notOk(p.hasField('no_struct', 'x'));
  const e2 = caught(() => p.field('task_struct', 'bogus'));
  t.ok(e2 instanceof MissingSymbolError && e2.symbol === 'task_struct.bogus', 'the error names struct.field');
  t.end();
});

t.test('enum constants', (t) => {
  const p = Profile.load(SMALL);
  t.equal(p.enumConstant('pid_type', 'PIDTYPE_TGID'), 1n);
  t.equal(p.enumConstant(undefined, 'TASK_COMM_LEN'), 16n, 'found in an anonymous enum');
  t.ok(p.hasEnumConstant(undefined, 'PIDTYPE_MAX'));
  t.notOk(p.hasEnumConstant('pid_type', 'TASK_COMM_LEN'));
  t.throws(() => p.enumConstant('pid_type', 'X'), { code: 'ENOSYM' });
  t.end();
});

t.test('big integers in JSON', (t) => {
  const v = parseJsonExact('{"a": 18446744073709551615, "b": [1, 9007199254740993], "c": "12345678901234567890", "d": 1.5e300, "e": -9223372036854775808}') as Record<string, unknown>;
  t.equal(v.a, '18446744073709551615', 'a 64-bit integer is kept as its digits');
  t.same(v.b, [1, '9007199254740993']);
  t.equal(v.c, '12345678901234567890', 'strings are untouched');
  t.equal(v.d, 1.5e300, 'floats are untouched');
  t.equal(v.e, '-9223372036854775808');
  t.same(parseJsonExact('{"s": "a:12345678901234567890,b"}'), { s: 'a:12345678901234567890,b' }, 'digits inside a string after a colon stay in the string');
  const tricky = String.raw`{"q": "say \"x\": 1234567890123456789, ok", "e": "\\", "f": 1.2345678901234567, "g": [12345678901234567.5e3, -12345678901234567], "h": 1234567890123456789}`;
  t.same(
    parseJsonExact(tricky),
    { q: 'say "x": 1234567890123456789, ok', e: '\\', f: 1.2345678901234567, g: [12345678901234567.5e3, '-12345678901234567'], h: '1234567890123456789' },
    'escaped quotes and backslashes, fractions and exponents',
  );
  t.equal(quoteBigIntegers('[1.12345678901234567,"12345678901234567",12345678901234567]'), '[1.12345678901234567,"12345678901234567","12345678901234567"]', 'the exact scanner');
  t.end();
});

t.test('validation names the bad element', (t) => {
  const good = JSON.parse(fs.readFileSync(SMALL, 'utf8')) as Record<string, any>;
  const bad = (mutate: (d: Record<string, any>) => void): string => {
    const d = structuredClone(good);
    mutate(d);
    return JSON.stringify(d);
  };
  const cases: Array<[string, string, RegExp]> = [
    ['not json', '{"metadata": ', /not valid JSON/],
    ['no metadata', bad((d) => delete d.metadata), /metadata: missing/],
    ['wrong format', bad((d) => (d.metadata.format = '4.1.0')), /metadata\.format: unsupported ISF format "4\.1\.0"/],
    ['bad kind', bad((d) => (d.user_types.task_struct.fields.pid.type = { kind: 'weird' })), /user_types\.task_struct\.fields\.pid\.type\.kind: unknown kind "weird"/],
    ['bad offset', bad((d) => (d.user_types.list_head.fields.next.offset = -1)), /user_types\.list_head\.fields\.next\.offset/],
    ['array without count', bad((d) => delete d.user_types.task_struct.fields.comm.type.count), /fields\.comm\.type\.count/],
    ['bad address', bad((d) => (d.symbols.init_task.address = 'x')), /symbols\.init_task\.address: not an address/],
    ['negative address', bad((d) => (d.symbols.init_task.address = -5)), /symbols\.init_task\.address/],
    ['bad base kind', bad((d) => (d.base_types.int.kind = 'integer')), /base_types\.int\.kind/],
    ['bad enum constant', bad((d) => (d.enums.pid_type.constants.PIDTYPE_PID = 'zero')), /enums\.pid_type\.constants\.PIDTYPE_PID: not an integer/],
    ['bad constant_data', bad((d) => (d.symbols.linux_banner.constant_data = '%%%')), /constant_data: not base64/],
    ['deep type', bad((d) => {
      let ty: Record<string, unknown> = { kind: 'base', name: 'int' };
      for (let i = 0; i < 100; i++) ty = { kind: 'pointer', subtype: ty };
      d.symbols.init_task.type = ty;
    }), /nested too deeply/],
  ];
  for (const [what, text, re] of cases) {
    const err = caught(() => parseProfile(text, 'bad.json'));
    t.ok(err instanceof ValidationError && re.test(err.message) && err.message.startsWith('bad.json: '), `${what}: ${String(err)}`);
  }
  t.end();
});

t.test('write and reload (plain and gzip), with bigints written as integers', (t) => {
  const p = Profile.load(SMALL);
  const text = serializeProfile(p.doc);
  t.match(text, /"address":18446744071606217280/, 'addresses are plain JSON integers, as dwarf2json writes them');
  t.match(text, /"PIDTYPE_MAX":4/);
  const again = Profile.fromJson(text, 'again');
  t.same(again.doc, Profile.load(SMALL).doc, 'the round trip keeps everything');
  t.equal(serializeProfile(again.doc), text, 'output is deterministic');

  const gz = path.join(tmp, 'p.json.gz');
  writeProfile(p.doc, gz);
  const raw = fs.readFileSync(gz);
  t.same([raw[0], raw[1]], [0x1f, 0x8b], 'a .gz name writes gzip');
  t.equal(zlib.gunzipSync(raw).toString('utf8'), text);
  const fromGz = Profile.load(gz);
  t.equal(fromGz.symbol('init_task'), 0xffffffff82a1aa40n);
  t.equal(fromGz.banner, BANNER);

  const plain = path.join(tmp, 'p.json');
  writeProfile(p.doc, plain);
  t.equal(readProfileText(plain), text);
  t.same(fs.readdirSync(tmp).filter((n) => n.endsWith('.tmp')), [], 'no temporary files left');
  t.end();
});

t.test('xz files are refused with advice', (t) => {
  const xz = path.join(tmp, 'p.json.xz');
  fs.writeFileSync(xz, Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2, 3]));
  const err = caught(() => Profile.load(xz));
  t.ok(err instanceof VmiError && err.code === 'EPROFILEFORMAT' && /xz -d/.test(err.message), 'xz refused');
  t.end();
});

t.test('metadata.linux.banner is used when present', (t) => {
  const d = JSON.parse(fs.readFileSync(SMALL, 'utf8')) as Record<string, any>;
  d.metadata.linux.banner = 'Linux version 9.9.9 (x) #1\n';
  const p = Profile.fromJson(JSON.stringify(d));
  t.equal(p.banner, 'Linux version 9.9.9 (x) #1');
  delete d.metadata.linux.banner;
  delete d.symbols.linux_banner;
  t.equal(Profile.fromJson(JSON.stringify(d)).banner, undefined, 'no banner at all');
  t.end();
});
