/**
 * Profile (ISF JSON) files: a profile is a file from outside, possibly hostile (downloaded, shared).
 * Parsing, validation, the banner scan that picks a profile without parsing it, and then every
 * lookup the kernel helpers make: type sizes, field paths through anonymous members and arrays,
 * symbols, enum constants. Sizes and offsets that come back must be safe integers: they become
 * read lengths and addresses.
 */
import * as fs from 'node:fs';
import { VmiError } from '../../../lib/errors';
import { Profile, bannerOfProfileText, serializeProfile } from '../../../lib/kernel/profile';
import { syntheticProfile } from '../../helpers/synthetic-kernel';
import { sourcePath, type Harness } from '../engine';

const FIXTURE = sourcePath('test', 'fixtures', 'isf', 'small.json');

function safe(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`profile lookup gave an unusable ${what}: ${n}`);
}

function tryLookup(f: () => void): void {
  try {
    f();
  } catch (err) {
    if (!(err instanceof VmiError)) throw err;
  }
}

export const profileIsf: Harness = {
  name: 'profile-isf',
  maxLength: 1 << 17,
  seeds: () => [Buffer.from(serializeProfile(syntheticProfile().doc), 'utf8'), fs.readFileSync(FIXTURE)],
  dictionary: ['{', '}', '[', ']', '"', ',', ':', '"kind": "struct"', '"kind": "array"', '"kind": "pointer"', '"kind": "bitfield"', '"kind": "base"',
    '"count": ', '"offset": ', '"size": ', '"subtype": ', '"type": ', '"fields": {', '"anonymous": true', '"unnamed_field_0"', '"address": ',
    '"constant_data": "', '"__proto__"', '"constructor"', '"metadata"', '"linux_banner"', '"banner": "', '18446744073709551615',
    '-9223372036854775808', '1e308', '"format": "6.2.0"'].map((s) => Buffer.from(s, 'utf8')),
  run(input) {
    const text = input.toString('utf8');
    bannerOfProfileText(text);
    let p: Profile;
    try {
      p = Profile.fromJson(text, 'fuzz');
    } catch (err) {
      if (err instanceof VmiError) return;
      throw err;
    }
    void p.banner;
    safe('pointer size', p.pointerSize);
    void p.counts;
    const doc = p.doc;
    let listed = 0;
    for (const name of Object.keys(doc.user_types).slice(0, 200)) {
      tryLookup(() => safe(`sizeof ${name}`, p.typeSize(name)));
      // fields() sorts with localeCompare, slow enough to dominate: a few types through it, the
      // rest field by field
      if (listed++ < 4) tryLookup(() => p.fields(name).forEach((f) => safe(`size of ${name}.${f.name}`, f.size)));
      tryLookup(() => {
        for (const fname of Object.keys(doc.user_types[name]!.fields)) {
          const f = p.field(name, fname);
          safe(`offset of ${name}.${f.name}`, f.offset);
          safe(`size of ${name}.${f.name}`, f.size);
          // one step into arrays and embedded structs, as helpers name them
          for (const sub of [f.name, `${f.name}[1]`, `${f.name}[0].nr`, `${f.name}.next`, `${f.name}.inum`]) {
            // hasField first: a MissingSymbolError per absent path would cost more than the rest
            if (p.hasField(name, sub)) tryLookup(() => {
              const got = p.field(name, sub);
              safe(`offset of ${name}.${sub}`, got.offset);
              safe(`size of ${name}.${sub}`, got.size);
            });
          }
        }
      });
    }
    for (const name of Object.keys(doc.symbols).slice(0, 200)) {
      tryLookup(() => {
        p.symbol(name);
        const t = p.symbolType(name);
        if (t) safe(`sizeof symbol ${name}`, p.sizeOf(t));
      });
    }
    for (const name of Object.keys(doc.enums).slice(0, 50)) {
      for (const c of Object.keys(doc.enums[name]!.constants).slice(0, 50)) tryLookup(() => p.enumConstant(name, c));
    }
    tryLookup(() => p.enumConstant(undefined, 'CGRP_FROZEN'));
    for (const [s, f] of [['task_struct', 'tasks'], ['mm_struct', 'pgd'], ['pid', 'numbers[1].nr'], ['qstr', 'len'], ['uts_namespace', 'name.nodename']]) {
      tryLookup(() => {
        const got = p.field(s!, f!);
        safe(`offset of ${s}.${f}`, got.offset);
        safe(`size of ${s}.${f}`, got.size);
      });
    }
  },
};
