/**
 * Choosing a profile by the running kernel's banner, and refusing one made for another kernel.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import t from 'tap';
import { ProfileMismatchError, VmiError } from '../../lib/errors';
import { assertProfileMatches, bannerOfProfileText, findProfile, listProfiles, loadProfileFor, Profile, readProfileBanner } from '../../lib/kernel/profile';
import { scanProfileBanner } from '../../lib/kernel/profile/banner-file';
import { readProfileText } from '../../lib/kernel/profile/load';

const SMALL = path.join(__dirname, '..', 'fixtures', 'isf', 'small.json');
const SMALL_BANNER =
  'Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)';
const OTHER_BANNER = 'Linux version 6.12.0-1-amd64 (someone@example) (gcc) #1 SMP PREEMPT_DYNAMIC Debian 6.12.1-1';

function withBanner(banner: string, where: 'symbol' | 'metadata'): string {
  const d = JSON.parse(fs.readFileSync(SMALL, 'utf8')) as Record<string, any>;
  if (where === 'metadata') {
    delete d.symbols.linux_banner;
    d.metadata.linux.banner = banner + '\n';
  } else {
    d.symbols.linux_banner.constant_data = Buffer.from(banner + '\n\0').toString('base64');
  }
  return JSON.stringify(d, null, 2);
}

const dirA = fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-prof-a-'));
const dirB = fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-prof-b-'));
t.teardown(() => {
  fs.rmSync(dirA, { recursive: true, force: true });
  fs.rmSync(dirB, { recursive: true, force: true });
});
fs.writeFileSync(path.join(dirA, 'other.json'), withBanner(OTHER_BANNER, 'symbol'));
fs.writeFileSync(path.join(dirA, 'garbage.json'), '{ this is not json');
fs.writeFileSync(path.join(dirA, 'notes.txt'), SMALL_BANNER);
fs.copyFileSync(SMALL, path.join(dirB, 'debian-6.1.0-56.json'));
fs.writeFileSync(path.join(dirB, 'meta.json.gz'), zlib.gzipSync(withBanner('Linux version 5.10.0-33-amd64 (x) #1 SMP Debian', 'metadata')));

t.test('reads each candidate banner without loading the whole profile', (t) => {
  t.equal(readProfileBanner(SMALL), SMALL_BANNER);
  t.equal(readProfileBanner(path.join(dirB, 'meta.json.gz')), 'Linux version 5.10.0-33-amd64 (x) #1 SMP Debian', 'gzip, metadata.linux.banner');
  const all = listProfiles([dirA, dirB, path.join(dirA, 'missing')]);
  t.same(
    all.map((c) => [path.basename(c.path), c.banner]),
    [
      ['garbage.json', undefined],
      ['other.json', OTHER_BANNER],
      ['debian-6.1.0-56.json', SMALL_BANNER],
      ['meta.json.gz', 'Linux version 5.10.0-33-amd64 (x) #1 SMP Debian'],
    ],
    'only .json/.json.gz files, a missing directory is skipped',
  );
  t.end();
});

t.test('findProfile picks the file whose banner matches', (t) => {
  const p = findProfile(SMALL_BANNER + '\n\0\0', [dirA, dirB]);
  t.equal(p.source, path.join(dirB, 'debian-6.1.0-56.json'), 'trailing newline and NULs of the guest banner are ignored');
  t.equal(p.symbol('init_task'), 0xffffffff82a1aa40n);
  t.equal(findProfile(OTHER_BANNER, [dirB, dirA]).source, path.join(dirA, 'other.json'));
  t.equal(findProfile('Linux version 5.10.0-33-amd64 (x) #1 SMP Debian', [dirB]).banner, 'Linux version 5.10.0-33-amd64 (x) #1 SMP Debian');
  t.end();
});

t.test('no match is an error that says what was searched', (t) => {
  try {
    findProfile('Linux version 4.19.0 (nobody) #1', [dirA, dirB]);
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof VmiError);
    t.equal((err as VmiError).code, 'ENOPROFILE');
    t.match((err as Error).message, /Linux version 4\.19\.0/);
    t.match((err as Error).message, /4 profile files, 3 with a banner/);
    t.match((err as Error).message, /vmictl profile build/);
  }
  t.end();
});

t.test('a specific profile for another kernel is refused, naming both banners', (t) => {
  const other = path.join(dirA, 'other.json');
  try {
    loadProfileFor(other, SMALL_BANNER + '\n');
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof ProfileMismatchError);
    t.equal((err as ProfileMismatchError).expected, OTHER_BANNER);
    t.equal((err as ProfileMismatchError).found, SMALL_BANNER);
    t.match((err as Error).message, /6\.12\.0-1-amd64/);
    t.match((err as Error).message, /6\.1\.0-56-cloud-amd64/);
  }
  t.equal(loadProfileFor(SMALL, SMALL_BANNER).banner, SMALL_BANNER);
  const d = JSON.parse(fs.readFileSync(SMALL, 'utf8')) as Record<string, any>;
  delete d.symbols.linux_banner;
  t.equal(assertProfileMatches(Profile.fromJson(JSON.stringify(d)), OTHER_BANNER), false, 'a profile without a banner cannot be checked');
  t.equal(assertProfileMatches(Profile.load(SMALL), SMALL_BANNER), true);
  t.end();
});

t.test('the banner is read from as little of the file as it takes, and found where the whole text would find it', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-prof-scan-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const MiB = 1024 * 1024;
  const write = (name: string, text: string) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  };
  // metadata first, then megabytes the scan never needs
  const early = write('early.json', `{"metadata": {"linux": {"banner": "${OTHER_BANNER}\\n"}}, "pad": "${' '.repeat(8 * MiB)}", "symbols": {}}`);
  const r = scanProfileBanner(early);
  t.equal(r.banner, OTHER_BANNER);
  t.ok(r.bytesRead <= MiB, `read ${r.bytesRead} bytes of ${fs.statSync(early).size}`);

  // no banner in the metadata: the linux_banner symbol, wherever it is, its key or object across a chunk boundary
  const sym = (banner: string) => `{"address": 1, "constant_data": "${Buffer.from(banner + '\n\0').toString('base64')}"}`;
  for (const at of [MiB - 20, MiB - 5, MiB + 3, 2 * MiB - 40]) {
    const head = '{"metadata": {"linux": {}}, "pad": "';
    const text = `${head}${' '.repeat(at - head.length - '", "symbols": {'.length)}", "symbols": {"linux_banner": ${sym(SMALL_BANNER)}}}`;
    t.equal(text.indexOf('"linux_banner"'), at, 'the key is where the case wants it');
    const file = write(`late-${at}.json`, text);
    t.equal(scanProfileBanner(file).banner, SMALL_BANNER, `symbol at ${at}`);
  }

  // the same answer as the whole text gives, for every kind of file
  const cases: Array<[string, string]> = [
    ['symbol-only.json', withBanner(OTHER_BANNER, 'symbol')],
    ['metadata.json', withBanner(OTHER_BANNER, 'metadata')],
    ['both.json', JSON.stringify({ symbols: { linux_banner: JSON.parse(sym(SMALL_BANNER)) }, metadata: { linux: { banner: OTHER_BANNER } } })],
    ['symbol-first.json', JSON.stringify({ symbols: { linux_banner: JSON.parse(sym(SMALL_BANNER)) }, metadata: { linux: {} } })],
    ['not-objects.json', '{"metadata": "x", "linux_banner": 3, "metadata": {"linux": {"banner": "Linux version 1"}}}'],
    ['escaped.json', '{"metadata": {"note": "a \\" } { \\\\", "linux": {"banner": "Linux version 2 \\u00e9"}}}'],
    ['none.json', '{"metadata": {}, "symbols": {}}'],
    ['garbage.json', '{ this is not json'],
    ['truncated.json', '{"metadata": {"linux": {"banner": "Linux'],
    ['empty.json', ''],
  ];
  for (const [name, text] of cases) {
    const file = write(name, text);
    t.equal(readProfileBanner(file), bannerOfProfileText(readProfileText(file)), name);
  }
  const found = (name: string) => readProfileBanner(path.join(dir, name));
  t.equal(found('both.json'), OTHER_BANNER, 'the metadata wins over the symbol');
  t.equal(found('symbol-first.json'), SMALL_BANNER, 'a symbol before metadata without a banner');
  t.equal(found('not-objects.json'), 'Linux version 1', 'members whose values are not objects are passed over');
  t.equal(found('escaped.json'), 'Linux version 2 \u00e9', 'braces and quotes inside strings');
  t.equal(found('truncated.json'), undefined);
  const gz = path.join(dir, 'meta.json.gz');
  fs.writeFileSync(gz, zlib.gzipSync(withBanner(OTHER_BANNER, 'symbol')));
  t.equal(readProfileBanner(gz), OTHER_BANNER, 'gzip');
  t.equal(readProfileBanner(SMALL), bannerOfProfileText(readProfileText(SMALL)), 'the small fixture');
  t.end();
});
