/**
 * .debug_abbrev: each table is parsed once (units that share a table share the result), and every
 * abbreviation gets the byte size of its attributes when all its forms have a fixed size, so that
 * skipping a DIE nobody asked about is a single addition.
 */
import { ValidationError } from '../../errors';
import { DW_AT, DW_FORM } from './constants';
import { sleb, uleb } from './bytes';

export interface Abbrev {
  code: number;
  tag: number;
  hasChildren: boolean;
  attrs: Uint32Array;
  forms: Uint32Array;
  /** DW_FORM_implicit_const values, by attribute index. */
  implicitConsts: Array<number | undefined>;
  /** Size of all attribute values, or -1 when a form's size depends on the data. */
  fixedSize: number;
  /**
   * Byte distance from the end of the abbreviation code to a DW_AT_sibling value in a fixed-size
   * form, and that form; -1 when there is no such sibling or something of variable size precedes it.
   */
  siblingAt: number;
  siblingForm: number;
}

export interface AbbrevTable {
  /** Codes are dense in practice: an array indexed by code, with a Map for outliers. */
  byCode: Array<Abbrev | undefined>;
  sparse: Map<number, Abbrev>;
}

/** Size in bytes of a value of `form`, or -1 when it is variable (LEB128, strings, blocks, indirect). */
export function formFixedSize(form: number, addrSize: number, offSize: number, version: number): number {
  switch (form) {
    case DW_FORM.addr:
      return addrSize;
    case DW_FORM.data1:
    case DW_FORM.ref1:
    case DW_FORM.flag:
    case DW_FORM.strx1:
    case DW_FORM.addrx1:
      return 1;
    case DW_FORM.data2:
    case DW_FORM.ref2:
    case DW_FORM.strx2:
    case DW_FORM.addrx2:
      return 2;
    case DW_FORM.strx3:
    case DW_FORM.addrx3:
      return 3;
    case DW_FORM.data4:
    case DW_FORM.ref4:
    case DW_FORM.ref_sup4:
    case DW_FORM.strx4:
    case DW_FORM.addrx4:
      return 4;
    case DW_FORM.data8:
    case DW_FORM.ref8:
    case DW_FORM.ref_sig8:
    case DW_FORM.ref_sup8:
      return 8;
    case DW_FORM.data16:
      return 16;
    case DW_FORM.strp:
    case DW_FORM.line_strp:
    case DW_FORM.sec_offset:
    case DW_FORM.strp_sup:
    case DW_FORM.GNU_ref_alt:
    case DW_FORM.GNU_strp_alt:
      return offSize;
    case DW_FORM.ref_addr:
      return version <= 2 ? addrSize : offSize;
    case DW_FORM.flag_present:
    case DW_FORM.implicit_const:
      return 0;
    default:
      return -1;
  }
}

/** Parses the abbreviation table at `offset` of .debug_abbrev, sized for one unit's parameters. */
export function parseAbbrevTable(
  buf: Buffer,
  offset: number,
  addrSize: number,
  offSize: number,
  version: number,
): AbbrevTable {
  if (offset >= buf.length) throw new ValidationError(`abbreviation table offset 0x${offset.toString(16)} is past .debug_abbrev`);
  const byCode: Array<Abbrev | undefined> = [];
  const sparse = new Map<number, Abbrev>();
  const pos = [offset];
  for (;;) {
    if (pos[0] >= buf.length) throw new ValidationError('abbreviation table runs past .debug_abbrev');
    const code = uleb(buf, pos);
    if (code === 0) break;
    const tag = uleb(buf, pos);
    const hasChildren = buf[pos[0]++] === 1;
    const attrs: number[] = [];
    const forms: number[] = [];
    const implicitConsts: Array<number | undefined> = [];
    for (;;) {
      if (pos[0] >= buf.length) throw new ValidationError('abbreviation runs past .debug_abbrev');
      const name = uleb(buf, pos);
      const form = uleb(buf, pos);
      if (name === 0 && form === 0) break;
      attrs.push(name);
      forms.push(form);
      implicitConsts.push(form === DW_FORM.implicit_const ? sleb(buf, pos) : undefined);
    }
    let fixedSize = 0;
    let siblingAt = -1;
    let siblingForm = 0;
    let prefix = 0;
    for (let i = 0; i < forms.length; i++) {
      const size = formFixedSize(forms[i], addrSize, offSize, version);
      if (attrs[i] === DW_AT.sibling && prefix >= 0 && size > 0 && forms[i] !== DW_FORM.ref_addr) {
        siblingAt = prefix;
        siblingForm = forms[i];
      }
      if (size < 0) {
        fixedSize = -1;
        prefix = -1;
      } else {
        if (fixedSize >= 0) fixedSize += size;
        if (prefix >= 0) prefix += size;
      }
    }
    const ab: Abbrev = {
      code,
      tag,
      hasChildren,
      attrs: Uint32Array.from(attrs),
      forms: Uint32Array.from(forms),
      implicitConsts,
      fixedSize,
      siblingAt,
      siblingForm,
    };
    if (code < 100_000) byCode[code] = ab;
    else sparse.set(code, ab);
  }
  return { byCode, sparse };
}

/**
 * Parsed tables, shared by units with the same table offset and parameters. Only the most recently
 * used tables are kept: a vmlinux has one table per unit (thousands, ~100 MB parsed), and units
 * that share a table are usually adjacent. A unit reader holds on to its own table regardless.
 */
export class AbbrevCache {
  readonly #buf: Buffer;
  readonly #tables = new Map<string, AbbrevTable>();
  readonly #limit: number;
  constructor(buf: Buffer, limit = 32) {
    this.#buf = buf;
    this.#limit = limit;
  }
  get(offset: number, addrSize: number, offSize: number, version: number): AbbrevTable {
    const key = `${offset}/${addrSize}/${offSize}/${version <= 2 ? 2 : 3}`;
    let t = this.#tables.get(key);
    if (t) {
      // move to the most recently used end
      this.#tables.delete(key);
      this.#tables.set(key, t);
      return t;
    }
    t = parseAbbrevTable(this.#buf, offset, addrSize, offSize, version);
    this.#tables.set(key, t);
    if (this.#tables.size > this.#limit) this.#tables.delete(this.#tables.keys().next().value as string);
    return t;
  }
}
