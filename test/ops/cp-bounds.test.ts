/**
 * cp out against a hostile kernel, without a VM (test/helpers/fake-guest-fs.ts answers the calls):
 * a file that gives more than fstat said, a directory of . and .. forever, names of 64 KiB, more
 * skipped entries than a report lists; and an abort that still closes every fd in the container.
 */
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AbortError, LimitExceededError } from '../../lib/errors';
import { emptyReport, MAX_REPORTED, UNSIZED_FILE_MAX } from '../../lib/ops/copy-common';
import { copyOut } from '../../lib/ops/cp-out';
import { FileGrewError } from '../../lib/ops/errors';
import { GuestFs, parseRawDirents, S_IFDIR, S_IFREG } from '../../lib/ops/guest-fs';
import { NAME_MAX } from '../../lib/ops/names';
import { direntRecord, FakeGuestFsSession, type FakeNode } from '../helpers/fake-guest-fs';

const DT_DIR = 4;
const DT_REG = 8;
const dir = mkdtempSync(join(tmpdir(), 'vmictl-cp-bounds-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const tree = (children: Record<string, FakeNode>): FakeNode => ({ mode: S_IFDIR | 0o755, children });
const file = (data: string): FakeNode => ({ mode: S_IFREG | 0o644, data: Buffer.from(data) });
const listing = (names: [string | Buffer, number][]): Buffer => Buffer.concat([direntRecord(Buffer.from('.'), DT_DIR), direntRecord(Buffer.from('..'), DT_DIR), ...names.map(([n, ty]) => direntRecord(Buffer.from(n), ty))]);

t.test('a file that gives more than fstat said is not copied, and the host file is removed', async (t) => {
  const fake = new FakeGuestFsSession(tree({ grows: { mode: S_IFREG | 0o644, size: 10n, endless: { chunk: Buffer.alloc(1 << 20, 0x61), cap: 64 << 20 } } }));
  const fs = new GuestFs(fake.session);
  const report = emptyReport();
  const dest = join(dir, 'grows');
  await t.rejects(copyOut(fs, '/grows', dest, report, {}), FileGrewError, 'a clear error');
  t.ok(report.bytes <= 10, `at most the fstat size reached the host (${report.bytes} bytes)`);
  t.notOk(existsSync(dest), 'no partial file left');
  t.same(readdirSync(dir).filter((n) => n.endsWith('.tmp')), [], 'no temporary file left');
});

t.test('a file whose fstat size is 0 is read up to UNSIZED_FILE_MAX', async (t) => {
  const fake = new FakeGuestFsSession(tree({ proc: { mode: S_IFREG | 0o444, size: 0n, endless: { chunk: Buffer.alloc(1 << 20, 0x61), cap: 64 << 20 } }, small: { mode: S_IFREG | 0o444, size: 0n, data: Buffer.from('cpu 1 2 3\n') } }));
  const fs = new GuestFs(fake.session);
  const small = emptyReport();
  await copyOut(fs, '/small', join(dir, 'small'), small, {});
  t.equal(small.bytes, 10, 'a /proc-like file of size 0 is copied whole');
  const big = emptyReport();
  await t.rejects(copyOut(fs, '/proc', join(dir, 'proc'), big, {}), FileGrewError);
  t.ok(big.bytes <= UNSIZED_FILE_MAX, 'and stopped at the bound when it never ends');
});

t.test('--max-bytes bounds the whole copy', async (t) => {
  const fake = new FakeGuestFsSession(tree({ d: { ...tree({ a: file('0123456789'), b: file('0123456789') }), dirents: [listing([['a', DT_REG], ['b', DT_REG]])] } }));
  const report = emptyReport();
  await t.rejects(copyOut(new GuestFs(fake.session), '/d', join(dir, 'max'), report, { maxBytes: 15 }), LimitExceededError);
  t.equal(report.bytes, 10, 'the first file only');
});

t.test('a directory that returns . and .. forever ends with an error', async (t) => {
  const dots = Buffer.concat(Array.from({ length: 2000 }, (_, i) => direntRecord(Buffer.from(i % 2 ? '..' : '.'), DT_DIR)));
  const fake = new FakeGuestFsSession(tree({ loop: { mode: S_IFDIR | 0o755, dirents: [dots], repeat: true } }));
  fake.maxCalls = 1000;
  await t.rejects(copyOut(new GuestFs(fake.session), '/loop', join(dir, 'loop'), emptyReport(), {}), { code: 'ETOOBIG' });
  t.ok(fake.calls.filter((c) => c === 'getdents64').length < 100, 'after a bounded number of calls');
});

t.test('names of 64 KiB are cut to NAME_MAX + 1 bytes when read, and refused', async (t) => {
  const long = Buffer.alloc(65000, 0x6e);
  const parsed = parseRawDirents(direntRecord(long, DT_REG));
  t.equal(parsed[0].name.length, NAME_MAX + 1, 'the name is not kept whole');
  const fake = new FakeGuestFsSession(tree({ d: { mode: S_IFDIR | 0o755, dirents: [listing([[long, DT_REG]])] } }));
  const report = emptyReport();
  await copyOut(new GuestFs(fake.session), '/d', join(dir, 'long'), report, {});
  t.equal(report.skipped.length, 1, 'skipped');
  t.ok(report.skipped[0].path.length < 2 * (NAME_MAX + 10), 'and reported with a bounded name');
});

t.test('skipped entries past MAX_REPORTED are counted, not listed', async (t) => {
  const names: [string, number][] = Array.from({ length: MAX_REPORTED + 500 }, (_, i) => [`x/${i}`, DT_REG]);
  const fake = new FakeGuestFsSession(tree({ d: { mode: S_IFDIR | 0o755, dirents: [listing(names.slice(0, 1000)), listing(names.slice(1000))] } }));
  const report = emptyReport();
  await copyOut(new GuestFs(fake.session), '/d', join(dir, 'many'), report, {});
  t.equal(report.skipped.length, MAX_REPORTED, `${MAX_REPORTED} listed`);
  t.equal(report.dropped.skipped, 500, 'the rest counted');
});

t.test('an abort stops the copy before its next call and every fd is still closed', async (t) => {
  const fake = new FakeGuestFsSession(tree({ d: { ...tree({ a: file('aaaa'), b: file('bbbb') }), dirents: [listing([['a', DT_REG], ['b', DT_REG]])] } }));
  const ac = new AbortController();
  const fs = new GuestFs(fake.session, { signal: ac.signal });
  const report = emptyReport();
  const copy = copyOut(fs, '/d', join(dir, 'aborted'), report, { onProgress: () => ac.abort(new Error('Ctrl-C')) });
  await t.rejects(copy, AbortError, 'the abort ends the copy');
  t.equal(report.files, 0, 'the file being copied when the abort came is not finished');
  t.same(readdirSync(join(dir, 'aborted')), [], 'and its partial copy is removed');
  t.ok(fake.fds.size > 0, 'the container root (and the directory) are still open at that point');
  await fs.closeAll();
  t.equal(fake.fds.size, 0, 'closeAll() after the abort closes every fd in the container');
});
