/**
 * A profile loaded from a file is kept packed (compact.ts); every lookup must answer exactly as
 * the same document held as objects does. Checked on the hand-written ISF fixture, on a document
 * with awkward names (`__proto__`, non-ASCII, prefixes of each other, unsigned 64-bit enum values)
 * and, when present, on the Debian 6.1 profile in profiles/.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { Profile, parseProfile, serializeProfile } from '../../lib/kernel/profile';

const SMALL = path.join(__dirname, '..', 'fixtures', 'isf', 'small.json');
const PROFILES = path.join(__dirname, '..', '..', 'profiles');
// the one `make vm` built for the test VM's kernel: Debian moves to each new 6.1 point release
const DEBIAN = fs.readdirSync(PROFILES).filter((f) => /^linux-6\.1\.\d+-\d+-cloud-amd64-.*\.json$/.test(f)).sort().map((f) => path.join(PROFILES, f)).pop();

const AWKWARD = JSON.stringify({
  metadata: { format: '6.2.0', producer: { name: 'test' }, linux: { banner: 'Linux version 9.9.9-test\n' } },
  extra_section: { kept: true },
  base_types: { int: { kind: 'int', size: 4, signed: true }, pointer: { kind: 'int', size: 8 }, char: { kind: 'char', size: 1, signed: true } },
  user_types: {
    ['__proto__']: { kind: 'struct', size: 8, fields: { constructor: { offset: 0, type: { kind: 'base', name: 'int' } } } },
    a: { kind: 'struct', size: 16, fields: { unnamed_field_0: { offset: 8, anonymous: true, type: { kind: 'union', name: 'ab' } }, x: { offset: 0, type: { kind: 'base', name: 'int' } } } },
    ab: { kind: 'union', size: 8, fields: { y: { offset: 0, type: { kind: 'pointer', subtype: { kind: 'struct', name: 'a' } } } } },
    'ä_struct': { kind: 'struct', size: 4, fields: { 'ü': { offset: 0, type: { kind: 'array', count: 4, subtype: { kind: 'base', name: 'char' } } } } },
  },
  enums: {
    e1: { size: 8, base: 'long unsigned int', constants: { BIG: 'U64_MAX', A: 1, ['__proto__']: 2 } },
    e2: { size: 4, constants: { A: 7, B: -3 } },
  },
  symbols: {
    a: { address: 'KERNEL_BASE', type: { kind: 'struct', name: 'a' } },
    ab: { address: 0 },
    abc: { address: 'U64_MAX', constant_data: 'AAEC', linkage_name: 'abc' },
    ['__proto__']: { address: 5 },
    'ÿ': { address: 6 },
    '': { address: 7 },
  },
}).replace(/"U64_MAX"/g, '18446744073709551615').replace('"KERNEL_BASE"', '18446744071562067968');

function compare(t: Test, text: string, source: string): void {
  const packed = Profile.fromJson(text, source);
  const plain = new Profile(parseProfile(text, source), source);
  t.same(packed.counts, plain.counts, 'counts');
  t.equal(packed.banner, plain.banner, 'banner');
  t.equal(packed.pointerSize, plain.pointerSize, 'pointer size');
  t.same(packed.metadata, plain.metadata, 'metadata');
  const doc = parseProfile(text, source);
  const names = packed.symbolNames();
  t.same(names, Object.keys(doc.symbols), 'symbol names in document order');
  let bad = 0;
  for (const name of names) {
    if (packed.symbol(name) !== plain.symbol(name) || !packed.hasSymbol(name)) bad++;
    else if (JSON.stringify(packed.symbolType(name)) !== JSON.stringify(plain.symbolType(name))) bad++;
  }
  t.equal(bad, 0, `all ${names.length} symbols have the same address and type`);
  t.same(packed.symbolInfo(names[names.length - 1]), plain.symbolInfo(names[names.length - 1]), 'a symbol entry');
  for (const missing of ['', 'no such symbol', `${names[0]}x`, names[0].slice(0, -1)]) {
    if (plain.hasSymbol(missing)) continue;
    t.notOk(packed.hasSymbol(missing), `no symbol ${JSON.stringify(missing)}`);
    t.throws(() => packed.symbol(missing));
  }
  bad = 0;
  for (const name of Object.keys(doc.user_types)) {
    if (!packed.hasType(name) || packed.typeSize(name) !== plain.typeSize(name)) bad++;
    else if (JSON.stringify(packed.fields(name)) !== JSON.stringify(plain.fields(name))) bad++;
    else if (JSON.stringify(packed.userType(name)) !== JSON.stringify(plain.userType(name))) bad++;
  }
  t.equal(bad, 0, `all ${Object.keys(doc.user_types).length} structs have the same layout`);
  bad = 0;
  for (const name of Object.keys(doc.enums)) {
    const e = packed.enum(name);
    t.same(e, plain.enum(name));
    for (const c of Object.keys(e.constants)) {
      if (packed.enumConstant(name, c) !== plain.enumConstant(name, c)) bad++;
      if (packed.enumConstant(undefined, c) !== plain.enumConstant(undefined, c)) bad++;
    }
  }
  t.equal(bad, 0, 'enum constants');
  t.equal(packed.hasEnumConstant(undefined, 'NO_SUCH_CONSTANT'), false);
  t.same(packed.doc, plain.doc, 'the rebuilt document is the document');
  t.equal(serializeProfile(packed.doc), serializeProfile(plain.doc), 'and serializes the same');
}

t.test('the ISF fixture', async (t) => compare(t, fs.readFileSync(SMALL, 'utf8'), SMALL));

t.test('awkward names and values', async (t) => {
  compare(t, AWKWARD, 'awkward');
  const p = Profile.fromJson(AWKWARD, 'awkward');
  t.equal(p.symbol('abc'), 18446744073709551615n);
  t.equal(p.symbol('__proto__'), 5n);
  t.equal(p.symbol(''), 7n);
  t.equal(p.enumConstant('e1', 'BIG'), 18446744073709551615n);
  t.equal(p.enumConstant(undefined, 'A'), 1n, 'the first enum wins');
  t.equal(p.enumConstant(undefined, 'B'), -3n);
  t.equal(p.fieldOffset('a', 'y'), 8, 'through an anonymous member');
  t.equal(p.fieldOffset('__proto__', 'constructor'), 0);
  t.same(p.fields('ä_struct').map((f) => f.name), ['ü']);
  t.equal(p.symbolInfo('abc')?.constant_data, 'AAEC');
  t.same((p.doc as unknown as Record<string, unknown>).extra_section, { kept: true }, 'unknown top-level members are kept');
});

t.test('a change made through doc is seen, as with any document-backed profile', async (t) => {
  const p = Profile.fromJson(AWKWARD, 'awkward');
  p.doc.user_types.added = { kind: 'struct', size: 4, fields: { z: { offset: 0, type: { kind: 'base', name: 'int' } } } };
  t.equal(p.fieldOffset('added', 'z'), 0);
});

t.test('the Debian 6.1 profile', { skip: DEBIAN || process.env.CI ? false : `no Debian 6.1 profile in ${PROFILES} (make vm builds it)` }, async (t) => {
  if (!DEBIAN) return t.fail(`no Debian 6.1 profile in ${PROFILES}: make vm builds it before the tests`);
  t.comment(`comparing ${path.basename(DEBIAN)}`);
  compare(t, fs.readFileSync(DEBIAN, 'utf8'), DEBIAN);
});
