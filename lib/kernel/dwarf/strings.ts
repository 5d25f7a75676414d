/**
 * .debug_str, .debug_line_str, .debug_str_offsets (strx) and .debug_addr (addrx), with the string
 * reads cached by offset: a vmlinux names the same types in every one of its thousands of units,
 * and .debug_str is deduplicated, so one offset is one name.
 */
import { ValidationError } from '../../errors';
import type { DwarfSections } from './unit';

/** Strings and addresses shared by all units. */
export class StringTables {
  readonly #sections: DwarfSections;
  readonly #strpCache = new Map<number, string>();
  readonly #lineStrCache = new Map<number, string>();
  constructor(sections: DwarfSections) {
    this.#sections = sections;
  }
  strp(off: number): string {
    let s = this.#strpCache.get(off);
    if (s === undefined) {
      s = readCString(this.#sections.str, off, '.debug_str');
      this.#strpCache.set(off, s);
    }
    return s;
  }
  lineStrp(off: number): string {
    let s = this.#lineStrCache.get(off);
    if (s === undefined) {
      s = readCString(this.#sections.lineStr, off, '.debug_line_str');
      this.#lineStrCache.set(off, s);
    }
    return s;
  }
  /** DW_FORM_strx*: index into the unit's slice of .debug_str_offsets. */
  strx(index: number, base: number, offSize: number): string {
    const so = this.#sections.strOffsets;
    const at = base + index * offSize;
    if (base < 0 || at + offSize > so.length) throw new ValidationError(`string index ${index} is outside .debug_str_offsets`);
    const off = offSize === 8 ? Number(so.readBigUInt64LE(at)) : so.readUInt32LE(at);
    return this.strp(off);
  }
  /** DW_FORM_addrx* and DW_OP_addrx: index into the unit's slice of .debug_addr. */
  addrx(index: number, base: number, addrSize: number): bigint {
    const a = this.#sections.addr;
    const at = base + index * addrSize;
    if (base < 0 || at + addrSize > a.length) throw new ValidationError(`address index ${index} is outside .debug_addr`);
    return addrSize === 8 ? a.readBigUInt64LE(at) : BigInt(a.readUInt32LE(at));
  }
}

function readCString(buf: Buffer, off: number, section: string): string {
  if (off >= buf.length) throw new ValidationError(`string offset 0x${off.toString(16)} is past ${section}`);
  let end = buf.indexOf(0, off);
  if (end < 0) end = buf.length;
  return buf.toString('utf8', off, end);
}

