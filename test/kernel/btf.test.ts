/**
 * The BTF reader against the compiler's own answer: the DWARF fixture (layout.c) is compiled with
 * gcc, `pahole -J` turns its DWARF into a .BTF section (as the kernel build does for vmlinux), and
 * the profile made from that BTF must give the offsetof/sizeof the program prints, the bits it
 * wrote for each bitfield, the enum values, and the same types as the DWARF-made profile.
 */
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { ElfFile, readDwarf } from '../../lib/kernel/dwarf';
import { BTF_KIND, parseBtf } from '../../lib/kernel/btf/parse';
import { btfToModel } from '../../lib/kernel/btf/model';
import { Profile, modelToIsf, dict, type IsfSymbol } from '../../lib/kernel/profile';
import type { DwarfModel } from '../../lib/kernel/dwarf';
import { compileFixture, isfName, runFixture } from '../fixtures/dwarf/fixture';
import { ValidationError } from '../../lib/errors';

function profileOf(model: DwarfModel, name: string): Profile {
  return new Profile({ metadata: { format: '6.2.0' }, ...modelToIsf(model), symbols: dict<IsfSymbol>() }, name);
}

const built = compileFixture({ name: 'gcc dwarf4 for pahole', cc: 'gcc', flags: ['-gdwarf-4'] });
const pahole = spawnSync('pahole', ['--version'], { encoding: 'utf8' });

t.test('BTF made by pahole -J from a gcc -g fixture', (t) => {
  if (!built.ok) return t.fail(built.reason), t.end();
  if (pahole.status !== 0) return t.fail('pahole is not installed (dwarves, make setup)'), t.end();
  const r = spawnSync('pahole', ['-J', built.binary], { encoding: 'utf8' });
  t.equal(r.status, 0, `pahole -J: ${r.stderr}`);
  const facts = runFixture(built.binary);
  const elf = ElfFile.open(built.binary);
  t.teardown(() => elf.close());
  const sec = elf.section('.BTF');
  if (!sec) return t.fail('no .BTF section after pahole -J'), t.end();
  const btf = parseBtf(elf.sectionData(sec));
  const kinds = new Set(btf.types.slice(1).map((x) => x!.kind));
  for (const k of ['INT', 'PTR', 'ARRAY', 'STRUCT', 'UNION', 'ENUM', 'TYPEDEF', 'FUNC_PROTO'] as const) t.ok(kinds.has(BTF_KIND[k]), `has ${k} records`);
  const model = btfToModel(btf);
  t.equal(model.btfStats.unresolved, 0, 'every type reference followed');
  const p = profileOf(model, 'btf');
  const d = profileOf(readDwarf(elf), 'dwarf');

  for (const [type, size] of facts.sizes) t.equal(p.typeSize(isfName(type)), size, `sizeof(${type})`);
  t.ok(facts.fields.length > 50, 'the fixture printed its members');
  for (const f of facts.fields) {
    const got = p.field(isfName(f.type), f.path);
    t.equal(got.offset, f.offset, `offsetof(${f.type}, ${f.path})`);
    t.equal(got.size, f.size, `sizeof(${f.type}.${f.path})`);
    const dw = d.field(isfName(f.type), f.path);
    // pahole writes a multi-dimensional array as one flat array: compare those by size only
    const shape = (x: typeof got.type): string => JSON.stringify(x).replace(/unnamed_[0-9a-f]+/g, 'unnamed');
    if (dw.type.kind === 'array' && dw.type.subtype.kind === 'array') t.equal(got.type.kind, 'array', `${f.type}.${f.path}: an array (flattened)`);
    else t.equal(shape(got.type), shape(dw.type), `${f.type}.${f.path}: same type as from DWARF`);
  }
  for (const b of facts.bits) {
    const f = p.field(isfName(b.type), b.field);
    if (f.type.kind !== 'bitfield') { t.fail(`${b.field} is not a bitfield`); continue; }
    const expected = Buffer.alloc(b.bytes.length);
    const first = f.offset * 8 + f.type.bit_position;
    for (let bit = first; bit < first + f.type.bit_length; bit++) expected[bit >> 3] |= 1 << (bit & 7);
    t.equal(expected.toString('hex'), b.bytes.toString('hex'), `bits of ${b.type}.${b.field}`);
  }
  for (const e of facts.enums) t.equal(p.enumConstant(undefined, e.name), e.value, `${e.name} = ${e.value}`);
  t.same(p.field('pid_like', 'count').type, { kind: 'struct', name: 'atomic_like_t' }, 'typedef of an anonymous struct is named after the typedef');
  t.end();
});

t.test('hostile BTF is refused with a reason', (t) => {
  const header = (over: Partial<Record<string, number>> = {}): Buffer => {
    const b = Buffer.alloc(24 + 12 + 4);
    b.writeUInt16LE(over.magic ?? 0xeb9f, 0);
    b[2] = over.version ?? 1;
    b.writeUInt32LE(24, 4);
    b.writeUInt32LE(0, 8);
    b.writeUInt32LE(over.typeLen ?? 12, 12);
    b.writeUInt32LE(over.strOff ?? 12, 16);
    b.writeUInt32LE(over.strLen ?? 4, 20);
    b.writeUInt32LE(over.kind ?? (2 << 24), 24 + 4); // PTR to void
    return b;
  };
  t.equal(parseBtf(header()).types.length, 2, 'a minimal blob parses');
  t.throws(() => parseBtf(header({ magic: 0x1234 })), ValidationError, 'bad magic');
  t.throws(() => parseBtf(header({ version: 2 })), ValidationError, 'unknown version');
  t.throws(() => parseBtf(header({ strLen: 4096 })), ValidationError, 'sections beyond the blob');
  t.throws(() => parseBtf(header({ kind: 4 << 24 | 1000 })), ValidationError, 'members beyond the type section');
  t.throws(() => parseBtf(header({ kind: 31 << 24 })), ValidationError, 'unknown kind');
  t.end();
});
