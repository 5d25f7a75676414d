/**
 * A loaded kernel profile: struct layouts, sizes, enum values and symbol addresses, with the
 * lookups the kernel helpers use.
 *
 * Field paths (`'signal.rlim'`, `'numbers[0].nr'`) walk nested structs and see through anonymous
 * struct/union members, as C does: dwarf2json keeps those as `unnamed_field_N` members, but their
 * own members are what code names (since 5.x every field of mm_struct but cpu_bitmap sits in an
 * anonymous struct, so `mm_struct.pgd` is really `unnamed_field_0.pgd`). Feature detection goes
 * through `hasField` / `firstField` rather than kernel version checks.
 */
import { MissingSymbolError, ValidationError } from '../../errors';
import { own, type IsfDocument, type IsfEnum, type IsfField, type IsfMetadata, type IsfSymbol, type IsfUserType, type TypeRef } from './isf';
import { loadProfileDocument, parseProfile } from './load';
import { DocumentStore, PackedStore, type ProfileStore } from './compact';
import { loadPackedProfile } from './cache';

const EMPTY_DOC: IsfDocument = { metadata: { format: '6.2.0' }, base_types: {}, user_types: {}, enums: {}, symbols: {} };

export interface FieldLayout {
  /** The path as asked for. */
  name: string;
  /** Byte offset from the start of the outermost struct. */
  offset: number;
  type: TypeRef;
  /** Size in bytes of the field's type (of the storage type for a bitfield). */
  size: number;
}

/** A struct name with an optional `struct `/`union ` prefix, as C spells it. */
function bareName(name: string): string {
  return name.replace(/^(?:struct|union|class|enum)\s+/, '');
}

const PATH_PART = /^([A-Za-z_$][\w$]*)((?:\[\d+\])*)$/;

export class Profile {
  #store: ProfileStore;
  /** Where the profile came from (a file path), for messages. */
  readonly source: string;
  readonly #fieldCache = new Map<string, FieldLayout | null>();
  /** struct name as asked → path → layout (found fields only). */
  readonly #byStruct = new Map<string, Map<string, FieldLayout>>();
  readonly #flat = new Map<string, Map<string, { offset: number; type: TypeRef }>>();
  /** typeSize() by name as asked (found ones only): struct reads ask it thousands of times a listing. */
  readonly #sizes = new Map<string, number>();
  #banner: string | null | undefined;

  /**
   * A profile over a validated document, which stays live: changes the caller makes to it later
   * are seen (until a lookup has cached what it found). Profiles read from files are packed
   * instead (see compact.ts).
   */
  constructor(doc: IsfDocument, source = '<profile>') {
    this.#store = new DocumentStore(doc);
    this.source = source;
  }

  static #packed(doc: IsfDocument, source: string): Profile {
    const p = new Profile(doc, source);
    p.#store = new PackedStore(doc);
    return p;
  }

  /**
   * Loads, validates and wraps a profile file (`.json` or gzip-compressed); kept packed. With
   * `packedCache`, a directory, the packed form is read from there when an earlier load of the
   * same file bytes left it, and left there otherwise (cache.ts).
   */
  static load(path: string, opts: { packedCache?: string } = {}): Profile {
    if (opts.packedCache === undefined) return Profile.#packed(loadProfileDocument(path), path);
    const p = new Profile(EMPTY_DOC, path);
    p.#store = loadPackedProfile(path, opts.packedCache);
    return p;
  }

  static fromJson(text: string, source = '<profile>'): Profile {
    return Profile.#packed(parseProfile(text, source), source);
  }

  /**
   * The whole ISF document. A packed profile rebuilds it once and from then on is backed by it
   * (so that changes made to it are seen, as with any document-backed profile): lookups do not
   * need it, only writing a profile out or walking all of it does.
   */
  get doc(): IsfDocument {
    const store = this.#store;
    if (store instanceof DocumentStore) return store.doc;
    const doc = (store as PackedStore).toDocument();
    this.#store = new DocumentStore(doc);
    return doc;
  }

  get metadata(): IsfMetadata {
    return this.#store.metadata;
  }

  /**
   * The kernel banner the profile was made for (`Linux version 6.1.0-... #1 SMP ...`), without the
   * trailing newline; from `metadata.linux.banner` or the `linux_banner` symbol's constant data.
   */
  get banner(): string | undefined {
    if (this.#banner === undefined) this.#banner = bannerOf(this.#store.metadata, this.#store.symbol('linux_banner')) ?? null;
    return this.#banner ?? undefined;
  }

  /** Size of a pointer (the ISF `pointer` base type; 8 when the profile has none). */
  get pointerSize(): number {
    return this.#store.baseType('pointer')?.size ?? 8;
  }

  hasType(name: string): boolean {
    const n = bareName(name);
    return this.#store.userType(n) !== undefined || this.#store.baseType(n) !== undefined || this.#store.enumType(n) !== undefined;
  }

  /** The struct/union definition; throws MissingSymbolError when the profile has none. */
  userType(name: string): IsfUserType {
    const t = this.#store.userType(bareName(name));
    if (!t) throw new MissingSymbolError(bareName(name), `no struct or union ${JSON.stringify(bareName(name))} in profile ${this.source}`);
    return t;
  }

  /** sizeof a named type: struct/union, base type (`int`, `pointer`) or enum. */
  typeSize(name: string): number {
    const hit = this.#sizes.get(name);
    if (hit !== undefined) return hit;
    const n = bareName(name);
    const size = this.#store.userType(n)?.size ?? this.#store.baseType(n)?.size ?? this.#store.enumType(n)?.size;
    if (size === undefined) throw new MissingSymbolError(n, `no type ${JSON.stringify(n)} in profile ${this.source}`);
    this.#sizes.set(name, size);
    return size;
  }

  /** sizeof the type a descriptor names. Functions have size 0. */
  sizeOf(t: TypeRef): number {
    const size = this.#sizeOf(t);
    // array counts multiply: a hostile profile can make a size no read could ever have
    if (!Number.isSafeInteger(size)) throw new ValidationError(`profile ${this.source}: a type of ${size} bytes`);
    return size;
  }

  #sizeOf(t: TypeRef): number {
    for (let depth = 0, mul = 1; depth < 64; depth++) {
      switch (t.kind) {
        case 'base': {
          const b = this.#store.baseType(t.name);
          if (!b) throw new MissingSymbolError(t.name, `no base type ${JSON.stringify(t.name)} in profile ${this.source}`);
          return mul * b.size;
        }
        case 'struct':
        case 'union':
        case 'class':
          return mul * this.userType(t.name).size;
        case 'enum': {
          const e = this.#store.enumType(t.name);
          if (!e) throw new MissingSymbolError(t.name, `no enum ${JSON.stringify(t.name)} in profile ${this.source}`);
          return mul * e.size;
        }
        case 'pointer':
          return mul * this.pointerSize;
        case 'function':
          return 0;
        case 'array':
          mul *= t.count;
          t = t.subtype;
          break;
        case 'bitfield':
          t = t.type;
          break;
      }
    }
    throw new MissingSymbolError('?', 'type nested too deeply');
  }

  /**
   * A field of a struct by path: `'tasks'`, `'signal.rlim'` (through embedded structs),
   * `'numbers[1].nr'` (array elements), seeing through anonymous members at every step.
   * Throws MissingSymbolError naming `struct.path` when there is no such field.
   */
  field(struct: string, path: string): FieldLayout {
    // the hot path of every struct decode: no string building, no regex, on a hit
    const hit = this.#byStruct.get(struct)?.get(path);
    if (hit) return hit;
    const f = this.#lookup(bareName(struct), path);
    if (f) {
      let m = this.#byStruct.get(struct);
      if (!m) this.#byStruct.set(struct, (m = new Map()));
      m.set(path, f);
    }
    if (!f) throw new MissingSymbolError(`${bareName(struct)}.${path}`, `no field ${JSON.stringify(path)} in ${bareName(struct)} (profile ${this.source})`);
    return f;
  }

  fieldOffset(struct: string, path: string): number {
    return this.field(struct, path).offset;
  }

  hasField(struct: string, path: string): boolean {
    if (this.#byStruct.get(struct)?.has(path)) return true;
    return this.#lookup(bareName(struct), path) !== null;
  }

  /**
   * The first of several alternative field names that the struct has: for fields renamed
   * between kernel versions, e.g. `firstField('task_struct', ['__state', 'state'])` (renamed in
   * 5.14). Throws MissingSymbolError listing all of them when none exists.
   */
  firstField(struct: string, names: readonly string[]): FieldLayout {
    for (const n of names) {
      const f = this.#lookup(bareName(struct), n);
      if (f) return f;
    }
    throw new MissingSymbolError(`${bareName(struct)}.${names[0] ?? ''}`, `none of the fields ${names.map((n) => JSON.stringify(n)).join(', ')} in ${bareName(struct)} (profile ${this.source})`);
  }

  /** The struct's own fields (anonymous members listed as themselves), in offset order. */
  fields(struct: string): FieldLayout[] {
    const t = this.userType(struct);
    return Object.keys(t.fields)
      .map((name) => {
        const f = t.fields[name];
        return { name, offset: f.offset, type: f.type, size: this.#safeSize(f.type) };
      })
      .sort((a, b) => a.offset - b.offset || a.name.localeCompare(b.name));
  }

  #safeSize(t: TypeRef): number {
    try {
      return this.sizeOf(t);
    } catch {
      return 0;
    }
  }

  #lookup(struct: string, path: string): FieldLayout | null {
    const key = `${struct}\0${path}`;
    const hit = this.#fieldCache.get(key);
    if (hit !== undefined) return hit;
    const result = this.#walk(struct, path);
    this.#fieldCache.set(key, result);
    return result;
  }

  #walk(struct: string, path: string): FieldLayout | null {
    const parts = path.split('.');
    let current: string = struct;
    let offset = 0;
    let type: TypeRef | undefined;
    for (let i = 0; i < parts.length; i++) {
      const m = PATH_PART.exec(parts[i]);
      if (!m) return null;
      if (i > 0) {
        // Only an embedded struct/union can be stepped into (a pointer would be a dereference).
        if (!type || (type.kind !== 'struct' && type.kind !== 'union' && type.kind !== 'class')) return null;
        current = type.name;
      }
      const member = this.#flatFields(current)?.get(m[1]);
      if (!member) return null;
      offset += member.offset;
      type = member.type;
      if (m[2]) {
        for (const idx of m[2].slice(1, -1).split('][')) {
          if (type.kind !== 'array') return null;
          const n = Number(idx);
          if (n >= type.count && type.count !== 0) return null;
          type = type.subtype;
          offset += n * this.#safeSize(type);
        }
      }
    }
    if (!type || !Number.isSafeInteger(offset)) return null;
    return { name: path, offset, type, size: this.#safeSize(type) };
  }

  /**
   * Every field name reachable in a struct without naming an anonymous member: its own fields
   * first, then those of its anonymous members (recursively), with offsets made relative to the
   * struct. A named field wins over one found inside an anonymous member.
   */
  #flatFields(struct: string): Map<string, { offset: number; type: TypeRef }> | undefined {
    let flat = this.#flat.get(struct);
    if (flat) return flat;
    const t = this.#store.userType(struct);
    if (!t) return undefined;
    flat = new Map();
    this.#flat.set(struct, flat); // set first: a (corrupt) self-containing struct cannot loop
    const anonymous: Array<[string, IsfField]> = [];
    for (const name of Object.keys(t.fields)) {
      const f = t.fields[name];
      flat.set(name, { offset: f.offset, type: f.type });
      if (f.anonymous || /^unnamed_field_[0-9a-f]+$/.test(name)) anonymous.push([name, f]);
    }
    for (const [, f] of anonymous) {
      const ft = f.type;
      if (ft.kind !== 'struct' && ft.kind !== 'union' && ft.kind !== 'class') continue;
      const inner = this.#flatFields(ft.name);
      if (!inner) continue;
      for (const [n, sub] of inner) {
        if (!flat.has(n)) flat.set(n, { offset: f.offset + sub.offset, type: sub.type });
      }
    }
    return flat;
  }

  hasSymbol(name: string): boolean {
    return this.#store.hasSymbol(name);
  }

  /** Every symbol name the profile has. */
  symbolNames(): string[] {
    return this.#store.symbolNames();
  }

  /** Link-time address of a symbol (before any KASLR slide). */
  symbol(name: string): bigint {
    const a = this.#store.symbolAddress(name);
    if (a === undefined) throw new MissingSymbolError(name, `no symbol ${JSON.stringify(name)} in profile ${this.source}`);
    return a;
  }

  /** The symbol's entry: address, type when DWARF knew it, constant data. */
  symbolInfo(name: string): IsfSymbol | undefined {
    return this.#store.symbol(name);
  }

  symbolType(name: string): TypeRef | undefined {
    return this.#store.symbol(name)?.type;
  }

  enum(name: string): IsfEnum {
    const e = this.#store.enumType(bareName(name));
    if (!e) throw new MissingSymbolError(bareName(name), `no enum ${JSON.stringify(bareName(name))} in profile ${this.source}`);
    return e;
  }

  /** Value of an enumerator, looked up in one enum or (without `enumName`) in all of them. */
  enumConstant(enumName: string | undefined, constant: string): bigint {
    if (enumName !== undefined) {
      const v = own(this.enum(enumName).constants, constant);
      if (v === undefined) throw new MissingSymbolError(constant, `no constant ${constant} in enum ${bareName(enumName)} (profile ${this.source})`);
      return v;
    }
    const v = this.#store.anyEnumConstant(constant);
    if (v !== undefined) return v;
    throw new MissingSymbolError(constant, `no enum constant ${constant} in profile ${this.source}`);
  }

  hasEnumConstant(enumName: string | undefined, constant: string): boolean {
    try {
      this.enumConstant(enumName, constant);
      return true;
    } catch {
      return false;
    }
  }

  get counts(): { baseTypes: number; userTypes: number; enums: number; symbols: number } {
    return this.#store.counts;
  }
}

/** Cuts a banner at its first NUL and drops trailing whitespace (the kernel's ends with "\n"). */
export function normalizeBanner(banner: string): string {
  const nul = banner.indexOf('\0');
  return (nul >= 0 ? banner.slice(0, nul) : banner).trimEnd();
}

/** The banner a profile document records, if any. */
export function profileBanner(doc: IsfDocument): string | undefined {
  return bannerOf(doc.metadata, own(doc.symbols, 'linux_banner'));
}

function bannerOf(metadata: IsfMetadata, linuxBanner: IsfSymbol | undefined): string | undefined {
  const meta = metadata.linux?.banner;
  if (typeof meta === 'string' && meta !== '') return normalizeBanner(meta);
  const data = linuxBanner?.constant_data;
  if (typeof data === 'string' && data !== '') {
    const text = normalizeBanner(Buffer.from(data, 'base64').toString('latin1'));
    if (text !== '') return text;
  }
  return undefined;
}
