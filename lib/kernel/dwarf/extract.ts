/**
 * Type extraction: walks every unit's top-level DIEs once and turns the C types into the ISF
 * model (see model.ts), the way dwarf2json does, but without building a DIE tree.
 *
 * - Named structs, unions and enums are deduplicated by name: the first complete definition wins,
 *   and later copies (every unit that includes a header has one) are skipped whole through
 *   DW_AT_sibling without decoding their members.
 * - Everything else (pointers, arrays, qualifiers, anonymous structs, typedefs) is decoded only
 *   when a definition or a variable refers to it, through a per-unit cache of offset → descriptor
 *   that is dropped when the unit is done, so memory stays bounded by the output.
 * - Function bodies (DW_TAG_subprogram children, lexical blocks) are never entered.
 */
import { createHash } from 'node:crypto';
import { ValidationError } from '../../errors';
import { DW_ATE, DW_LANG_Rust, DW_TAG, DW_UT } from './constants';
import { AbbrevCache } from './abbrev';
import {
  Die,
  SECTION_INFO,
  SECTION_TYPES,
  StringTables,
  UnitReader,
  isBufferBoundsError,
  listUnits,
  locationAddress,
  type DwarfSections,
  type UnitHeader,
} from './info';
import type { BaseTypeInfo, DwarfModel, EnumInfo, FieldInfo, TypeDescriptor, UserTypeInfo } from './model';

export interface ExtractOptions {
  /** Called after each unit with the bytes of .debug_info (+ .debug_types) processed so far. */
  onProgress?: (done: number, total: number) => void;
}

const VOID: TypeDescriptor = Object.freeze({ kind: 'base', name: 'void' }) as TypeDescriptor;
const FUNCTION: TypeDescriptor = Object.freeze({ kind: 'function' }) as TypeDescriptor;

/** Upper bound on nested type resolution (a corrupt file could chain references forever). */
const MAX_DEPTH = 200;

export function extractTypes(sections: DwarfSections, opts: ExtractOptions = {}): DwarfModel {
  try {
    return new Extractor(sections).run(opts);
  } catch (err) {
    // the readers check offsets where it is cheap; a read that still runs off a section is corrupt input
    if (isBufferBoundsError(err)) throw new ValidationError(`DWARF: a read runs past the end of a section (${(err as Error).message})`);
    throw err;
  }
}

class Extractor {
  readonly #s: DwarfSections;
  readonly #abbrevs: AbbrevCache;
  readonly #strings: StringTables;
  readonly #units: UnitHeader[][] = [[], []];
  readonly #bySignature = new Map<bigint, UnitHeader>();
  readonly #caches = new Map<UnitReader, Map<number, TypeDescriptor>>();
  readonly #foreign = new Map<string, UnitReader>();
  readonly #inProgress = new Set<string>();
  readonly #anonInProgress = new Set<string>();
  readonly #typedefsSeen = new Set<string>();
  readonly #anonEnumsSeen = new Set<string>();
  readonly #peek = new Die();
  #depth = 0;
  readonly model: DwarfModel = {
    baseTypes: new Map<string, BaseTypeInfo>([['void', { kind: 'void', size: 0, signed: false }]]),
    pointerSize: 0,
    userTypes: new Map<string, UserTypeInfo>(),
    enums: new Map<string, EnumInfo>(),
    variables: new Map(),
    stats: { units: 0, skippedUnits: 0, versions: [], infoBytes: 0, unresolved: 0 },
  };

  constructor(sections: DwarfSections) {
    this.#s = sections;
    this.#abbrevs = new AbbrevCache(sections.abbrev);
    this.#strings = new StringTables(sections);
  }

  run(opts: ExtractOptions): DwarfModel {
    this.#units[SECTION_INFO] = listUnits(this.#s.info, SECTION_INFO);
    this.#units[SECTION_TYPES] = listUnits(this.#s.types, SECTION_TYPES);
    for (const list of this.#units) {
      for (const h of list) if (h.typeSignature !== undefined) this.#bySignature.set(h.typeSignature, h);
    }
    const total = this.#s.info.length + this.#s.types.length;
    this.model.stats.infoBytes = total;
    const versions = new Set<number>();
    const root = new Die();
    const scratch = new Die();
    let base = 0;
    // Type units first: with -fdebug-types-section the complete definitions live there.
    for (const section of [SECTION_TYPES, SECTION_INFO]) {
      const buf = section === SECTION_INFO ? this.#s.info : this.#s.types;
      for (const h of this.#units[section]) {
        if (h.unitType === DW_UT.skeleton || h.unitType === DW_UT.split_compile || h.unitType === DW_UT.split_type) {
          this.model.stats.skippedUnits++;
          continue;
        }
        const u = new UnitReader(buf, h, this.#abbrevs, this.#strings);
        u.readRoot(root);
        if (root.tag !== DW_TAG.compile_unit && root.tag !== DW_TAG.partial_unit && root.tag !== DW_TAG.type_unit) {
          this.model.stats.skippedUnits++;
          continue;
        }
        if (u.language === DW_LANG_Rust) {
          // dwarf2json skips Rust units too: their types share C names with different layouts.
          this.model.stats.skippedUnits++;
          continue;
        }
        versions.add(h.version);
        this.model.stats.units++;
        if (this.model.producer === undefined && root.producer !== undefined && h.unitType !== DW_UT.type && u.language !== -1 && isCLanguage(u.language)) {
          this.model.producer = root.producer;
        }
        this.#caches.set(u, new Map());
        if (root.hasChildren) {
          let p = root.next;
          while (p < h.end) {
            u.decode(p, scratch);
            if (scratch.tag === 0) break;
            this.#topLevel(u, scratch);
            p = u.siblingOf(scratch);
          }
        }
        this.#caches.delete(u);
        opts.onProgress?.(base + h.end, total);
      }
      base += buf.length;
    }
    this.model.stats.versions = [...versions].sort();
    return this.model;
  }

  #topLevel(u: UnitReader, d: Die): void {
    switch (d.tag) {
      case DW_TAG.structure_type:
      case DW_TAG.union_type:
      case DW_TAG.class_type:
        if (d.name !== undefined && !d.declaration && !this.model.userTypes.has(d.name) && !this.#inProgress.has(d.name)) {
          this.#resolve(u, d.offset);
        }
        break;
      case DW_TAG.enumeration_type:
        if (d.declaration) break;
        if (d.name !== undefined) {
          if (!this.model.enums.has(d.name)) this.#resolve(u, d.offset);
        } else if (d.hasChildren) {
          // Anonymous enums hold many kernel constants (`enum { TASK_COMM_LEN = 16 }`), and
          // dwarf2json keeps them all. Every unit that includes the header repeats them; C
          // enumerator names are unique in a program's headers, so the first enumerator
          // (name and value) identifies the enum without decoding the rest.
          u.decode(d.next, this.#peek);
          if (this.#peek.tag === DW_TAG.enumerator && this.#peek.name !== undefined) {
            const key = `${this.#peek.name}=${this.#peek.constValue ?? 0n}`;
            if (!this.#anonEnumsSeen.has(key)) {
              this.#anonEnumsSeen.add(key);
              this.#resolve(u, d.offset);
            }
          }
        }
        break;
      case DW_TAG.typedef:
        if (d.name !== undefined && !this.#typedefsSeen.has(d.name)) {
          // Only the first typedef of a name matters: it may name an anonymous struct (defined
          // under the typedef's name, like dwarf2json does).
          this.#typedefsSeen.add(d.name);
          this.#resolve(u, d.offset);
        }
        break;
      case DW_TAG.base_type:
        this.#registerBase(d);
        break;
      case DW_TAG.pointer_type:
        // clang leaves out DW_AT_byte_size on pointers: it is then the unit's address size.
        if (this.model.pointerSize === 0) this.model.pointerSize = d.byteSize > 0 ? d.byteSize : u.header.addrSize;
        break;
      case DW_TAG.variable:
        this.#variable(u, d);
        break;
      default:
        break;
    }
  }

  #variable(u: UnitReader, d: Die): void {
    let name = d.name;
    let owner: { unit: UnitReader; die: Die } = { unit: u, die: d };
    if (d.specification >= 0) {
      // A definition completing an earlier declaration: name and type may live on the latter.
      const spec = this.#decodeRef(u, d.specification, u.header.section);
      if (spec) {
        name ??= spec.die.name;
        if (d.type < 0 && d.typeSig === undefined) owner = spec;
      }
    }
    if (name === undefined) return;
    const address = d.location ? locationAddress(d.location, u) : undefined;
    const hasType = owner.die.type >= 0 || owner.die.typeSig !== undefined;
    const existing = this.model.variables.get(name);
    if (existing) {
      if (existing.address === undefined && address !== undefined) {
        // The definition: its type is the complete one (`char linux_banner[]` in a header, but
        // `char linux_banner[370]` where it is defined).
        existing.address = address;
        if (hasType) existing.type = this.#typeOf(owner.unit, owner.die);
      }
      return;
    }
    // dwarf2json only records variables that have a type.
    if (!hasType) return;
    this.model.variables.set(name, { address, type: this.#typeOf(owner.unit, owner.die) });
  }

  #registerBase(d: Die): void {
    const name = d.name;
    if (name === undefined || this.model.baseTypes.has(name)) return;
    let kind: BaseTypeInfo['kind'] = 'int';
    let signed = true;
    switch (d.encoding) {
      case DW_ATE.unsigned:
        signed = false;
        break;
      case DW_ATE.signed_char:
        kind = 'char';
        break;
      case DW_ATE.unsigned_char:
      case DW_ATE.UTF:
        kind = 'char';
        signed = false;
        break;
      case DW_ATE.boolean:
        // dwarf2json reports bool as signed; keep its output shape.
        kind = 'bool';
        break;
      case DW_ATE.float:
      case DW_ATE.complex_float:
        kind = 'float';
        break;
      case DW_ATE.address:
        signed = false;
        break;
      default:
        break;
    }
    this.model.baseTypes.set(name, { kind, size: Math.max(0, d.byteSize), signed });
  }

  /** The descriptor of the type that `d`'s DW_AT_type names (void when it has none). */
  #typeOf(u: UnitReader, d: Die): TypeDescriptor {
    if (d.unresolvable) {
      this.model.stats.unresolved++;
      return VOID;
    }
    const target = this.#locate(u, d);
    if (!target) return VOID;
    return this.#resolve(target.unit, target.offset);
  }

  /** Where `d`'s DW_AT_type points: a unit and a DIE offset in it. */
  #locate(u: UnitReader, d: Die): { unit: UnitReader; offset: number } | undefined {
    if (d.typeSig !== undefined) {
      const h = this.#bySignature.get(d.typeSig);
      if (!h || h.typeOffset === undefined) {
        this.model.stats.unresolved++;
        return undefined;
      }
      return { unit: this.#readerFor(h), offset: h.typeOffset };
    }
    if (d.type < 0) return undefined;
    return this.#unitAt(u, d.type, d.typeSection);
  }

  #unitAt(u: UnitReader, offset: number, section: number): { unit: UnitReader; offset: number } | undefined {
    const h = u.header;
    if (section === h.section && offset >= h.offset && offset < h.end) return { unit: u, offset };
    const list = this.#units[section];
    let lo = 0;
    let hi = list.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const m = list[mid];
      if (offset < m.offset) hi = mid - 1;
      else if (offset >= m.end) lo = mid + 1;
      else return { unit: this.#readerFor(m), offset };
    }
    this.model.stats.unresolved++;
    return undefined;
  }

  #decodeRef(u: UnitReader, offset: number, section: number): { unit: UnitReader; die: Die } | undefined {
    const at = this.#unitAt(u, offset, section);
    if (!at) return undefined;
    const die = new Die();
    at.unit.decode(at.offset, die);
    return { unit: at.unit, die };
  }

  /** A reader (with its own descriptor cache) for a unit other than the one being walked. */
  #readerFor(h: UnitHeader): UnitReader {
    const key = `${h.section}:${h.offset}`;
    let r = this.#foreign.get(key);
    if (!r) {
      const buf = h.section === SECTION_INFO ? this.#s.info : this.#s.types;
      r = new UnitReader(buf, h, this.#abbrevs, this.#strings);
      r.readRoot(new Die());
      this.#foreign.set(key, r);
      this.#caches.set(r, new Map());
    }
    return r;
  }

  #resolve(u: UnitReader, off: number): TypeDescriptor {
    let cache = this.#caches.get(u);
    if (!cache) {
      cache = new Map();
      this.#caches.set(u, cache);
    }
    const hit = cache.get(off);
    if (hit) return hit;
    if (this.#depth > MAX_DEPTH) {
      this.model.stats.unresolved++;
      return VOID;
    }
    this.#depth++;
    try {
      const d = new Die();
      u.decode(off, d);
      let r: TypeDescriptor;
      switch (d.tag) {
        case DW_TAG.base_type:
          this.#registerBase(d);
          r = d.name === undefined ? VOID : { kind: 'base', name: d.name };
          break;
        case DW_TAG.unspecified_type:
          r = VOID;
          break;
        case DW_TAG.pointer_type:
        case DW_TAG.reference_type:
        case 0x42: // rvalue_reference_type
          if (this.model.pointerSize === 0) this.model.pointerSize = d.byteSize > 0 ? d.byteSize : u.header.addrSize;
          r = { kind: 'pointer', subtype: this.#typeOf(u, d) };
          break;
        case DW_TAG.const_type:
        case DW_TAG.volatile_type:
        case DW_TAG.restrict_type:
        case DW_TAG.atomic_type:
          r = this.#typeOf(u, d);
          break;
        case DW_TAG.typedef:
          r = this.#typedef(u, d);
          break;
        case DW_TAG.array_type:
          r = this.#array(u, d);
          break;
        case DW_TAG.subroutine_type:
          r = FUNCTION;
          break;
        case DW_TAG.structure_type:
        case DW_TAG.union_type:
        case DW_TAG.class_type:
          r = this.#struct(u, d, cache);
          break;
        case DW_TAG.enumeration_type:
          r = this.#enum(u, d, cache);
          break;
        default:
          this.model.stats.unresolved++;
          r = VOID;
      }
      cache.set(off, r);
      return r;
    } finally {
      this.#depth--;
    }
  }

  #typedef(u: UnitReader, d: Die): TypeDescriptor {
    const name = d.name;
    const target = d.unresolvable ? undefined : this.#locate(u, d);
    if (!target) return VOID;
    if (name !== undefined) {
      const t = new Die();
      target.unit.decode(target.offset, t);
      if ((t.tag === DW_TAG.structure_type || t.tag === DW_TAG.union_type || t.tag === DW_TAG.class_type) && t.name === undefined) {
        // `typedef struct { ... } name_t;`: dwarf2json names the struct after the typedef.
        const kind = structKind(t.tag);
        if (!t.declaration && !this.model.userTypes.has(name) && !this.#inProgress.has(name)) {
          this.#inProgress.add(name);
          try {
            const info = this.#buildStruct(target.unit, t, kind);
            if (!this.model.userTypes.has(name)) this.model.userTypes.set(name, info);
          } finally {
            this.#inProgress.delete(name);
          }
        }
        return { kind, name };
      }
    }
    return this.#resolve(target.unit, target.offset);
  }

  #array(u: UnitReader, d: Die): TypeDescriptor {
    const elem = this.#typeOf(u, d);
    const dims: number[] = [];
    if (d.hasChildren) {
      const c = new Die();
      let p = d.next;
      while (p < u.header.end) {
        u.decode(p, c);
        if (c.tag === 0) break;
        if (c.tag === DW_TAG.subrange_type || c.tag === DW_TAG.enumeration_type) {
          let count = 0;
          if (c.count >= 0) count = c.count;
          else if (c.count === -2) count = 0;
          else if (c.upperBound !== undefined) count = c.upperBound - c.lowerBound + 1;
          // A zero-length array has upper bound -1 (or all ones in an unsigned form).
          if (!(count > 0) || count > 0xffffffff) count = 0;
          dims.push(count);
        }
        p = u.siblingOf(c);
      }
    }
    if (dims.length === 0) dims.push(0);
    let r = elem;
    for (let i = dims.length - 1; i >= 0; i--) r = { kind: 'array', count: dims[i], subtype: r };
    return r;
  }

  #struct(u: UnitReader, d: Die, cache: Map<number, TypeDescriptor>): TypeDescriptor {
    const kind = structKind(d.tag);
    if (d.name !== undefined) {
      const name = d.name;
      const ref: TypeDescriptor = { kind, name };
      // Cached before the members are read, so that `struct list_head *next` inside
      // struct list_head finds it instead of recursing.
      cache.set(d.offset, ref);
      if (!d.declaration && !this.model.userTypes.has(name) && !this.#inProgress.has(name)) {
        this.#inProgress.add(name);
        try {
          const info = this.#buildStruct(u, d, kind);
          if (!this.model.userTypes.has(name)) this.model.userTypes.set(name, info);
        } finally {
          this.#inProgress.delete(name);
        }
      }
      return ref;
    }
    const key = `${u.header.section}:${d.offset}`;
    if (this.#anonInProgress.has(key)) return { kind, name: 'unnamed_recursive' };
    this.#anonInProgress.add(key);
    try {
      const info = this.#buildStruct(u, d, kind);
      const name = 'unnamed_' + hashStruct(info);
      if (!this.model.userTypes.has(name)) this.model.userTypes.set(name, info);
      return { kind, name };
    } finally {
      this.#anonInProgress.delete(key);
    }
  }

  #buildStruct(u: UnitReader, d: Die, kind: UserTypeInfo['kind']): UserTypeInfo {
    const fields = new Map<string, FieldInfo>();
    let anonymous = 0;
    if (d.hasChildren && !d.declaration) {
      const m = new Die();
      let p = d.next;
      while (p < u.header.end) {
        u.decode(p, m);
        if (m.tag === 0) break;
        const next = u.siblingOf(m);
        if (m.tag === DW_TAG.member && !m.declaration) {
          let type = this.#typeOf(u, m);
          let name = m.name;
          let isAnonymous = false;
          if (name === undefined) {
            name = `unnamed_field_${anonymous.toString(16)}`;
            anonymous++;
            isAnonymous = true;
          }
          let offset = m.memberLocation >= 0 ? m.memberLocation : 0;
          if (m.bitSize > 0) {
            let bits: number;
            if (m.dataBitOffset >= 0) {
              bits = m.dataBitOffset + (m.memberLocation >= 0 ? m.memberLocation * 8 : 0);
            } else if (m.bitOffset >= 0) {
              // DWARF 2-4: bit_offset counts from the most significant bit of a storage unit of
              // byte_size bytes at data_member_location; convert to a little-endian bit number.
              const storage = m.byteSize > 0 ? m.byteSize : this.#byteSizeOf(u, m);
              bits = offset * 8 + (storage * 8 - (m.bitOffset + m.bitSize));
            } else {
              bits = offset * 8;
            }
            offset = Math.floor(bits / 8);
            type = { kind: 'bitfield', bit_position: bits % 8, bit_length: m.bitSize, type };
          }
          if (!fields.has(name)) {
            const f: FieldInfo = isAnonymous ? { offset, type, anonymous: true } : { offset, type };
            fields.set(name, f);
          }
        }
        p = next;
      }
    }
    return { kind, size: Math.max(0, d.byteSize), fields };
  }

  /** Byte size of `d`'s type, following typedefs and qualifiers (for old-style bitfields). */
  #byteSizeOf(u: UnitReader, d: Die): number {
    let unit = u;
    let cur: Die = d;
    for (let i = 0; i < 32; i++) {
      const t = this.#locate(unit, cur);
      if (!t) return 0;
      const n = new Die();
      t.unit.decode(t.offset, n);
      if (n.byteSize > 0) return n.byteSize;
      unit = t.unit;
      cur = n;
    }
    return 0;
  }

  #enum(u: UnitReader, d: Die, cache: Map<number, TypeDescriptor>): TypeDescriptor {
    if (d.name !== undefined) {
      const ref: TypeDescriptor = { kind: 'enum', name: d.name };
      cache.set(d.offset, ref);
      if (!d.declaration && !this.model.enums.has(d.name)) this.model.enums.set(d.name, this.#buildEnum(u, d));
      return ref;
    }
    const info = this.#buildEnum(u, d);
    const name = 'unnamed_' + hashEnum(info);
    if (!this.model.enums.has(name)) this.model.enums.set(name, info);
    return { kind: 'enum', name };
  }

  #buildEnum(u: UnitReader, d: Die): EnumInfo {
    const constants = new Map<string, bigint>();
    let signed = false;
    if (d.hasChildren) {
      const c = new Die();
      let p = d.next;
      while (p < u.header.end) {
        u.decode(p, c);
        if (c.tag === 0) break;
        if (c.tag === DW_TAG.enumerator && c.name !== undefined) {
          const v = c.constValue ?? 0n;
          if (v < 0n) signed = true;
          if (!constants.has(c.name)) constants.set(c.name, v);
        }
        p = u.siblingOf(c);
      }
    }
    return { size: Math.max(0, d.byteSize), signed, constants };
  }
}

function structKind(tag: number): UserTypeInfo['kind'] {
  return tag === DW_TAG.union_type ? 'union' : tag === DW_TAG.class_type ? 'class' : 'struct';
}

function isCLanguage(lang: number): boolean {
  // DW_LANG_C89, C, C99, C11, C17 (and the C++ family, which shares the type model)
  return lang === 0x01 || lang === 0x02 || lang === 0x0c || lang === 0x1d || lang === 0x2c || lang === 0x04 || lang === 0x1a || lang === 0x21;
}

/** Content hash naming an anonymous struct/union: same layout → same name in every unit. */
export function hashStruct(info: UserTypeInfo): string {
  let s = `${info.kind} ${info.size} {`;
  for (const [name, f] of info.fields) s += `${name}@${f.offset}:${JSON.stringify(f.type)};`;
  return createHash('sha1').update(s + '}').digest('hex').slice(0, 16);
}

export function hashEnum(info: EnumInfo): string {
  let s = `enum ${info.size} {`;
  for (const [name, v] of info.constants) s += `${name}=${v};`;
  return createHash('sha1').update(s + '}').digest('hex').slice(0, 16);
}
