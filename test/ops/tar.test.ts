/**
 * lib/ops/tar.ts against GNU tar (on the machine): archives `tar -c` makes (its default GNU format
 * and pax) are read right, and `tar -t`/`tar -x` read what the writer makes right: long names, a
 * long symlink target, a directory tree, empty files, modes, mtimes, a name with control bytes; a
 * size beyond 8 GiB goes through pax. Hostile archives stop the reader with an error naming the
 * entry, before any entry that would leave the target directory is given to the extractor.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TarError, TarReader, tarEnd, tarHeader, tarPadding, type TarEntry, type TarHeader } from '../../lib/ops/tar';

const dir = mkdtempSync(join(tmpdir(), 'vmictl-tar-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const LONG_DIR = 'd'.repeat(90);
const LONG_FILE = `f${'x'.repeat(150)}`;
const LONG_TARGET = `../${'t'.repeat(140)}`;
const MTIME = 1_600_000_000;

/** A tree with what the tests check: long names, links, an empty file, modes, mtimes. */
function makeTree(root: string): void {
  mkdirSync(join(root, 'top', LONG_DIR, 'sub'), { recursive: true });
  writeFileSync(join(root, 'top', 'empty'), '', { mode: 0o600 });
  writeFileSync(join(root, 'top', 'exec.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  writeFileSync(join(root, 'top', LONG_DIR, 'sub', 'deep'), Buffer.alloc(5000, 0x61), { mode: 0o640 });
  writeFileSync(join(root, 'top', LONG_DIR, LONG_FILE), 'long\n', { mode: 0o644 });
  symlinkSync('exec.sh', join(root, 'top', 'link'));
  symlinkSync(LONG_TARGET, join(root, 'top', 'longlink'));
  for (const p of ['top/empty', 'top/exec.sh', `top/${LONG_DIR}/sub/deep`, `top/${LONG_DIR}/${LONG_FILE}`]) utimesSync(join(root, p), MTIME, MTIME);
}

interface Seen { kind: string; mode?: number; size: number; mtime?: number; data?: string; link?: string }

/** The tree below `root` as a map path → what matters, from the host's own view (lstat). */
function hostTree(root: string, rel = ''): Map<string, Seen> {
  const out = new Map<string, Seen>();
  for (const name of readdirSync(join(root, rel)).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(root, p));
    if (st.isDirectory()) {
      out.set(p, { kind: 'directory', mode: st.mode & 0o7777, size: 0 });
      for (const [k, v] of hostTree(root, p)) out.set(k, v);
    } else if (st.isSymbolicLink()) out.set(p, { kind: 'symlink', size: 0, link: readlinkSync(join(root, p)) });
    else out.set(p, { kind: 'file', mode: st.mode & 0o7777, size: st.size, mtime: Math.floor(st.mtimeMs / 1000), data: readFileSync(join(root, p)).toString('hex') });
  }
  return out;
}

async function readAll(source: AsyncIterable<Buffer> | Buffer[]): Promise<Map<string, Seen>> {
  const r = new TarReader(source, { chunk: 1000 });
  const out = new Map<string, Seen>();
  for (let e: TarEntry | null; (e = await r.next());) {
    const parts: Buffer[] = [];
    for await (const b of r.body()) parts.push(b);
    const p = Buffer.concat(e.components.flatMap((c, i) => (i ? [Buffer.from('/'), c] : [c]))).toString();
    if (!p) continue;
    if (e.kind === 'directory') out.set(p, { kind: 'directory', mode: e.mode, size: 0 });
    else if (e.kind === 'symlink') out.set(p, { kind: 'symlink', size: 0, link: e.linkname!.toString() });
    else out.set(p, { kind: e.kind, mode: e.mode, size: e.size, mtime: e.mtime, data: Buffer.concat(parts).toString('hex') });
  }
  return out;
}

/** An archive of the tree below `root`, made with the writer under test (walk order: readdir). */
function writeTree(root: string, rel: string, out: Buffer[]): void {
  const st = lstatSync(join(root, rel));
  const base = { path: Buffer.from(rel), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs / 1000) };
  if (st.isSymbolicLink()) out.push(tarHeader({ ...base, kind: 'symlink', size: 0, linkname: readlinkSync(join(root, rel), { encoding: 'buffer' }) }));
  else if (st.isDirectory()) {
    out.push(tarHeader({ ...base, kind: 'directory', size: 0 }));
    for (const name of readdirSync(join(root, rel))) writeTree(root, `${rel}/${name}`, out);
  } else {
    const data = readFileSync(join(root, rel));
    out.push(tarHeader({ ...base, kind: 'file', size: data.length }), data, tarPadding(data.length));
  }
}

const src = join(dir, 'src');
mkdirSync(src);
makeTree(src);
const expected = hostTree(src);

for (const format of ['gnu', 'pax', 'ustar']) {
  t.test(`an archive of GNU tar --format=${format} is read right`, async (t) => {
    const r = spawnSync('tar', ['-c', `--format=${format}`, '-f', '-', '-C', src, 'top'], { maxBuffer: 1 << 26 });
    if (format === 'ustar') {
      // ustar cannot hold a 150-byte file name: GNU tar says so and leaves it out
      t.not(r.status, 0, 'GNU tar refuses the long name in plain ustar');
      return;
    }
    t.equal(r.status, 0, r.stderr.toString());
    // fed in pieces that cut headers and data anywhere
    const archive = r.stdout as Buffer;
    const pieces: Buffer[] = [];
    for (let at = 0; at < archive.length; at += 777) pieces.push(archive.subarray(at, at + 777));
    const got = await readAll(pieces);
    t.same([...got.keys()].sort(), [...expected.keys()].sort(), 'the same paths');
    for (const [p, want] of expected) t.same(got.get(p), want, p.length > 60 ? `${p.slice(0, 40)}…` : p);
  });
}

t.test('GNU tar reads the writer\'s archive right (tar -t and tar -x)', async (t) => {
  const parts: Buffer[] = [];
  writeTree(src, 'top', parts);
  parts.push(tarEnd());
  const archive = Buffer.concat(parts);
  const list = execFileSync('tar', ['-t', '-f', '-'], { input: archive }).toString().trim().split('\n').map((l) => l.replace(/\/$/, '')).sort();
  t.same(list, ['top', ...[...expected.keys()].filter((k) => k !== 'top')].sort(), 'tar -t lists every path');
  const out = join(dir, 'x1');
  mkdirSync(out);
  execFileSync('tar', ['-x', '-f', '-', '-C', out], { input: archive });
  const got = hostTree(out);
  t.same([...got.keys()].sort(), [...expected.keys()].sort(), 'tar -x makes the same paths');
  for (const [p, want] of expected) t.same(got.get(p), want, `${p.slice(0, 40)}: same kind, mode, size, mtime, data, link`);
  t.same(await readAll([archive]), expected, 'and the reader reads it back the same');
});

t.test('a name with control bytes goes in as bytes; a message about it escapes them', async (t) => {
  const name = Buffer.from('evil\x1b]0;owned\x07name');
  const archive = Buffer.concat([tarHeader({ path: name, kind: 'file', mode: 0o644, uid: 0, gid: 0, size: 3, mtime: MTIME }), Buffer.from('abc'), tarPadding(3), tarEnd()]);
  const out = join(dir, 'x2');
  mkdirSync(out);
  execFileSync('tar', ['-x', '-f', '-', '-C', out], { input: archive });
  t.same(readdirSync(out, { encoding: 'buffer' }), [name], 'tar -x makes the name byte for byte');
  const err = await new TarReader([Buffer.concat([tarHeader({ path: Buffer.concat([Buffer.from('/'), name]), kind: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 }), tarEnd()])]).next().catch((e: Error) => e);
  t.type(err, TarError);
  t.notMatch((err as Error).message, /[\x00-\x1f]/, 'the error has no raw control byte');
  t.match((err as Error).message, /evil\\x1b\]0;owned\\x07name/, 'it shows them escaped');
});

t.test('a size of 8 GiB and more goes through pax (header only)', async (t) => {
  const size = 9 * 1024 ** 3 + 5;
  const header = tarHeader({ path: Buffer.from('huge'), kind: 'file', mode: 0o644, uid: 3_000_000, gid: 5, size, mtime: MTIME });
  t.ok(header.includes(Buffer.from(` size=${size}\n`)), 'a pax size record');
  const e = await new TarReader([header]).next();
  t.equal(e?.size, size, 'the reader takes the pax size');
  t.equal(e?.uid, 3_000_000, 'and a uid beyond 7 octal digits');
  // GNU tar lists the header, then finds the data missing
  const r = spawnSync('tar', ['-t', '-v', '--numeric-owner', '-f', '-'], { input: header });
  t.match(r.stdout.toString(), new RegExp(`3000000/5\\s+${size} .* huge`), 'tar -tv shows the same size and uid');
});

/** The entries the reader gives before it fails, and its error. */
async function hostile(archive: Buffer): Promise<{ paths: string[]; err: Error | undefined }> {
  const r = new TarReader([archive]);
  const paths: string[] = [];
  try {
    for (let e: TarEntry | null; (e = await r.next());) {
      paths.push(e.components.join('/'));
      for await (const _ of r.body());
    }
  } catch (err) {
    return { paths, err: err as Error };
  }
  return { paths, err: undefined };
}

const H = (h: Partial<Omit<TarHeader, "path">> & { path: string }): Buffer => tarHeader({ kind: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0, ...h, path: Buffer.from(h.path) } as TarHeader);

t.test('hostile archives fail with an error naming the entry', async (t) => {
  const ok = H({ path: 'fine' });
  const cases: [string, Buffer, RegExp][] = [
    ['../ escape', Buffer.concat([ok, H({ path: 'a/../../escaped' }), tarEnd()]), /"a\/\.\.\/\.\.\/escaped".*leaves the target directory/],
    ['absolute path', Buffer.concat([ok, H({ path: '/etc/cron.d/x' }), tarEnd()]), /"\/etc\/cron\.d\/x".*absolute/],
    ['symlink then a file through it', Buffer.concat([ok, H({ path: 'l', kind: 'symlink', linkname: Buffer.from('/etc') }), H({ path: 'l/passwd' }), tarEnd()]), /"l\/passwd".*goes through "l", a symlink/],
    ['hard link out', Buffer.concat([ok, H({ path: 'h', kind: 'hardlink', linkname: Buffer.from('../../etc/shadow') }), tarEnd()]), /"h".*leaves the target/],
  ];
  for (const [what, archive, message] of cases) {
    const { paths, err } = await hostile(archive);
    t.type(err, TarError, `${what}: a TarError`);
    t.match(err?.message, message, `${what}: ${err?.message}`);
    t.notOk(paths.some((p) => p.includes('..') || p.includes('passwd') || p.includes('etc') || p === 'h'), `${what}: the hostile entry is never given out (${paths.join(', ')})`);
  }
  // GNU tar's own archive of ../ (made with -P) is refused the same way
  mkdirSync(join(dir, 'p', 'q'), { recursive: true });
  writeFileSync(join(dir, 'p', 'outside'), 'x');
  const gnu = execFileSync('tar', ['-c', '-P', '-f', '-', '-C', join(dir, 'p', 'q'), '../outside']);
  t.match((await hostile(gnu)).err?.message, /"\.\.\/outside".*leaves the target directory/, 'GNU tar -P ../outside is refused');
});

t.test('a truncated stream, an absurd pax length, a bad checksum fail clearly', async (t) => {
  const data = Buffer.alloc(3000, 0x62);
  const whole = Buffer.concat([H({ path: 'f', size: data.length }), data, tarPadding(data.length), tarEnd()]);
  t.match((await hostile(whole.subarray(0, 1500))).err?.message, /"f".*ends in the middle of its data \(2012 bytes missing\)/, 'truncated in the data');
  t.match((await hostile(whole.subarray(0, 300))).err?.message, /ends in the middle of a header/, 'truncated in a header');
  // a pax header that claims 1 GiB: refused before anything is read into memory
  const paxHead = Buffer.from(H({ path: '././@PaxHeader', size: 1 << 30 }));
  paxHead[156] = 'x'.charCodeAt(0);
  paxHead.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of paxHead) sum += x;
  paxHead.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'latin1');
  t.match((await hostile(Buffer.concat([paxHead, Buffer.alloc(512)]))).err?.message, /metadata header of 1073741824 bytes/, 'absurd pax size');
  // a pax record whose length runs past the header
  const rec = Buffer.from('99999999 path=x\n');
  const small = Buffer.from(H({ path: '././@PaxHeader', size: rec.length }));
  small[156] = 'x'.charCodeAt(0);
  small.fill(0x20, 148, 156);
  sum = 0;
  for (const x of small) sum += x;
  small.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'latin1');
  t.match((await hostile(Buffer.concat([small, rec, tarPadding(rec.length), H({ path: 'y' }), tarEnd()]))).err?.message, /pax record at byte 0 has a bad length/, 'absurd pax record length');
  const bad = Buffer.from(whole);
  bad[0] ^= 1;
  t.match((await hostile(bad)).err?.message, /bad header checksum at offset 0/, 'a corrupt header');
  t.match((await hostile(Buffer.from('hello, not a tar\n'))).err?.message, /ends in the middle of a header/, 'not a tar at all');
});
