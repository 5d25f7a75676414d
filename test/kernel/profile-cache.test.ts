/**
 * The packed-profile cache: a second load of the same profile file comes from the cache file
 * and answers as the JSON does; a damaged, truncated or foreign cache file is ignored and
 * written again; a cache directory that cannot be made costs nothing but the cache.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import t, { type Test } from 'tap';
import { Profile, serializeProfile } from '../../lib/kernel/profile';
import { PackedStore } from '../../lib/kernel/profile/compact';
import { PACKED_CACHE_MIN_BYTES, readPackedCache, writePackedCache } from '../../lib/kernel/profile/cache';

const SMALL = path.join(__dirname, '..', 'fixtures', 'isf', 'small.json');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-packed-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The ISF fixture grown past the cache's threshold with generated symbols, structs and a wide name. */
function largeProfile(): string {
  const doc = JSON.parse(fs.readFileSync(SMALL, 'utf8'));
  for (let i = 0; i < 20000; i++) doc.symbols[`sym_${i}`] = { address: `184467440715620${String(i).padStart(5, '0')}`, type: { kind: 'base', name: 'int' } };
  for (let i = 0; i < 2000; i++) doc.user_types[`gen_${i}`] = { kind: 'struct', size: 16, fields: { a: { offset: 0, type: { kind: 'base', name: 'int' } }, b: { offset: 8, type: { kind: 'pointer', subtype: { kind: 'struct', name: `gen_${i}` } } } } };
  doc.symbols['wide_\u4e2d'] = { address: 1, constant_data: 'AAEC' };
  // addresses were written as strings to keep them exact: make them JSON integers again
  return JSON.stringify(doc).replace(/"address":"(\d+)"/g, '"address":$1');
}

const file = path.join(tmp, 'large.json');
fs.writeFileSync(file, largeProfile());
const source = createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const dir = path.join(tmp, 'cache');
const cacheFile = path.join(dir, `${source}.packed`);
const reference = Profile.load(file);

t.ok(fs.statSync(file).size >= PACKED_CACHE_MIN_BYTES, 'the test profile is large enough to be cached');

function sameAsReference(t: Test, p: Profile, what: string): void {
  t.same(p.counts, reference.counts, `${what}: counts`);
  t.equal(p.banner, reference.banner, `${what}: banner`);
  t.equal(p.symbol('sym_12345'), reference.symbol('sym_12345'), `${what}: a symbol`);
  t.equal(p.symbol('wide_\u4e2d'), 1n, `${what}: a symbol with a wide name`);
  t.equal(p.fieldOffset('gen_7', 'b'), 8, `${what}: a field`);
  t.equal(serializeProfile(p.doc), serializeProfile(reference.doc), `${what}: the whole document`);
}

t.test('the first load writes the cache, the next reads it', async (t) => {
  const first = Profile.load(file, { packedCache: dir });
  t.ok(fs.existsSync(cacheFile), 'cache file named by the profile bytes');
  sameAsReference(t, first, 'first load');
  t.ok(readPackedCache(cacheFile, source), 'the cache file reads back');
  t.equal(readPackedCache(cacheFile, '0'.repeat(64)), undefined, 'not for another source');
  sameAsReference(t, Profile.load(file, { packedCache: dir }), 'from the cache');
});

t.test('the cache is what the next load uses', async (t) => {
  // a valid cache file of other content for this source: its answers show it was read
  const other = new PackedStore(JSON.parse(JSON.stringify({ metadata: { format: '6.2.0' }, base_types: {}, user_types: {}, enums: {}, symbols: {} })));
  writePackedCache(cacheFile, source, other);
  t.equal(Profile.load(file, { packedCache: dir }).counts.symbols, 0);
  fs.rmSync(cacheFile);
});

t.test('a damaged cache file is ignored and written again', async (t) => {
  Profile.load(file, { packedCache: dir });
  const good = fs.readFileSync(cacheFile);
  const damages: Array<[string, Buffer]> = [
    ['a flipped byte', Buffer.from(good.map((b, i) => (i === good.length >> 1 ? b ^ 0x40 : b)))],
    ['truncated', good.subarray(0, good.length - 100)],
    ['empty', Buffer.alloc(0)],
    ['another format', Buffer.from('{"not": "a cache"}')],
  ];
  for (const [what, bytes] of damages) {
    fs.writeFileSync(cacheFile, bytes);
    t.equal(readPackedCache(cacheFile, source), undefined, `${what}: not read`);
    sameAsReference(t, Profile.load(file, { packedCache: dir }), what);
    t.ok(readPackedCache(cacheFile, source), `${what}: written again`);
  }
});

t.test('a cache directory that cannot be made is no error', async (t) => {
  const blocker = path.join(tmp, 'a-file');
  fs.writeFileSync(blocker, 'x');
  sameAsReference(t, Profile.load(file, { packedCache: path.join(blocker, 'packed') }), 'uncached');
});

t.test('an unchanged profile is found by its identity on disk; any rewrite is seen', async (t) => {
  const own = path.join(tmp, 'indexed.json');
  const ownDir = path.join(tmp, 'indexed-cache');
  fs.copyFileSync(file, own);
  sameAsReference(t, Profile.load(own, { packedCache: ownDir }), 'first load');
  const entries = fs.readdirSync(path.join(ownDir, 'by-file'));
  t.equal(entries.length, 1, 'one index entry');
  t.equal(fs.readFileSync(path.join(ownDir, 'by-file', entries[0]), 'latin1'), source, 'naming the hash of the profile bytes');
  // the index is what the next load uses: point it at a valid cache of other content
  const other = new PackedStore(JSON.parse(JSON.stringify({ metadata: { format: '6.2.0' }, base_types: {}, user_types: {}, enums: {}, symbols: {} })));
  const fake = '1'.repeat(64);
  writePackedCache(path.join(ownDir, `${fake}.packed`), fake, other);
  fs.writeFileSync(path.join(ownDir, 'by-file', entries[0]), fake);
  t.equal(Profile.load(own, { packedCache: ownDir }).counts.symbols, 0, 'the profile bytes are not read again');
  // same size, one digit of an address changed: a new identity (ctime), so the bytes are read
  const text = fs.readFileSync(own, 'utf8').replace('18446744071562012345', '18446744071562012346');
  fs.writeFileSync(own, text);
  const edited = Profile.load(own, { packedCache: ownDir });
  t.equal(edited.symbol('sym_12345'), 18446744071562012346n, 'a rewrite of the same size is seen');
  t.equal(fs.readdirSync(path.join(ownDir, 'by-file')).length, 2, 'and indexed anew');
  for (const junk of ['', 'not a hash', 'f'.repeat(63)]) {
    for (const e of fs.readdirSync(path.join(ownDir, 'by-file'))) fs.writeFileSync(path.join(ownDir, 'by-file', e), junk);
    t.equal(Profile.load(own, { packedCache: ownDir }).symbol('sym_12345'), 18446744071562012346n, `an index entry holding ${JSON.stringify(junk)} is ignored`);
  }
});

t.test('small profiles are not cached', async (t) => {
  const smallDir = path.join(tmp, 'small-cache');
  Profile.load(SMALL, { packedCache: smallDir });
  t.notOk(fs.existsSync(smallDir));
});
