/**
 * BTF types turned into the model the DWARF extractor produces (lib/kernel/dwarf/model.ts), so
 * that one converter (modelToIsf) makes the profile either way and both agree field by field:
 * typedefs and qualifiers resolved away, `typedef struct { } name_t` named after the typedef,
 * anonymous structs/unions/enums named by the same content hash, anonymous members named
 * `unnamed_field_N`, bitfields as ISF bitfield descriptors with little-endian bit numbers.
 */
import { hashEnum, hashStruct } from '../dwarf/extract';
import type { BaseTypeInfo, DwarfModel, EnumInfo, FieldInfo, TypeDescriptor, UserTypeInfo } from '../dwarf/model';
import { BTF_INT, BTF_KIND, type Btf, type BtfType } from './parse';

const VOID: TypeDescriptor = { kind: 'base', name: 'void' };
const FUNCTION: TypeDescriptor = { kind: 'function' };
const MAX_DEPTH = 256;

export interface BtfModelStats { types: number; unresolved: number }

export function btfToModel(btf: Btf): DwarfModel & { btfStats: BtfModelStats } {
  const model: DwarfModel & { btfStats: BtfModelStats } = {
    baseTypes: new Map(),
    pointerSize: 8,
    userTypes: new Map(),
    enums: new Map(),
    variables: new Map(),
    stats: { units: 0, skippedUnits: 0, versions: [], infoBytes: 0, unresolved: 0 },
    btfStats: { types: btf.types.length - 1, unresolved: 0 },
  };
  const cache = new Map<number, TypeDescriptor>();
  const inProgress = new Set<number>();
  let depth = 0;

  const typeOf = (id: number): TypeDescriptor => {
    if (id === 0) return VOID;
    const hit = cache.get(id);
    if (hit) return hit;
    const t = btf.types[id];
    if (!t || depth > MAX_DEPTH) {
      model.btfStats.unresolved++;
      return VOID;
    }
    depth++;
    try {
      const r = resolve(t);
      cache.set(id, r);
      return r;
    } finally {
      depth--;
    }
  };

  const registerBase = (t: BtfType): void => {
    if (t.name === '' || model.baseTypes.has(t.name)) return;
    let info: BaseTypeInfo;
    if (t.kind === BTF_KIND.FLOAT) info = { kind: 'float', size: t.sizeOrType, signed: true };
    else {
      const enc = t.int?.encoding ?? 0;
      if (enc & BTF_INT.BOOL) info = { kind: 'bool', size: t.sizeOrType, signed: true }; // as the DWARF path (dwarf2json) reports bool
      else if (enc & BTF_INT.CHAR || /\bchar\b/.test(t.name)) {
        // pahole gives plain `char` no encoding; on x86 it is signed (DW_ATE_signed_char)
        info = { kind: 'char', size: t.sizeOrType, signed: (enc & BTF_INT.SIGNED) !== 0 || t.name === 'char' };
      } else info = { kind: 'int', size: t.sizeOrType, signed: (enc & BTF_INT.SIGNED) !== 0 };
    }
    model.baseTypes.set(t.name, info);
  };

  const buildStruct = (t: BtfType, kind: 'struct' | 'union'): UserTypeInfo => {
    const fields = new Map<string, FieldInfo>();
    let anonymous = 0;
    for (const m of t.members ?? []) {
      let type = typeOf(m.type);
      let name = m.name;
      let isAnonymous = false;
      if (name === '') {
        name = `unnamed_field_${anonymous.toString(16)}`;
        anonymous++;
        isAnonymous = true;
      }
      let bits = m.bitOffset;
      let bitSize = m.bitSize;
      if (!t.kindFlag) {
        // old-style bitfields: the member's INT type carries the width (and an extra offset)
        const target = skipQualifiers(btf, m.type);
        if (target?.kind === BTF_KIND.INT && target.int && target.int.bits !== target.sizeOrType * 8) {
          bitSize = target.int.bits;
          bits += target.int.offset;
        }
      }
      let offset = Math.floor(bits / 8);
      if (bitSize > 0) type = { kind: 'bitfield', bit_position: bits % 8, bit_length: bitSize, type };
      else offset = Math.floor(bits / 8);
      if (!fields.has(name)) fields.set(name, isAnonymous ? { offset, type, anonymous: true } : { offset, type });
    }
    return { kind, size: t.sizeOrType, fields };
  };

  const buildEnum = (t: BtfType): EnumInfo => {
    const constants = new Map<string, bigint>();
    let signed = false;
    for (const v of t.values ?? []) {
      if (v.value < 0n) signed = true;
      if (!constants.has(v.name)) constants.set(v.name, v.value);
    }
    return { size: t.sizeOrType, signed, constants };
  };

  const namedStruct = (t: BtfType, name: string, kind: 'struct' | 'union'): TypeDescriptor => {
    const ref: TypeDescriptor = { kind, name };
    cache.set(t.id, ref); // before the members: `struct list_head *next` finds it
    if (!model.userTypes.has(name) && !inProgress.has(t.id)) {
      inProgress.add(t.id);
      try {
        const info = buildStruct(t, kind);
        if (!model.userTypes.has(name)) model.userTypes.set(name, info);
      } finally {
        inProgress.delete(t.id);
      }
    }
    return ref;
  };

  const resolve = (t: BtfType): TypeDescriptor => {
    switch (t.kind) {
      case BTF_KIND.INT:
      case BTF_KIND.FLOAT:
        registerBase(t);
        return t.name === '' ? VOID : { kind: 'base', name: t.name };
      case BTF_KIND.PTR:
        return { kind: 'pointer', subtype: typeOf(t.sizeOrType) };
      case BTF_KIND.ARRAY:
        return { kind: 'array', count: t.array!.nelems, subtype: typeOf(t.array!.type) };
      case BTF_KIND.STRUCT:
      case BTF_KIND.UNION: {
        const kind = t.kind === BTF_KIND.UNION ? 'union' : 'struct';
        if (t.name !== '') return namedStruct(t, t.name, kind);
        if (inProgress.has(t.id)) return { kind, name: 'unnamed_recursive' };
        inProgress.add(t.id);
        try {
          const info = buildStruct(t, kind);
          const name = 'unnamed_' + hashStruct(info);
          if (!model.userTypes.has(name)) model.userTypes.set(name, info);
          return { kind, name };
        } finally {
          inProgress.delete(t.id);
        }
      }
      case BTF_KIND.ENUM:
      case BTF_KIND.ENUM64: {
        const info = buildEnum(t);
        const name = t.name !== '' ? t.name : 'unnamed_' + hashEnum(info);
        if (!model.enums.has(name)) model.enums.set(name, info);
        return { kind: 'enum', name };
      }
      case BTF_KIND.FWD:
        return { kind: t.kindFlag ? 'union' : 'struct', name: t.name };
      case BTF_KIND.TYPEDEF: {
        const target = skipQualifiers(btf, t.sizeOrType, false);
        if (target && (target.kind === BTF_KIND.STRUCT || target.kind === BTF_KIND.UNION) && target.name === '' && t.name !== '') {
          // `typedef struct { ... } name_t;`: named after the typedef, as dwarf2json does
          return namedStruct(target, t.name, target.kind === BTF_KIND.UNION ? 'union' : 'struct');
        }
        return typeOf(t.sizeOrType);
      }
      case BTF_KIND.VOLATILE:
      case BTF_KIND.CONST:
      case BTF_KIND.RESTRICT:
      case BTF_KIND.TYPE_TAG:
        return typeOf(t.sizeOrType);
      case BTF_KIND.FUNC_PROTO:
      case BTF_KIND.FUNC:
        return FUNCTION;
      default:
        model.btfStats.unresolved++;
        return VOID;
    }
  };

  // Every named type, as the DWARF path keeps every definition; anonymous ones where reached.
  for (let id = 1; id < btf.types.length; id++) {
    const t = btf.types[id]!;
    switch (t.kind) {
      case BTF_KIND.INT:
      case BTF_KIND.FLOAT:
        registerBase(t);
        break;
      case BTF_KIND.STRUCT:
      case BTF_KIND.UNION:
        if (t.name !== '') typeOf(id);
        break;
      case BTF_KIND.ENUM:
      case BTF_KIND.ENUM64:
        typeOf(id);
        break;
      case BTF_KIND.TYPEDEF:
        typeOf(id);
        break;
      case BTF_KIND.VAR:
        // only per-CPU variables have BTF VARs in vmlinux; their addresses come from kallsyms
        if (t.name !== '' && !model.variables.has(t.name)) model.variables.set(t.name, { type: typeOf(t.sizeOrType) });
        break;
      default:
        break;
    }
  }
  model.stats.unresolved = model.btfStats.unresolved;
  return model;
}

/** The type `id` names with const/volatile/restrict/type tags (and, unless told, typedefs) removed. */
function skipQualifiers(btf: Btf, id: number, throughTypedefs = true): BtfType | undefined {
  for (let i = 0; i < 64 && id !== 0; i++) {
    const t = btf.types[id];
    if (!t) return undefined;
    const q = t.kind === BTF_KIND.CONST || t.kind === BTF_KIND.VOLATILE || t.kind === BTF_KIND.RESTRICT || t.kind === BTF_KIND.TYPE_TAG;
    if (!q && !(throughTypedefs && t.kind === BTF_KIND.TYPEDEF)) return t;
    id = t.sizeOrType;
  }
  return undefined;
}
