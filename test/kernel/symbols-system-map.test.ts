/**
 * System.map parsing: addresses as exact bigints, the duplicate-name rule, bounds and errors.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { ValidationError } from '../../lib/errors';
import { MAX_SYSTEM_MAP_BYTES, parseSystemMap, readSystemMap } from '../../lib/kernel/symbols';

const SAMPLE = [
  '0000000000000000 D __per_cpu_start',
  '0000000000000000 D fixed_percpu_data',
  '0000000000021a00 D current_task',
  'ffffffff81000000 T _stext',
  'ffffffff81000000 T _text',
  'ffffffff81001000 t xen_hypercall_page_local',
  'ffffffff8211ffe0 R linux_banner',
  'ffffffff82a1aa40 D init_task',
  'ffffffff82a0c000 D init_top_pgt',
  'ffffffff83000000 b dup_name',
  'ffffffff83000010 B dup_name',
  'ffffffff83000020 b dup_name',
  'ffffffff83000030 t twice_local',
  'ffffffff83000040 t twice_local',
  'ffffffffc0001000 t nf_hook [nf_tables]',
  '',
].join('\r\n');

t.test('parses addresses, types and module suffixes', (t) => {
  const m = parseSystemMap(SAMPLE);
  t.equal(m.size, 12);
  t.same(m.get('init_task'), { name: 'init_task', address: 0xffffffff82a1aa40n, type: 'D' });
  t.equal(m.get('_text')?.address, 0xffffffff81000000n);
  t.equal(m.get('fixed_percpu_data')?.address, 0n);
  t.equal(m.get('current_task')?.address, 0x21a00n);
  t.equal(m.get('linux_banner')?.type, 'R');
  t.same(m.get('nf_hook'), { name: 'nf_hook', address: 0xffffffffc0001000n, type: 't', module: 'nf_tables' });
  t.end();
});

t.test('a global symbol wins over local ones of the same name; otherwise the first stays', (t) => {
  const m = parseSystemMap(SAMPLE);
  t.same(m.get('dup_name'), { name: 'dup_name', address: 0xffffffff83000010n, type: 'B' });
  t.equal(m.get('twice_local')?.address, 0xffffffff83000030n);
  t.end();
});

t.test('malformed lines are errors with their line number', (t) => {
  const bad = ['ffffffff81000000 T _text', 'ffffffff81000010 T', 'x'].join('\n');
  t.throws(() => parseSystemMap(bad, 'map'), ValidationError);
  try {
    parseSystemMap(bad, 'map');
  } catch (err) {
    t.match((err as Error).message, /^map:2: not a System\.map line/);
  }
  t.throws(() => parseSystemMap('fffffffffffffffff0 T too_long_address'), ValidationError, 'more than 64 bits');
  t.throws(() => parseSystemMap('zzzz T name'), ValidationError);
  t.end();
});

t.test('files are read with a size bound', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-map-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const small = path.join(dir, 'System.map');
  fs.writeFileSync(small, SAMPLE);
  t.equal(readSystemMap(small).get('init_task')?.address, 0xffffffff82a1aa40n);
  const huge = path.join(dir, 'huge.map');
  const fd = fs.openSync(huge, 'w');
  fs.ftruncateSync(fd, MAX_SYSTEM_MAP_BYTES + 1); // sparse: costs no disk
  fs.closeSync(fd);
  t.throws(() => readSystemMap(huge), { message: /too large for a System\.map/ });
  t.end();
});
