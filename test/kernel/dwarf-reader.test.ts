/**
 * The DWARF reader against the compiler's own answer: test/fixtures/dwarf/layout.c is compiled
 * with several compilers and DWARF flavours, run to print offsetof/sizeof of every member, and
 * each printed fact is compared with what our reader extracted from the binary.
 */
import t from 'tap';
import { ElfFile, extractTypes, readDwarf, readDwarfSections, SHF_COMPRESSED, type DwarfModel } from '../../lib/kernel/dwarf';
import { Profile, modelToIsf, dict, type IsfSymbol, type TypeRef } from '../../lib/kernel/profile';
import { VARIANTS, compileFixture, isfName, runFixture } from '../fixtures/dwarf/fixture';

function profileOf(model: DwarfModel): Profile {
  const symbols = dict<IsfSymbol>();
  for (const [name, v] of model.variables) if (v.address !== undefined) symbols[name] = { address: v.address, type: v.type };
  return new Profile({ metadata: { format: '6.2.0' }, ...modelToIsf(model), symbols }, 'fixture');
}

for (const variant of VARIANTS) {
  const built = compileFixture(variant);
  // gcc is required (it is on every machine the project uses); other compilers are optional.
  const skip = !built.ok && variant.cc !== 'gcc' ? built.reason : false;
  t.test(variant.name, { skip }, (t) => {
    if (!built.ok) {
      t.fail(built.reason);
      t.end();
      return;
    }
    const facts = runFixture(built.binary);
    const elf = ElfFile.open(built.binary);
    t.teardown(() => elf.close());

    if (variant.flags.some((f) => f.startsWith('-gz'))) {
      const info = elf.section('.debug_info');
      t.ok(info && (info.flags & SHF_COMPRESSED) !== 0n, '.debug_info really is compressed in this variant');
    }
    if (variant.flags.includes('-fdebug-types-section') && variant.flags.includes('-gdwarf-4')) {
      t.ok(elf.section('.debug_types'), 'the DWARF 4 type units are in .debug_types');
    }

    const model = readDwarf(elf);
    const expectVersion = variant.flags.includes('-gdwarf-4') ? 4 : 5;
    t.same(model.stats.versions, [expectVersion], `units are DWARF ${expectVersion}`);
    t.equal(model.stats.unresolved, 0, 'every type reference was followed');
    t.equal(model.pointerSize, 8, 'pointer size');
    const p = profileOf(model);

    t.test('struct and union sizes', (t) => {
      for (const [type, size] of facts.sizes) t.equal(p.typeSize(isfName(type)), size, `sizeof(${type})`);
      t.end();
    });

    t.test('member offsets and sizes (through nested and anonymous members)', (t) => {
      t.ok(facts.fields.length > 50, 'the fixture printed its members');
      for (const f of facts.fields) {
        const got = p.field(isfName(f.type), f.path);
        t.equal(got.offset, f.offset, `offsetof(${f.type}, ${f.path})`);
        t.equal(got.size, f.size, `sizeof(${f.type}.${f.path})`);
      }
      t.end();
    });

    t.test('array element counts, multi-dimensional arrays', (t) => {
      for (const c of facts.counts) {
        const ty = p.field(isfName(c.type), c.path).type;
        t.equal(ty.kind, 'array', `${c.type}.${c.path} is an array`);
        if (ty.kind === 'array') t.equal(ty.count, c.count, `count of ${c.type}.${c.path}`);
      }
      t.same(p.field('task_like', 'matrix').type, {
        kind: 'array',
        count: 3,
        subtype: { kind: 'array', count: 5, subtype: { kind: 'base', name: 'int' } },
      });
      const trailing = p.field('task_like', 'trailing').type;
      t.same(trailing, { kind: 'array', count: 0, subtype: { kind: 'base', name: 'int' } }, 'flexible array member has count 0');
      const zero = p.field('zero_len', 'data').type;
      t.same(zero, { kind: 'array', count: 0, subtype: { kind: 'base', name: 'char' } }, 'zero-length array has count 0');
      t.end();
    });

    t.test('bitfields match the bytes the program wrote', (t) => {
      t.equal(facts.bits.length, 8);
      for (const b of facts.bits) {
        const f = p.field(isfName(b.type), b.field);
        t.equal(f.type.kind, 'bitfield', `${b.field} is a bitfield`);
        if (f.type.kind !== 'bitfield') continue;
        const expected = Buffer.alloc(b.bytes.length);
        const first = f.offset * 8 + f.type.bit_position;
        for (let bit = first; bit < first + f.type.bit_length; bit++) expected[bit >> 3] |= 1 << (bit & 7);
        t.equal(expected.toString('hex'), b.bytes.toString('hex'), `bits of ${b.type}.${b.field}`);
      }
      const g = p.field('flags_like', 'g').type;
      t.same(g.kind === 'bitfield' ? g.type : undefined, { kind: 'enum', name: 'mode' }, 'an enum bitfield keeps its enum type');
      t.end();
    });

    t.test('pointers, function pointers, qualifiers, typedefs', (t) => {
      const ty = (path: string): TypeRef => p.field('task_like', path).type;
      t.same(ty('real_parent'), { kind: 'pointer', subtype: { kind: 'struct', name: 'task_like' } }, 'const struct pointer');
      t.same(ty('tasks'), { kind: 'struct', name: 'list_head' });
      t.same(p.field('list_head', 'next').type, { kind: 'pointer', subtype: { kind: 'struct', name: 'list_head' } }, 'self-referencing struct');
      t.same(ty('handler'), { kind: 'pointer', subtype: { kind: 'function' } }, 'typedef of a function pointer');
      t.same(ty('callbacks'), { kind: 'array', count: 4, subtype: { kind: 'pointer', subtype: { kind: 'function' } } }, 'array of function pointers');
      t.same(ty('opaque'), { kind: 'pointer', subtype: { kind: 'base', name: 'void' } }, 'void *');
      t.same(ty('argv'), { kind: 'pointer', subtype: { kind: 'pointer', subtype: { kind: 'base', name: 'char' } } }, 'char **');
      const q = ty('qualified');
      t.equal(q.kind, 'base', 'const volatile typedef resolves to the base type');
      // gcc says "long long unsigned int", clang "unsigned long long"
      if (q.kind === 'base') t.match(p.doc.base_types[q.name], { kind: 'int', size: 8, signed: false });
      t.same(ty('atomic_counter'), { kind: 'base', name: 'int' }, '_Atomic is transparent');
      t.same(ty('restricted'), { kind: 'pointer', subtype: { kind: 'base', name: 'int' } }, 'restrict is transparent');
      t.same(ty('__state').kind, 'base', 'volatile is transparent');
      t.same(p.field('pid_like', 'count').type, { kind: 'struct', name: 'atomic_like_t' }, 'typedef of an anonymous struct is named after the typedef');
      t.same(p.field('uses_declared', 'p').type, { kind: 'pointer', subtype: { kind: 'struct', name: 'declared_only' } });
      t.notOk(p.hasType('declared_only'), 'a struct that is only declared has no definition');
      t.end();
    });

    t.test('anonymous members are kept like dwarf2json keeps them', (t) => {
      const tl = p.userType('task_like');
      const anon = Object.entries(tl.fields).filter(([, f]) => f.anonymous);
      t.same(anon.map(([n]) => n).sort(), ['unnamed_field_0', 'unnamed_field_1']);
      const u = tl.fields.unnamed_field_0;
      t.equal(u.offset, p.fieldOffset('task_like', 'both'));
      t.equal(u.type.kind, 'union');
      if (u.type.kind === 'union') t.match(u.type.name, /^unnamed_[0-9a-f]{16}$/);
      t.notOk('pid' in tl.fields, 'pid is not copied into the parent');
      t.ok(p.hasField('task_like', 'pid'), 'but field lookup sees through');
      t.ok(p.hasField('task_like', 'anon_c'), 'two levels deep');
      t.equal(p.firstField('task_like', ['state', '__state']).name, '__state', 'firstField picks the one that exists');
      t.notOk(p.hasField('task_like', 'nope'));
      t.throws(() => p.field('task_like', 'nope'), { code: 'ENOSYM' });
      t.throws(() => p.field('task_like', 'thread_pid.level'), { code: 'ENOSYM' }, 'paths do not dereference pointers');
      t.end();
    });

    t.test('enums', (t) => {
      for (const e of facts.enums) t.equal(p.enumConstant(e.enumName, e.name), e.value, `${e.enumName}.${e.name}`);
      t.equal(p.enum('task_state').base, 'int', 'an enum with a negative constant has a signed base');
      t.equal(p.enum('big_flags').base, 'unsigned int', 'an unsigned enum has an unsigned base');
      t.equal(p.enumConstant(undefined, 'ANON_TWO'), 2n, 'anonymous enums are kept (under a hash name)');
      t.end();
    });

    t.test('global variables: DW_OP_addr locations and types', (t) => {
      for (const [name, addr] of facts.variables) t.equal(p.symbol(name), addr, `&${name}`);
      t.same(p.symbolType('init_task_like'), { kind: 'struct', name: 'task_like' });
      t.same(p.symbolType('global_ptr'), { kind: 'pointer', subtype: { kind: 'struct', name: 'uses_declared' } });
      const banner = p.symbolType('linux_banner');
      t.equal(banner?.kind, 'array');
      t.end();
    });

    t.test('reading .rodata at a symbol address', (t) => {
      const addr = facts.variables.get('linux_banner')!;
      const bytes = elf.readVirtual(addr, 14);
      t.equal(bytes?.toString('latin1'), 'Linux version ');
      t.equal(elf.readVirtual(0x10n, 4), undefined, 'an address outside every section');
      t.end();
    });
    t.end();
  });
}

t.test('a relocatable object (like a kernel module) gives the same types as the linked program', (t) => {
  const linked = compileFixture({ name: 'linked', cc: 'gcc', flags: ['-gdwarf-5'] });
  const object = compileFixture({ name: 'object', cc: 'gcc', flags: ['-gdwarf-5', '-c'] });
  if (!linked.ok || !object.ok) {
    t.fail(!linked.ok ? linked.reason : !object.ok ? object.reason : '');
    t.end();
    return;
  }
  const a = ElfFile.open(linked.binary);
  const b = ElfFile.open(object.binary);
  t.teardown(() => {
    a.close();
    b.close();
  });
  t.equal(b.type, 1, 'the object is ET_REL');
  t.ok(b.sections.some((s) => s.name === '.rela.debug_info'), 'its .debug_info has relocations');
  const ma = readDwarf(a);
  const mb = readDwarf(b);
  // Without its relocations the object's string references are all placeholders.
  const raw = readDwarfSections(b);
  raw.info = b.sectionData('.debug_info');
  const names = (m: DwarfModel): string[] => [...m.userTypes.keys()].sort();
  let unrelocated: string[] = [];
  try {
    unrelocated = names(extractTypes(raw));
  } catch {
    // equally proves the point
  }
  t.notSame(unrelocated, names(ma), 'the relocations matter');
  t.same([...mb.userTypes.keys()].sort(), [...ma.userTypes.keys()].sort(), 'same struct names (strings resolved through relocations)');
  t.same(mb.userTypes.get('task_like'), ma.userTypes.get('task_like'));
  t.same(mb.enums, ma.enums);
  t.end();
});
