/**
 * Host filesystem safety without a VM: guest names that are not one safe component are refused,
 * joined paths never leave the root, copies out (with a fake guest directory listing) land only
 * below the destination, existing files are not replaced without force, and the parsers of
 * mountinfo, getdents64 records, signals and CONTAINER:PATH operands behave on hostile input.
 */
import t from 'tap';
import { mkdtempSync, readdirSync, readlinkSync, lstatSync, readFileSync, rmSync, writeFileSync, symlinkSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { joinInside, lastComponent, parseCopyOperand, printableName, unsafeComponent, NAME_MAX } from '../../lib/ops/names';
import { createLocalDirectory, createLocalFile, createLocalSymlink, finishLocalDirectory } from '../../lib/ops/local-writer';
import { parseCgroupMounts, cgroupPathUnder } from '../../lib/ops/mounts';
import { parseRawDirents } from '../../lib/ops/guest-fs';
import { parseSignal } from '../../lib/ops/signals';
import { WouldOverwriteError } from '../../lib/ops/errors';

const b = (s: string) => Buffer.from(s, 'latin1');

t.test('unsafe components are refused, odd but legal names kept', async (t) => {
  for (const bad of ['', '.', '..', 'a/b', '/', '../../x', 'x\0y', 'z'.repeat(NAME_MAX + 1)]) t.ok(unsafeComponent(b(bad)), `refused: ${JSON.stringify(bad.slice(0, 20))}`);
  for (const ok of ['...', '..x', 'x..', 'evil\nname\x1b]0;pwned\x07', '-rf', ' ', 'z'.repeat(NAME_MAX), '\xff\xfe']) t.equal(unsafeComponent(b(ok)), null, `kept: ${JSON.stringify(ok.slice(0, 20))}`);
  t.throws(() => joinInside('/dest', [b('a'), b('..')]), RangeError);
  t.throws(() => joinInside('/dest', [b('a/../../etc')]), RangeError);
  t.same(joinInside('/dest', [b('a'), b('..b')]), b(`/dest${sep}a${sep}..b`));
  t.notMatch(printableName(b('x\x1b]0;pwned\x07')), /\x1b|\x07/, 'printed names are escaped');
});

t.test('operands and last components', async (t) => {
  t.same(parseCopyOperand('ticker:/etc/hostname'), { container: 'ticker', path: '/etc/hostname' });
  t.same(parseCopyOperand('ticker:'), { container: 'ticker', path: '/' });
  t.same(parseCopyOperand('pid:155:/tmp'), { container: 'pid:155', path: '/tmp' });
  t.equal(parseCopyOperand('./a:b'), null);
  t.equal(parseCopyOperand('/x:y'), null);
  t.equal(parseCopyOperand('-'), null);
  t.equal(parseCopyOperand('plain'), null);
  t.equal(lastComponent('/a/b/'), 'b');
  t.equal(lastComponent('/'), null);
  t.equal(lastComponent('/a/..'), null);
});

t.test('local writer: temp file then name, no overwrite without force, symlinks not followed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-ops-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const outside = join(dir, 'outside');
  writeFileSync(outside, 'precious');
  const dest = join(dir, 'dest');
  t.equal(createLocalDirectory(b(dest), false), true);
  // a file over an existing symlink that points outside: refused, then with force the link itself is replaced
  symlinkSync(outside, join(dest, 'trap'));
  t.throws(() => createLocalFile(b(join(dest, 'trap')), false), WouldOverwriteError);
  const f = createLocalFile(b(join(dest, 'trap')), true);
  f.write(Buffer.from('new'));
  f.commit(0o640);
  t.equal(readFileSync(outside, 'utf8'), 'precious', 'the symlink target is untouched');
  t.equal(readFileSync(join(dest, 'trap'), 'utf8'), 'new');
  t.equal(lstatSync(join(dest, 'trap')).mode & 0o777, 0o640, 'mode kept');
  // an aborted file leaves nothing
  const g = createLocalFile(b(join(dest, 'aborted')), false);
  g.write(Buffer.from('half'));
  g.abort();
  t.same(readdirSync(dest).sort(), ['trap'], 'no temporary file left');
  // symlinks are made as symlinks, never followed; names with control characters are kept as bytes
  const evil = b('evil\nname\x1b]0;pwned\x07');
  createLocalSymlink(joinInside(b(dest), [evil]), b('/etc/passwd'), false);
  t.equal(readlinkSync(joinInside(b(dest), [evil]), 'latin1'), '/etc/passwd');
  t.throws(() => createLocalSymlink(joinInside(b(dest), [evil]), b('/x'), false), WouldOverwriteError);
  // a directory where a symlink to outside stands: only with force, and then the link is removed
  symlinkSync(dir, join(dest, 'sub'));
  t.throws(() => createLocalDirectory(b(join(dest, 'sub')), false), WouldOverwriteError);
  t.equal(createLocalDirectory(b(join(dest, 'sub')), true), true);
  t.ok(lstatSync(join(dest, 'sub')).isDirectory());
  mkdirSync(join(dest, 'real'));
  t.equal(createLocalDirectory(b(join(dest, 'real')), true), false, 'an existing real directory is reused with force');
  // nothing was ever created next to dest
  t.same(readdirSync(dir).sort(), ['dest', 'outside']);
  for (const name of readdirSync(dest)) t.ok(resolve(dest, name).startsWith(dest + sep));
});

t.test("guest modes on the host: no setuid, setgid or sticky bit, the user's umask applied", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-ops-'));
  const umask = process.umask(0o027);
  t.teardown(() => { process.umask(umask); rmSync(dir, { recursive: true, force: true }); });
  const f = createLocalFile(b(join(dir, 'suid')), false);
  f.write(Buffer.from('x'));
  f.commit(0o106777);
  t.equal(lstatSync(join(dir, 'suid')).mode & 0o7777, 0o750, 'a 04777 guest file is 0750 under umask 027');
  const d = join(dir, 'sticky');
  createLocalDirectory(b(d), false);
  finishLocalDirectory(b(d), 0o041777);
  t.equal(lstatSync(d).mode & 0o7777, 0o750, 'a 01777 guest directory is 0750 under umask 027');
});

t.test('getdents64 records: names kept as bytes, corrupt records refused', async (t) => {
  const rec = (name: Buffer, type: number) => {
    const len = (19 + name.length + 1 + 7) & ~7;
    const r = Buffer.alloc(len);
    r.writeUInt16LE(len, 16);
    r[18] = type;
    name.copy(r, 19);
    return r;
  };
  const buf = Buffer.concat([rec(b('.'), 4), rec(b('\xff../x'), 8), rec(b('ok'), 10)]);
  const out = parseRawDirents(buf);
  t.same(out.map((e) => e.name), [b('.'), b('\xff../x'), b('ok')]);
  t.ok(unsafeComponent(out[1].name), 'a name with / from a hostile kernel is refused later');
  const bad = Buffer.from(buf);
  bad.writeUInt16LE(0xffff, 16);
  t.throws(() => parseRawDirents(bad), { code: 'EBADDIRENT' });
  t.throws(() => parseRawDirents(Buffer.alloc(5)), { code: 'EBADDIRENT' });
});

t.test('mountinfo and signals', async (t) => {
  const m = parseCgroupMounts([
    '29 24 0:26 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw',
    'garbage line',
    '40 29 0:30 /lxc /mnt/with\\040space rw - cgroup cgroup rw,freezer',
  ].join('\n'));
  t.same(m.v2, { root: '/', mountPoint: '/sys/fs/cgroup' });
  t.same(m.freezer, { root: '/lxc', mountPoint: '/mnt/with space' });
  t.equal(cgroupPathUnder(m.freezer!, '/lxc/c1'), '/c1');
  t.equal(cgroupPathUnder(m.freezer!, '/other'), null);
  t.same(parseSignal('TERM'), { number: 15, name: 'SIGTERM' });
  t.same(parseSignal('sigkill'), { number: 9, name: 'SIGKILL' });
  t.same(parseSignal('9'), { number: 9, name: 'SIGKILL' });
  t.equal(parseSignal('RTMIN+2').number, 36);
  t.throws(() => parseSignal('0'));
  t.throws(() => parseSignal('65'));
  t.throws(() => parseSignal('NOPE'));
});
