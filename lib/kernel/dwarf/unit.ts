/**
 * DWARF unit headers (versions 2 to 5, 32- and 64-bit DWARF, every DWARF 5 unit type) and the
 * set of sections a reader works from.
 */
import { ValidationError, VmiError } from '../../errors';
import { DW_UT } from './constants';

/** The sections a DWARF reader uses; absent ones are empty Buffers. */
export interface DwarfSections {
  info: Buffer;
  abbrev: Buffer;
  str: Buffer;
  lineStr: Buffer;
  strOffsets: Buffer;
  addr: Buffer;
  /** DWARF 4 type units (-fdebug-types-section with -gdwarf-4). */
  types: Buffer;
}

export const SECTION_INFO = 0;
export const SECTION_TYPES = 1;

export interface UnitHeader {
  section: number;
  /** Offset of the unit header in its section, and of the first byte after the unit. */
  offset: number;
  end: number;
  version: number;
  unitType: number;
  offSize: 4 | 8;
  addrSize: number;
  abbrevOffset: number;
  /** Offset of the unit's root DIE. */
  dieOffset: number;
  /** Type units: the signature, and the section offset of the type DIE. */
  typeSignature?: bigint;
  typeOffset?: number;
}

/** Reads the unit header at `offset`; throws on a malformed one (a length running past the section). */
export function readUnitHeader(buf: Buffer, section: number, offset: number): UnitHeader {
  let p = offset;
  if (p + 11 > buf.length) throw new ValidationError(`unit header at 0x${offset.toString(16)} is truncated`);
  let length = buf.readUInt32LE(p);
  p += 4;
  let offSize: 4 | 8 = 4;
  if (length === 0xffffffff) {
    offSize = 8;
    const big = buf.readBigUInt64LE(p);
    p += 8;
    if (big > BigInt(buf.length)) throw new ValidationError(`unit at 0x${offset.toString(16)} is longer than its section`);
    length = Number(big);
  } else if (length >= 0xfffffff0) {
    throw new ValidationError(`unit at 0x${offset.toString(16)} has a reserved length 0x${length.toString(16)}`);
  }
  const end = p + length;
  if (end > buf.length) throw new ValidationError(`unit at 0x${offset.toString(16)} runs past the end of its section`);
  const version = buf.readUInt16LE(p);
  p += 2;
  if (version < 2 || version > 5) throw new VmiError('EDWARF', `unit at 0x${offset.toString(16)}: DWARF version ${version} is not supported`);
  const readOff = (): number => {
    const v = offSize === 8 ? Number(buf.readBigUInt64LE(p)) : buf.readUInt32LE(p);
    p += offSize;
    return v;
  };
  let unitType: number = DW_UT.compile;
  let addrSize: number;
  let abbrevOffset: number;
  let typeSignature: bigint | undefined;
  let typeOffset: number | undefined;
  if (version >= 5) {
    unitType = buf[p++];
    addrSize = buf[p++];
    abbrevOffset = readOff();
    if (unitType === DW_UT.type || unitType === DW_UT.split_type) {
      typeSignature = buf.readBigUInt64LE(p);
      p += 8;
      typeOffset = offset + readOff();
    } else if (unitType === DW_UT.skeleton || unitType === DW_UT.split_compile) {
      p += 8; // dwo_id
    }
  } else {
    abbrevOffset = readOff();
    addrSize = buf[p++];
    if (section === SECTION_TYPES) {
      unitType = DW_UT.type;
      typeSignature = buf.readBigUInt64LE(p);
      p += 8;
      typeOffset = offset + readOff();
    }
  }
  if (addrSize !== 4 && addrSize !== 8) throw new VmiError('EDWARF', `unit at 0x${offset.toString(16)}: address size ${addrSize}`);
  return { section, offset, end, version, unitType, offSize, addrSize, abbrevOffset, dieOffset: p, typeSignature, typeOffset };
}

/** Every unit header of a section, in order. Cheap: it reads only the headers. */
export function listUnits(buf: Buffer, section: number): UnitHeader[] {
  const out: UnitHeader[] = [];
  let off = 0;
  while (off < buf.length) {
    // Some linkers pad between units with zeros.
    if (buf.length - off < 11) break;
    const h = readUnitHeader(buf, section, off);
    out.push(h);
    off = h.end;
  }
  return out;
}

