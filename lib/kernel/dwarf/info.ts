/**
 * .debug_info (and DWARF 4 .debug_types): DIE decoding and subtree skipping within one unit.
 *
 * DIEs are decoded into a reusable `Die` record that keeps only the attributes type extraction
 * needs; every other attribute is stepped over by the size of its form. Offsets are section
 * offsets (numbers); reference forms are turned into section offsets as they are read.
 */
import { ValidationError, VmiError } from '../../errors';
import { Die } from './die';
import { StringTables } from './strings';
import type { UnitHeader } from './unit';
import { AbbrevCache, formFixedSize, type Abbrev, type AbbrevTable } from './abbrev';
import { DW_AT, DW_FORM } from './constants';
import { slebBig, uleb, ulebBig } from './bytes';

/** One unit, ready to decode DIEs. */
export class UnitReader {
  readonly header: UnitHeader;
  readonly buf: Buffer;
  readonly strings: StringTables;
  readonly #table: AbbrevTable;
  readonly #byCode: Array<Abbrev | undefined>;
  readonly #offSize: number;
  readonly #addrSize: number;
  readonly #version: number;
  strOffsetsBase = 8;
  addrBase = 8;
  language = -1;

  constructor(buf: Buffer, header: UnitHeader, abbrevs: AbbrevCache, strings: StringTables) {
    this.buf = buf;
    this.header = header;
    this.strings = strings;
    this.#table = abbrevs.get(header.abbrevOffset, header.addrSize, header.offSize, header.version);
    this.#byCode = this.#table.byCode;
    this.#offSize = header.offSize;
    this.#addrSize = header.addrSize;
    this.#version = header.version;
    this.strOffsetsBase = header.offSize === 8 ? 16 : 8;
  }

  /**
   * Reads the root DIE, taking its str_offsets/addr bases first (its own name may be a strx that
   * needs them) and the language. Returns the root in `die`.
   */
  readRoot(die: Die): void {
    this.decode(this.header.dieOffset, die, true);
    if (die.strOffsetsBase >= 0) this.strOffsetsBase = die.strOffsetsBase;
    if (die.addrBase >= 0) this.addrBase = die.addrBase;
    this.language = die.language;
    this.decode(this.header.dieOffset, die);
  }

  abbrev(code: number): Abbrev {
    const ab = this.#byCode[code] ?? this.#table.sparse.get(code);
    if (!ab) throw new ValidationError(`unit at 0x${this.header.offset.toString(16)}: unknown abbreviation code ${code}`);
    return ab;
  }

  /**
   * Decodes the DIE at `off` into `d`. Returns the offset after its attributes (`d.next`). A null
   * entry (end of a sibling list) comes back with `d.tag === 0`. With `basesOnly`, strings are
   * not resolved (the root's bases are not known yet).
   */
  decode(off: number, d: Die, basesOnly = false): number {
    try {
      return this.#decode(off, d, basesOnly);
    } catch (err) {
      // A hostile length or offset makes a fixed-size read run off the buffer: corrupt DWARF, not
      // a bug. (A try costs nothing on the hot path until something throws.)
      if (isBufferBoundsError(err)) throw new ValidationError(`DIE at 0x${off.toString(16)}: reads past the end of its section`);
      throw err;
    }
  }

  #decode(off: number, d: Die, basesOnly: boolean): number {
    const buf = this.buf;
    const end = this.header.end;
    if (off >= end) throw new ValidationError(`DIE offset 0x${off.toString(16)} is outside its unit`);
    let p = off;
    let code = buf[p++];
    if (code >= 0x80) {
      code &= 0x7f;
      let mul = 128;
      let b: number;
      do {
        b = buf[p++];
        code += (b & 0x7f) * mul;
        mul *= 128;
      } while (b >= 0x80);
    }
    d.offset = off;
    if (code === 0) {
      d.tag = 0;
      d.hasChildren = false;
      d.next = p;
      return p;
    }
    const ab = this.#byCode[code] ?? this.abbrev(code);
    d.reset();
    d.tag = ab.tag;
    d.hasChildren = ab.hasChildren;
    const attrs = ab.attrs;
    const forms = ab.forms;
    const unitOff = this.header.offset;
    const offSize = this.#offSize;
    for (let i = 0; i < attrs.length; i++) {
      const at = attrs[i];
      let form = forms[i];
      if (form === DW_FORM.indirect) {
        const pos = [p];
        form = uleb(buf, pos);
        p = pos[0];
      }
      switch (form) {
        case DW_FORM.ref4:
          this.#ref(d, at, unitOff + buf.readUInt32LE(p), this.header.section);
          p += 4;
          break;
        case DW_FORM.ref1:
          this.#ref(d, at, unitOff + buf[p], this.header.section);
          p += 1;
          break;
        case DW_FORM.ref2:
          this.#ref(d, at, unitOff + buf.readUInt16LE(p), this.header.section);
          p += 2;
          break;
        case DW_FORM.ref8:
          this.#ref(d, at, unitOff + Number(buf.readBigUInt64LE(p)), this.header.section);
          p += 8;
          break;
        case DW_FORM.ref_udata: {
          const pos = [p];
          this.#ref(d, at, unitOff + uleb(buf, pos), this.header.section);
          p = pos[0];
          break;
        }
        case DW_FORM.ref_addr: {
          const size = this.#version <= 2 ? this.#addrSize : offSize;
          const v = size === 8 ? Number(buf.readBigUInt64LE(p)) : buf.readUInt32LE(p);
          p += size;
          // ref_addr always names .debug_info, even from a .debug_types unit
          this.#ref(d, at, v, 0);
          break;
        }
        case DW_FORM.ref_sig8:
          if (at === DW_AT.type) d.typeSig = buf.readBigUInt64LE(p);
          p += 8;
          break;
        case DW_FORM.GNU_ref_alt:
        case DW_FORM.ref_sup4:
        case DW_FORM.ref_sup8:
          if (at === DW_AT.type) d.unresolvable = true;
          p += form === DW_FORM.ref_sup4 ? 4 : form === DW_FORM.ref_sup8 ? 8 : offSize;
          break;
        case DW_FORM.strp:
        case DW_FORM.line_strp: {
          const v = offSize === 8 ? Number(buf.readBigUInt64LE(p)) : buf.readUInt32LE(p);
          p += offSize;
          if ((at === DW_AT.name || at === DW_AT.producer) && !basesOnly) {
            const str = form === DW_FORM.strp ? this.strings.strp(v) : this.strings.lineStrp(v);
            if (at === DW_AT.name) d.name = str;
            else d.producer = str;
          }
          break;
        }
        case DW_FORM.string: {
          let e = buf.indexOf(0, p);
          if (e < 0 || e >= end) e = end;
          if (at === DW_AT.name) d.name = buf.toString('utf8', p, e);
          else if (at === DW_AT.producer) d.producer = buf.toString('utf8', p, e);
          p = e + 1;
          break;
        }
        case DW_FORM.strx1:
        case DW_FORM.strx2:
        case DW_FORM.strx3:
        case DW_FORM.strx4:
        case DW_FORM.strx:
        case DW_FORM.GNU_str_index: {
          let idx: number;
          if (form === DW_FORM.strx1) idx = buf[p++];
          else if (form === DW_FORM.strx2) {
            idx = buf.readUInt16LE(p);
            p += 2;
          } else if (form === DW_FORM.strx3) {
            idx = buf.readUIntLE(p, 3);
            p += 3;
          } else if (form === DW_FORM.strx4) {
            idx = buf.readUInt32LE(p);
            p += 4;
          } else {
            const pos = [p];
            idx = uleb(buf, pos);
            p = pos[0];
          }
          if (at === DW_AT.name && !basesOnly) d.name = this.strings.strx(idx, this.strOffsetsBase, offSize);
          else if (at === DW_AT.producer && !basesOnly) d.producer = this.strings.strx(idx, this.strOffsetsBase, offSize);
          break;
        }
        case DW_FORM.GNU_strp_alt:
        case DW_FORM.strp_sup:
          p += offSize;
          break;
        case DW_FORM.data1:
          this.#num(d, at, buf[p]);
          p += 1;
          break;
        case DW_FORM.data2:
          this.#num(d, at, buf.readUInt16LE(p));
          p += 2;
          break;
        case DW_FORM.data4:
          this.#num(d, at, buf.readUInt32LE(p));
          p += 4;
          break;
        case DW_FORM.data8: {
          if (at === DW_AT.const_value) d.constValue = buf.readBigInt64LE(p);
          else this.#num(d, at, Number(buf.readBigInt64LE(p)));
          p += 8;
          break;
        }
        case DW_FORM.sdata: {
          const pos = [p];
          const v = slebBig(buf, pos);
          p = pos[0];
          if (at === DW_AT.const_value) d.constValue = v;
          else this.#num(d, at, Number(v));
          break;
        }
        case DW_FORM.udata: {
          if (at === DW_AT.const_value) {
            const pos = [p];
            d.constValue = ulebBig(buf, pos);
            p = pos[0];
          } else {
            const pos = [p];
            this.#num(d, at, uleb(buf, pos));
            p = pos[0];
          }
          break;
        }
        case DW_FORM.implicit_const:
          if (at === DW_AT.const_value) d.constValue = BigInt(ab.implicitConsts[i] ?? 0);
          else this.#num(d, at, ab.implicitConsts[i] ?? 0);
          break;
        case DW_FORM.data16:
          p += 16;
          break;
        case DW_FORM.flag:
          if (at === DW_AT.declaration) d.declaration = buf[p] !== 0;
          p += 1;
          break;
        case DW_FORM.flag_present:
          if (at === DW_AT.declaration) d.declaration = true;
          break;
        case DW_FORM.sec_offset: {
          const v = offSize === 8 ? Number(buf.readBigUInt64LE(p)) : buf.readUInt32LE(p);
          p += offSize;
          if (at === DW_AT.str_offsets_base) d.strOffsetsBase = v;
          else if (at === DW_AT.addr_base || at === DW_AT.GNU_addr_base) d.addrBase = v;
          break;
        }
        case DW_FORM.addr:
          p += this.#addrSize;
          break;
        case DW_FORM.addrx:
        case DW_FORM.GNU_addr_index:
        case DW_FORM.loclistx:
        case DW_FORM.rnglistx: {
          const pos = [p];
          uleb(buf, pos);
          p = pos[0];
          break;
        }
        case DW_FORM.addrx1:
          p += 1;
          break;
        case DW_FORM.addrx2:
          p += 2;
          break;
        case DW_FORM.addrx3:
          p += 3;
          break;
        case DW_FORM.addrx4:
          p += 4;
          break;
        case DW_FORM.exprloc:
        case DW_FORM.block: {
          const pos = [p];
          const len = uleb(buf, pos);
          p = pos[0];
          this.#block(d, at, buf.subarray(p, p + len));
          p += len;
          break;
        }
        case DW_FORM.block1: {
          const len = buf[p];
          p += 1;
          this.#block(d, at, buf.subarray(p, p + len));
          p += len;
          break;
        }
        case DW_FORM.block2: {
          const len = buf.readUInt16LE(p);
          p += 2;
          this.#block(d, at, buf.subarray(p, p + len));
          p += len;
          break;
        }
        case DW_FORM.block4: {
          const len = buf.readUInt32LE(p);
          p += 4;
          this.#block(d, at, buf.subarray(p, p + len));
          p += len;
          break;
        }
        default:
          throw new VmiError('EDWARF', `DIE at 0x${off.toString(16)}: unknown attribute form 0x${form.toString(16)}`);
      }
    }
    if (p > end) throw new ValidationError(`DIE at 0x${off.toString(16)} runs past the end of its unit`);
    d.next = p;
    return p;
  }

  #ref(d: Die, at: number, target: number, section: number): void {
    if (at === DW_AT.type) {
      d.type = target;
      d.typeSection = section;
    } else if (at === DW_AT.sibling) d.sibling = target;
    else if (at === DW_AT.specification) d.specification = target;
    else if (at === DW_AT.count || at === DW_AT.upper_bound) {
      // A bound given by another DIE (a VLA): the count is not a constant.
      d.count = -2;
    }
  }

  #num(d: Die, at: number, v: number): void {
    switch (at) {
      case DW_AT.byte_size:
        d.byteSize = v;
        break;
      case DW_AT.data_member_location:
        d.memberLocation = v;
        break;
      case DW_AT.bit_size:
        d.bitSize = v;
        break;
      case DW_AT.bit_offset:
        d.bitOffset = v;
        break;
      case DW_AT.data_bit_offset:
        d.dataBitOffset = v;
        break;
      case DW_AT.encoding:
        d.encoding = v;
        break;
      case DW_AT.count:
        d.count = v;
        break;
      case DW_AT.upper_bound:
        // data1/2/4 are zero-extended; only sdata and data8 carry a sign (-1 means "no elements").
        d.upperBound = v;
        break;
      case DW_AT.lower_bound:
        d.lowerBound = v;
        break;
      case DW_AT.const_value:
        d.constValue = BigInt(v);
        break;
      case DW_AT.language:
        d.language = v;
        break;
      case DW_AT.declaration:
        d.declaration = v !== 0;
        break;
      default:
        break;
    }
  }

  #block(d: Die, at: number, bytes: Buffer): void {
    if (at === DW_AT.location) d.location = bytes;
    else if (at === DW_AT.data_member_location) d.memberLocation = evalMemberLocation(bytes);
  }

  /** Steps over the attributes of a DIE with abbreviation `ab` whose attributes start at `p`. */
  skipAttrs(p: number, ab: Abbrev): number {
    if (ab.fixedSize >= 0) return p + ab.fixedSize;
    const buf = this.buf;
    const forms = ab.forms;
    for (let i = 0; i < forms.length; i++) {
      let form = forms[i];
      if (form === DW_FORM.indirect) {
        const pos = [p];
        form = uleb(buf, pos);
        p = pos[0];
      }
      switch (form) {
        case DW_FORM.string: {
          const e = buf.indexOf(0, p);
          p = e < 0 ? this.header.end : e + 1;
          break;
        }
        case DW_FORM.udata:
        case DW_FORM.sdata:
        case DW_FORM.ref_udata:
        case DW_FORM.strx:
        case DW_FORM.addrx:
        case DW_FORM.loclistx:
        case DW_FORM.rnglistx:
        case DW_FORM.GNU_addr_index:
        case DW_FORM.GNU_str_index:
          while (buf[p++] >= 0x80);
          break;
        case DW_FORM.exprloc:
        case DW_FORM.block: {
          const pos = [p];
          const len = uleb(buf, pos);
          p = pos[0] + len;
          break;
        }
        case DW_FORM.block1:
          p += 1 + buf[p];
          break;
        case DW_FORM.block2:
          p += 2 + buf.readUInt16LE(p);
          break;
        case DW_FORM.block4:
          p += 4 + buf.readUInt32LE(p);
          break;
        default: {
          const size = formFixedSize(form, this.#addrSize, this.#offSize, this.#version);
          if (size < 0) throw new VmiError('EDWARF', `unknown attribute form 0x${form.toString(16)}`);
          p += size;
        }
      }
    }
    return p;
  }

  /**
   * Steps over a list of sibling DIEs starting at `p` (the children of some DIE) up to and
   * including its terminating null entry, jumping by DW_AT_sibling wherever the abbreviation has
   * one at a fixed place. Returns the offset after the null entry.
   */
  skipChildren(p: number): number {
    const buf = this.buf;
    const end = this.header.end;
    let depth = 1;
    while (depth > 0) {
      if (p >= end) return end; // a unit may omit its trailing nulls
      let code = buf[p++];
      if (code >= 0x80) {
        code &= 0x7f;
        let mul = 128;
        let b: number;
        do {
          b = buf[p++];
          code += (b & 0x7f) * mul;
          mul *= 128;
        } while (b >= 0x80);
      }
      if (code === 0) {
        depth--;
        continue;
      }
      const ab = this.#byCode[code] ?? this.abbrev(code);
      if (ab.hasChildren && ab.siblingAt >= 0) {
        const sp = p + ab.siblingAt;
        const f = ab.siblingForm;
        const rel = f === DW_FORM.ref4 ? buf.readUInt32LE(sp) : f === DW_FORM.ref2 ? buf.readUInt16LE(sp) : f === DW_FORM.ref1 ? buf[sp] : Number(buf.readBigUInt64LE(sp));
        const target = this.header.offset + rel;
        if (target > p && target <= end) {
          p = target;
          continue;
        }
      }
      p = this.skipAttrs(p, ab);
      if (ab.hasChildren) depth++;
    }
    return p;
  }

  /** Offset of the DIE after `d` at the same level (d must have been decoded by `decode`). */
  siblingOf(d: Die): number {
    if (!d.hasChildren) return d.next;
    if (d.sibling > d.offset && d.sibling <= this.header.end) return d.sibling;
    return this.skipChildren(d.next);
  }
}




/** DWARF 2 style member locations: `DW_OP_plus_uconst N` (or a bare constant expression). */
function evalMemberLocation(expr: Buffer): number {
  if (expr.length >= 2 && expr[0] === 0x23) {
    return uleb(expr, [1]);
  }
  return -1;
}

/** The symbol address of a DW_AT_location expression `DW_OP_addr A` or `DW_OP_addrx I`. */
export function locationAddress(expr: Buffer, unit: UnitReader): bigint | undefined {
  if (expr.length === 0) return undefined;
  const op = expr[0];
  const addrSize = unit.header.addrSize;
  if (op === 0x03 && expr.length >= 1 + addrSize) {
    return addrSize === 8 ? expr.readBigUInt64LE(1) : BigInt(expr.readUInt32LE(1));
  }
  if (op === 0xa1 || op === 0xfb) {
    const idx = uleb(expr, [1]);
    return unit.strings.addrx(idx, unit.addrBase, addrSize);
  }
  return undefined;
}

export { Die, StringTables };
export { SECTION_INFO, SECTION_TYPES, listUnits, readUnitHeader, type DwarfSections, type UnitHeader } from './unit';

/** Node's error for a Buffer read outside its bounds (readUInt32LE and friends). */
export function isBufferBoundsError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return err instanceof RangeError && (code === 'ERR_OUT_OF_RANGE' || code === 'ERR_BUFFER_OUT_OF_BOUNDS');
}
