/**
 * Hand-assembled DWARF 5 for the forms compilers rarely emit in small programs (strx2,
 * implicit_const, data16, indirect, ref_udata, ref_addr across units, ref_sig8 into a type unit,
 * line_strp), and malformed input: it must fail with a VmiError, never hang or crash.
 */
import t from 'tap';
import { ValidationError, VmiError } from '../../lib/errors';
import { extractTypes, type DwarfSections } from '../../lib/kernel/dwarf';
import { DW_AT, DW_FORM, DW_TAG } from '../../lib/kernel/dwarf/constants';

/** A little byte assembler. */
class Asm {
  readonly b: number[] = [];
  get pos(): number {
    return this.b.length;
  }
  u8(v: number): this {
    this.b.push(v & 0xff);
    return this;
  }
  u16(v: number): this {
    return this.u8(v).u8(v >> 8);
  }
  u32(v: number): this {
    return this.u16(v & 0xffff).u16(v >>> 16);
  }
  u64(v: bigint): this {
    for (let i = 0n; i < 8n; i++) this.u8(Number((v >> (8n * i)) & 0xffn));
    return this;
  }
  uleb(v: number): this {
    do {
      let byte = v & 0x7f;
      v = Math.floor(v / 128);
      if (v) byte |= 0x80;
      this.u8(byte);
    } while (v);
    return this;
  }
  sleb(v: number): this {
    for (;;) {
      const byte = v & 0x7f;
      v >>= 7;
      if ((v === 0 && !(byte & 0x40)) || (v === -1 && byte & 0x40)) return this.u8(byte);
      this.u8(byte | 0x80);
    }
  }
  str(s: string): this {
    for (const c of Buffer.from(s, 'utf8')) this.u8(c);
    return this.u8(0);
  }
  patch32(at: number, v: number): void {
    for (let i = 0; i < 4; i++) this.b[at + i] = (v >>> (8 * i)) & 0xff;
  }
  buf(): Buffer {
    return Buffer.from(this.b);
  }
}

type Attr = [at: number, form: number, implicit?: number];
function abbrev(a: Asm, code: number, tag: number, children: boolean, attrs: Attr[]): void {
  a.uleb(code).uleb(tag).u8(children ? 1 : 0);
  for (const [at, form, implicit] of attrs) {
    a.uleb(at).uleb(form);
    if (form === DW_FORM.implicit_const) a.sleb(implicit ?? 0);
  }
  a.uleb(0).uleb(0);
}

const SIG = 0x0123456789abcdefn;

function assemble(): { sections: DwarfSections; gvarAddress: bigint } {
  // Strings: .debug_str through .debug_str_offsets (strx), and .debug_line_str.
  const str = new Asm();
  const strOff: Record<string, number> = {};
  for (const s of ['cu1', 'int', 'b', 'c', 'gvar', 'loop_t', 'loopvar', 'cu2', 'long', 'tu_struct', 'v']) {
    strOff[s] = str.pos;
    str.str(s);
  }
  const names = Object.keys(strOff);
  const so = new Asm();
  so.u32(4 + names.length * 4).u16(5).u16(0);
  for (const n of names) so.u32(strOff[n]);
  const strx = (n: string): number => names.indexOf(n);
  const lineStr = new Asm().str('line_named');

  const ab = new Asm();
  // CU1's abbreviations
  abbrev(ab, 1, DW_TAG.compile_unit, true, [[DW_AT.name, DW_FORM.strx1], [DW_AT.str_offsets_base, DW_FORM.sec_offset]]);
  abbrev(ab, 2, DW_TAG.base_type, false, [[DW_AT.name, DW_FORM.strx1], [DW_AT.byte_size, DW_FORM.data1], [DW_AT.encoding, DW_FORM.data1]]);
  abbrev(ab, 3, DW_TAG.structure_type, true, [[DW_AT.name, DW_FORM.line_strp], [DW_AT.byte_size, DW_FORM.indirect]]);
  abbrev(ab, 4, DW_TAG.member, false, [[DW_AT.name, DW_FORM.string], [DW_AT.type, DW_FORM.ref_udata], [DW_AT.data_member_location, DW_FORM.implicit_const, 0], [0x2001, DW_FORM.data16]]);
  abbrev(ab, 5, DW_TAG.member, false, [[DW_AT.name, DW_FORM.strx2], [DW_AT.type, DW_FORM.ref_addr], [DW_AT.data_member_location, DW_FORM.data1]]);
  abbrev(ab, 6, DW_TAG.member, false, [[DW_AT.name, DW_FORM.strx1], [DW_AT.type, DW_FORM.ref_sig8], [DW_AT.data_member_location, DW_FORM.udata]]);
  abbrev(ab, 7, DW_TAG.variable, false, [[DW_AT.name, DW_FORM.strx1], [DW_AT.type, DW_FORM.ref4], [DW_AT.location, DW_FORM.exprloc]]);
  abbrev(ab, 8, DW_TAG.typedef, false, [[DW_AT.name, DW_FORM.strx1], [DW_AT.type, DW_FORM.ref4]]);
  ab.uleb(0);
  const cu2Abbrev = ab.pos;
  abbrev(ab, 1, DW_TAG.compile_unit, true, [[DW_AT.name, DW_FORM.strx1], [DW_AT.str_offsets_base, DW_FORM.sec_offset]]);
  abbrev(ab, 2, DW_TAG.base_type, false, [[DW_AT.name, DW_FORM.strx1], [DW_AT.byte_size, DW_FORM.data1], [DW_AT.encoding, DW_FORM.data1]]);
  ab.uleb(0);
  const tuAbbrev = ab.pos;
  abbrev(ab, 1, DW_TAG.type_unit, true, [[DW_AT.str_offsets_base, DW_FORM.sec_offset]]);
  abbrev(ab, 2, DW_TAG.structure_type, true, [[DW_AT.name, DW_FORM.strx1], [DW_AT.byte_size, DW_FORM.data1]]);
  abbrev(ab, 3, DW_TAG.member, false, [[DW_AT.name, DW_FORM.strx1], [DW_AT.type, DW_FORM.ref4], [DW_AT.data_member_location, DW_FORM.data1]]);
  abbrev(ab, 4, DW_TAG.base_type, false, [[DW_AT.name, DW_FORM.strx1], [DW_AT.byte_size, DW_FORM.data1], [DW_AT.encoding, DW_FORM.data1]]);
  ab.uleb(0);

  const info = new Asm();
  // --- CU1 ---
  const cu1 = info.pos;
  info.u32(0).u16(5).u8(1).u8(8).u32(0);
  info.uleb(1).u8(strx('cu1')).u32(8);
  const intDie = info.pos - cu1;
  info.uleb(2).u8(strx('int')).u8(4).u8(0x05);
  const structDie = info.pos - cu1;
  info.uleb(3).u32(0).uleb(DW_FORM.udata).uleb(24);
  info.uleb(4).str('a').uleb(intDie);
  for (let i = 0; i < 16; i++) info.u8(0xee);
  info.uleb(5).u16(strx('b'));
  const refAddrAt = info.pos;
  info.u32(0).u8(8);
  info.uleb(6).u8(strx('c')).u64(SIG).uleb(16);
  info.uleb(0);
  info.uleb(7).u8(strx('gvar')).u32(structDie).uleb(9).u8(0x03).u64(0x1122334455667788n);
  const loopDie = info.pos - cu1;
  info.uleb(8).u8(strx('loop_t')).u32(loopDie);
  info.uleb(7).u8(strx('loopvar')).u32(loopDie).uleb(9).u8(0x03).u64(0x1000n);
  info.uleb(0);
  info.patch32(cu1, info.pos - cu1 - 4);
  // --- CU2 ---
  const cu2 = info.pos;
  info.u32(0).u16(5).u8(1).u8(8).u32(cu2Abbrev);
  info.uleb(1).u8(strx('cu2')).u32(8);
  const longDie = info.pos;
  info.uleb(2).u8(strx('long')).u8(8).u8(0x05);
  info.uleb(0);
  info.patch32(cu2, info.pos - cu2 - 4);
  info.patch32(refAddrAt, longDie);
  // --- type unit ---
  const tu = info.pos;
  info.u32(0).u16(5).u8(2).u8(8).u32(tuAbbrev).u64(SIG);
  const typeOffAt = info.pos;
  info.u32(0);
  info.uleb(1).u32(8);
  info.patch32(typeOffAt, info.pos - tu);
  info.uleb(2).u8(strx('tu_struct')).u8(4);
  info.uleb(3).u8(strx('v'));
  const vTypeAt = info.pos;
  info.u32(0).u8(0);
  info.uleb(0); // end of tu_struct's members
  const tuInt = info.pos - tu;
  info.uleb(4).u8(strx('int')).u8(4).u8(0x05);
  info.uleb(0); // end of the type unit's children
  info.patch32(vTypeAt, tuInt);
  info.patch32(tu, info.pos - tu - 4);

  return {
    sections: {
      info: info.buf(),
      abbrev: ab.buf(),
      str: str.buf(),
      lineStr: lineStr.buf(),
      strOffsets: so.buf(),
      addr: Buffer.alloc(0),
      types: Buffer.alloc(0),
    },
    gvarAddress: 0x1122334455667788n,
  };
}

t.test('rare forms, cross-unit references and a type unit', (t) => {
  const { sections, gvarAddress } = assemble();
  const m = extractTypes(sections);
  t.equal(m.stats.units, 3);
  t.same(m.stats.versions, [5]);
  const s = m.userTypes.get('line_named');
  t.ok(s, 'struct named through DW_FORM_line_strp');
  t.equal(s?.size, 24, 'byte_size through DW_FORM_indirect');
  t.same(s?.fields.get('a'), { offset: 0, type: { kind: 'base', name: 'int' } }, 'ref_udata, implicit_const, data16 skipped');
  t.same(s?.fields.get('b'), { offset: 8, type: { kind: 'base', name: 'long' } }, 'strx2 name, ref_addr into another unit');
  t.same(s?.fields.get('c'), { offset: 16, type: { kind: 'struct', name: 'tu_struct' } }, 'ref_sig8 into a type unit');
  t.same([...(m.userTypes.get('tu_struct')?.fields ?? [])], [['v', { offset: 0, type: { kind: 'base', name: 'int' } }]]);
  t.same(m.variables.get('gvar'), { address: gvarAddress, type: { kind: 'struct', name: 'line_named' } });
  t.same(m.variables.get('loopvar')?.type, { kind: 'base', name: 'void' }, 'a typedef of itself ends as void');
  t.ok(m.stats.unresolved > 0, 'and is counted as unresolved');
  t.end();
});

t.test('malformed DWARF fails cleanly', (t) => {
  const { sections } = assemble();
  const withInfo = (info: Buffer): DwarfSections => ({ ...sections, info });

  t.throws(() => extractTypes(withInfo(sections.info.subarray(0, 40))), ValidationError, 'a unit longer than its section');

  const v9 = Buffer.from(sections.info);
  v9.writeUInt16LE(9, 4);
  t.throws(() => extractTypes(withInfo(v9)), { code: 'EDWARF', message: /version 9/ });

  const badCode = Buffer.from(sections.info);
  badCode[12] = 0x55; // the root DIE's abbreviation code
  t.throws(() => extractTypes(withInfo(badCode)), { message: /unknown abbreviation code 85/ });

  const badAbbrev = Buffer.from(sections.abbrev);
  // the first abbreviation's first form (strx1 = 0x25) becomes an unknown form
  const at = badAbbrev.indexOf(Buffer.from([DW_AT.name, DW_FORM.strx1]));
  badAbbrev[at + 1] = 0x7f;
  t.throws(() => extractTypes({ ...sections, abbrev: badAbbrev }), { message: /unknown attribute form 0x7f/ });

  const badStrOff = Buffer.from(sections.info);
  badStrOff.writeUInt32LE(0xfffff0, 14); // CU1's str_offsets_base
  t.throws(() => extractTypes(withInfo(badStrOff)), ValidationError, 'a string index outside .debug_str_offsets');

  for (let cut = 1; cut < sections.info.length; cut += 7) {
    try {
      extractTypes(withInfo(sections.info.subarray(0, cut)));
    } catch (err) {
      if (!(err instanceof VmiError)) t.fail(`cut at ${cut}: ${String(err)}`);
    }
  }
  t.pass('every truncation ends in a VmiError or a partial result');
  t.end();
});
