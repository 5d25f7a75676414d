/**
 * The BPF Type Format (BTF) as the kernel embeds it in .BTF (include/uapi/linux/btf.h): a header,
 * a type section of variable-length records (type ids count from 1 in order; 0 is void) and a
 * string section. Everything is bounds-checked: this comes from guest memory.
 */
import { Parser } from 'binary-parser';
import { ValidationError } from '../../errors';

export const BTF_MAGIC = 0xeb9f;

export const BTF_KIND = {
  INT: 1, PTR: 2, ARRAY: 3, STRUCT: 4, UNION: 5, ENUM: 6, FWD: 7, TYPEDEF: 8, VOLATILE: 9, CONST: 10,
  RESTRICT: 11, FUNC: 12, FUNC_PROTO: 13, VAR: 14, DATASEC: 15, FLOAT: 16, DECL_TAG: 17, TYPE_TAG: 18, ENUM64: 19,
} as const;

/** BTF_INT_ENCODING bits. */
export const BTF_INT = { SIGNED: 1, CHAR: 2, BOOL: 4 } as const;

export interface BtfHeader {
  magic: number;
  version: number;
  flags: number;
  hdrLen: number;
  typeOff: number;
  typeLen: number;
  strOff: number;
  strLen: number;
}

const headerParser = new Parser()
  .endianness('little')
  .uint16('magic')
  .uint8('version')
  .uint8('flags')
  .uint32('hdrLen')
  .uint32('typeOff')
  .uint32('typeLen')
  .uint32('strOff')
  .uint32('strLen');

export interface BtfMember { name: string; type: number; /** bit offset */ bitOffset: number; /** 0 unless a bitfield (kind_flag) */ bitSize: number }
export interface BtfEnumValue { name: string; value: bigint }
export interface BtfParam { name: string; type: number }
export interface BtfVarSecInfo { type: number; offset: number; size: number }

/** One type record; fields beyond `kind`/`name` are set according to the kind. */
export interface BtfType {
  id: number;
  kind: number;
  name: string;
  kindFlag: boolean;
  vlen: number;
  /** size (INT, STRUCT, UNION, ENUM, ENUM64, DATASEC, FLOAT) or referenced type (the others). */
  sizeOrType: number;
  /** INT: encoding, bit offset and number of bits. */
  int?: { encoding: number; offset: number; bits: number };
  array?: { type: number; indexType: number; nelems: number };
  members?: BtfMember[];
  values?: BtfEnumValue[];
  params?: BtfParam[];
  /** VAR linkage, or DECL_TAG component index. */
  extra?: number;
  secinfo?: BtfVarSecInfo[];
}

export interface Btf {
  header: BtfHeader;
  /** Indexed by type id; [0] is void (undefined). */
  types: Array<BtfType | undefined>;
}

/** The most types we accept (a 6.x vmlinux has about 120k). */
const MAX_TYPES = 4_000_000;

export function parseBtfHeader(buf: Buffer): BtfHeader {
  if (buf.length < 24) throw new ValidationError(`BTF too short for a header (${buf.length} bytes)`);
  const h = headerParser.parse(buf) as BtfHeader;
  if (h.magic !== BTF_MAGIC) throw new ValidationError(`not BTF: magic 0x${h.magic.toString(16)}`);
  if (h.version !== 1) throw new ValidationError(`BTF version ${h.version} is not supported`);
  if (h.hdrLen < 24 || h.hdrLen > buf.length) throw new ValidationError(`BTF header length ${h.hdrLen}`);
  const end = (off: number, len: number) => h.hdrLen + off + len;
  if (end(h.typeOff, h.typeLen) > buf.length || end(h.strOff, h.strLen) > buf.length) {
    throw new ValidationError(`BTF sections run past its ${buf.length} bytes`);
  }
  return h;
}

/** Parses a complete BTF blob (as between __start_BTF and __stop_BTF). */
export function parseBtf(buf: Buffer): Btf {
  const header = parseBtfHeader(buf);
  const strs = buf.subarray(header.hdrLen + header.strOff, header.hdrLen + header.strOff + header.strLen);
  const names = new Map<number, string>();
  const str = (off: number): string => {
    let s = names.get(off);
    if (s !== undefined) return s;
    if (off >= strs.length) throw new ValidationError(`BTF string offset ${off} beyond the ${strs.length}-byte string section`);
    let e = strs.indexOf(0, off);
    if (e < 0) e = strs.length;
    s = strs.toString('latin1', off, e);
    names.set(off, s);
    return s;
  };
  const types: Array<BtfType | undefined> = [undefined];
  const start = header.hdrLen + header.typeOff;
  const end = start + header.typeLen;
  let p = start;
  const need = (n: number) => {
    if (p + n > end) throw new ValidationError(`BTF type ${types.length} runs past the type section`);
  };
  while (p < end) {
    if (types.length > MAX_TYPES) throw new ValidationError(`more than ${MAX_TYPES} BTF types`);
    need(12);
    const info = buf.readUInt32LE(p + 4);
    const t: BtfType = {
      id: types.length,
      name: str(buf.readUInt32LE(p)),
      vlen: info & 0xffff,
      kind: (info >>> 24) & 0x1f,
      kindFlag: (info >>> 31) === 1,
      sizeOrType: buf.readUInt32LE(p + 8),
    };
    p += 12;
    switch (t.kind) {
      case BTF_KIND.INT: {
        need(4);
        const v = buf.readUInt32LE(p);
        t.int = { encoding: (v >>> 24) & 0x0f, offset: (v >>> 16) & 0xff, bits: v & 0xff };
        p += 4;
        break;
      }
      case BTF_KIND.ARRAY:
        need(12);
        t.array = { type: buf.readUInt32LE(p), indexType: buf.readUInt32LE(p + 4), nelems: buf.readUInt32LE(p + 8) };
        p += 12;
        break;
      case BTF_KIND.STRUCT:
      case BTF_KIND.UNION:
        need(12 * t.vlen);
        t.members = [];
        for (let i = 0; i < t.vlen; i++, p += 12) {
          const off = buf.readUInt32LE(p + 8);
          t.members.push({
            name: str(buf.readUInt32LE(p)),
            type: buf.readUInt32LE(p + 4),
            bitOffset: t.kindFlag ? off & 0xffffff : off,
            bitSize: t.kindFlag ? off >>> 24 : 0,
          });
        }
        break;
      case BTF_KIND.ENUM:
        need(8 * t.vlen);
        t.values = [];
        for (let i = 0; i < t.vlen; i++, p += 8) {
          // kind_flag marks a signed enum (kernel 6.0, pahole 1.24, with ENUM64); older BTF had
          // every value as s32 and no flag, which we cannot tell from an unsigned one
          const value = t.kindFlag ? BigInt(buf.readInt32LE(p + 4)) : BigInt(buf.readUInt32LE(p + 4));
          t.values.push({ name: str(buf.readUInt32LE(p)), value });
        }
        break;
      case BTF_KIND.ENUM64:
        need(12 * t.vlen);
        t.values = [];
        for (let i = 0; i < t.vlen; i++, p += 12) {
          const v = (BigInt(buf.readUInt32LE(p + 8)) << 32n) | BigInt(buf.readUInt32LE(p + 4));
          t.values.push({ name: str(buf.readUInt32LE(p)), value: t.kindFlag ? BigInt.asIntN(64, v) : v });
        }
        break;
      case BTF_KIND.FUNC_PROTO:
        need(8 * t.vlen);
        t.params = [];
        for (let i = 0; i < t.vlen; i++, p += 8) t.params.push({ name: str(buf.readUInt32LE(p)), type: buf.readUInt32LE(p + 4) });
        break;
      case BTF_KIND.VAR:
      case BTF_KIND.DECL_TAG:
        need(4);
        t.extra = buf.readUInt32LE(p);
        p += 4;
        break;
      case BTF_KIND.DATASEC:
        need(12 * t.vlen);
        t.secinfo = [];
        for (let i = 0; i < t.vlen; i++, p += 12) t.secinfo.push({ type: buf.readUInt32LE(p), offset: buf.readUInt32LE(p + 4), size: buf.readUInt32LE(p + 8) });
        break;
      case BTF_KIND.PTR:
      case BTF_KIND.FWD:
      case BTF_KIND.TYPEDEF:
      case BTF_KIND.VOLATILE:
      case BTF_KIND.CONST:
      case BTF_KIND.RESTRICT:
      case BTF_KIND.FUNC:
      case BTF_KIND.FLOAT:
      case BTF_KIND.TYPE_TAG:
        break;
      default:
        throw new ValidationError(`unknown BTF kind ${t.kind} (type ${t.id})`);
    }
    types.push(t);
  }
  return { header, types };
}
