/**
 * Where a Profile keeps its document, in two forms.
 *
 * `DocumentStore` is the validated ISF document itself, live: a caller that built the document
 * (a profile built from a vmlinux or from memory, a test) may still change it and see the change.
 *
 * `PackedStore` holds a profile loaded from a file in a handful of large objects instead of the
 * parsed document's ~900k small ones (121k symbol objects, each with a bigint and a type
 * descriptor; a field object and a type descriptor per struct member), which every full garbage
 * collection of a long-running process would otherwise mark again. Names sit in one sorted
 * string, symbol addresses in a BigUint64Array, and each struct, enum and symbol entry as its
 * validated JSON text in one string, parsed again only when it is asked for (a listing asks for a
 * few dozen structs). The document, when something asks for all of it, is rebuilt from that text.
 */
import { own, dict, type IsfBaseType, type IsfDocument, type IsfEnum, type IsfMetadata, type IsfSymbol, type IsfUserType, type TypeRef } from './isf';

export interface ProfileStore {
  readonly metadata: IsfMetadata;
  baseType(name: string): IsfBaseType | undefined;
  userType(name: string): IsfUserType | undefined;
  enumType(name: string): IsfEnum | undefined;
  hasSymbol(name: string): boolean;
  symbolAddress(name: string): bigint | undefined;
  symbol(name: string): IsfSymbol | undefined;
  /** An enumerator's value looked up in every enum, the first enum (in document order) winning. */
  anyEnumConstant(constant: string): bigint | undefined;
  /** Names in document order. */
  baseTypeNames(): string[];
  userTypeNames(): string[];
  enumNames(): string[];
  symbolNames(): string[];
  readonly counts: { baseTypes: number; userTypes: number; enums: number; symbols: number };
}

export class DocumentStore implements ProfileStore {
  #constants: Map<string, bigint> | undefined;
  constructor(readonly doc: IsfDocument) {}
  anyEnumConstant(constant: string): bigint | undefined {
    if (!this.#constants) {
      this.#constants = new Map();
      for (const name of Object.keys(this.doc.enums)) {
        const constants = this.doc.enums[name].constants;
        for (const c of Object.keys(constants)) if (!this.#constants.has(c)) this.#constants.set(c, constants[c]);
      }
    }
    return this.#constants.get(constant);
  }
  get metadata(): IsfMetadata {
    return this.doc.metadata;
  }
  baseType(name: string): IsfBaseType | undefined {
    return own(this.doc.base_types, name);
  }
  userType(name: string): IsfUserType | undefined {
    return own(this.doc.user_types, name);
  }
  enumType(name: string): IsfEnum | undefined {
    return own(this.doc.enums, name);
  }
  hasSymbol(name: string): boolean {
    return own(this.doc.symbols, name) !== undefined;
  }
  symbolAddress(name: string): bigint | undefined {
    return own(this.doc.symbols, name)?.address;
  }
  symbol(name: string): IsfSymbol | undefined {
    return own(this.doc.symbols, name);
  }
  baseTypeNames(): string[] {
    return Object.keys(this.doc.base_types);
  }
  userTypeNames(): string[] {
    return Object.keys(this.doc.user_types);
  }
  enumNames(): string[] {
    return Object.keys(this.doc.enums);
  }
  symbolNames(): string[] {
    return Object.keys(this.doc.symbols);
  }
  get counts(): { baseTypes: number; userTypes: number; enums: number; symbols: number } {
    return {
      baseTypes: Object.keys(this.doc.base_types).length,
      userTypes: Object.keys(this.doc.user_types).length,
      enums: Object.keys(this.doc.enums).length,
      symbols: Object.keys(this.doc.symbols).length,
    };
  }
}

export interface NameIndexParts {
  text: string;
  start: Uint32Array;
  docIndex: Uint32Array;
  sortedAt: Uint32Array;
}

export interface TextsParts {
  text: string;
  start: Uint32Array;
}

/** Everything a PackedStore holds, for the packed cache file (cache.ts). */
export interface PackedParts {
  metadata: IsfMetadata;
  rest: Record<string, unknown>;
  baseTypes: Record<string, IsfBaseType>;
  userNames: NameIndexParts;
  userText: TextsParts;
  enumNames: NameIndexParts;
  enumText: TextsParts;
  symbolNames: NameIndexParts;
  addresses: BigUint64Array;
  symbolText: TextsParts;
  typeOnly: Uint8Array;
}

/** Offsets read back from a cache file must be n+1 rising values within the text. */
function checkOffsets(start: Uint32Array, n: number, textLength: number): void {
  if (n < 0 || start.length !== n + 1 || start[0] !== 0 || start[n] !== textLength) throw new Error('offsets do not fit the text');
  for (let i = 0; i < n; i++) if (start[i] > start[i + 1]) throw new Error('offsets out of order');
}

/** Orders strings by UTF-16 code units, as the binary search compares them. */
function codeUnitOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A set of names in one string, sorted, found by binary search without making a string per
 * lookup. Index `i` is the name's place in document order.
 */
class NameIndex {
  readonly #text: string;
  /** Start of the k-th name in sorted order (k = 0..n; the last is the end). */
  readonly #start: Uint32Array;
  /** Document index of the k-th name in sorted order. */
  readonly #docIndex: Uint32Array;
  /** Sorted position of the i-th name in document order. */
  readonly #sortedAt: Uint32Array;

  /** From names in document order, or (`parts`) from what `parts()` gave. */
  constructor(names: readonly string[], from?: NameIndexParts) {
    if (from) {
      const n = from.docIndex.length;
      checkOffsets(from.start, n, from.text.length);
      if (from.sortedAt.length !== n) throw new Error('name index: lengths differ');
      for (let k = 0; k < n; k++) if (from.docIndex[k] >= n || from.sortedAt[from.docIndex[k]] !== k) throw new Error('name index: not a permutation');
      this.#text = from.text;
      this.#start = from.start;
      this.#docIndex = from.docIndex;
      this.#sortedAt = from.sortedAt;
      return;
    }
    const n = names.length;
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => codeUnitOrder(names[a], names[b]));
    this.#start = new Uint32Array(n + 1);
    this.#docIndex = new Uint32Array(n);
    this.#sortedAt = new Uint32Array(n);
    const parts: string[] = [];
    let at = 0;
    for (let k = 0; k < n; k++) {
      const i = order[k];
      this.#start[k] = at;
      this.#docIndex[k] = i;
      this.#sortedAt[i] = k;
      parts.push(names[i]);
      at += names[i].length;
    }
    this.#start[n] = at;
    this.#text = parts.join('');
  }

  get size(): number {
    return this.#docIndex.length;
  }

  parts(): NameIndexParts {
    return { text: this.#text, start: this.#start, docIndex: this.#docIndex, sortedAt: this.#sortedAt };
  }

  /** Document index of the name, or -1. */
  indexOf(name: string): number {
    let lo = 0;
    let hi = this.#docIndex.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = this.#compare(name, mid);
      if (c === 0) return this.#docIndex[mid];
      if (c < 0) hi = mid;
      else lo = mid + 1;
    }
    return -1;
  }

  #compare(name: string, k: number): number {
    const s = this.#start[k];
    const len = this.#start[k + 1] - s;
    const n = Math.min(len, name.length);
    for (let j = 0; j < n; j++) {
      const d = name.charCodeAt(j) - this.#text.charCodeAt(s + j);
      if (d !== 0) return d;
    }
    return name.length - len;
  }

  nameAt(i: number): string {
    const k = this.#sortedAt[i];
    return this.#text.slice(this.#start[k], this.#start[k + 1]);
  }

  names(): string[] {
    const out = new Array<string>(this.size);
    for (let i = 0; i < out.length; i++) out[i] = this.nameAt(i);
    return out;
  }
}

/** Pieces of text in one string; piece `i` by index. */
class Texts {
  readonly #text: string;
  readonly #start: Uint32Array;

  constructor(pieces: readonly string[], parts?: TextsParts) {
    if (parts) {
      checkOffsets(parts.start, parts.start.length - 1, parts.text.length);
      this.#text = parts.text;
      this.#start = parts.start;
      return;
    }
    this.#start = new Uint32Array(pieces.length + 1);
    let at = 0;
    for (let i = 0; i < pieces.length; i++) {
      this.#start[i] = at;
      at += pieces[i].length;
    }
    this.#start[pieces.length] = at;
    this.#text = pieces.join('');
  }

  parts(): TextsParts {
    return { text: this.#text, start: this.#start };
  }

  at(i: number): string {
    return this.#text.slice(this.#start[i], this.#start[i + 1]);
  }

  get count(): number {
    return this.#start.length - 1;
  }

  empty(i: number): boolean {
    return this.#start[i] === this.#start[i + 1];
  }
}

/** JSON text of an enum, its bigint constants as decimal strings (other entries hold no bigint). */
function packEnum(e: IsfEnum): string {
  const constants = dict<string>();
  for (const c of Object.keys(e.constants)) constants[c] = e.constants[c].toString();
  return JSON.stringify({ ...e, constants });
}

export class PackedStore implements ProfileStore {
  readonly metadata: IsfMetadata;
  /** Top-level members other than the four sections, kept as they are for the document. */
  readonly #rest: Record<string, unknown>;
  readonly #baseTypes: Record<string, IsfBaseType>;
  readonly #userNames: NameIndex;
  readonly #userText: Texts;
  readonly #enumNames: NameIndex;
  readonly #enumText: Texts;
  readonly #symbolNames: NameIndex;
  readonly #addresses: BigUint64Array;
  /** A symbol's entry but its address (type, constant data), or only its type; empty text when it has no more. */
  readonly #symbolText: Texts;
  /** 1 where the text is the symbol's type alone (the entry is `{ address, type }`). */
  readonly #typeOnly: Uint8Array;
  /** Entries asked for, parsed once: the ones a listing reads are few. */
  readonly #userCache = new Map<number, IsfUserType>();
  readonly #enumCache = new Map<number, IsfEnum>();
  /** Every enumerator name (first enum winning) and the index of its enum; built when first asked. */
  #constants: { names: NameIndex; enumOf: Uint32Array } | undefined;

  /** Packs a validated document (the document is not kept), or takes back what `parts()` gave. */
  constructor(doc: IsfDocument | null, parts?: PackedParts) {
    if (!doc) {
      if (!parts) throw new Error('nothing to pack');
      this.metadata = parts.metadata;
      this.#rest = parts.rest;
      this.#baseTypes = parts.baseTypes;
      this.#userNames = new NameIndex([], parts.userNames);
      this.#userText = new Texts([], parts.userText);
      this.#enumNames = new NameIndex([], parts.enumNames);
      this.#enumText = new Texts([], parts.enumText);
      this.#symbolNames = new NameIndex([], parts.symbolNames);
      this.#addresses = parts.addresses;
      this.#symbolText = new Texts([], parts.symbolText);
      this.#typeOnly = parts.typeOnly;
      const n = this.#symbolNames.size;
      if (this.#userText.count !== this.#userNames.size || this.#enumText.count !== this.#enumNames.size || this.#addresses.length !== n || this.#symbolText.count !== n || this.#typeOnly.length !== n) {
        throw new Error('packed parts of different lengths');
      }
      return;
    }
    this.metadata = doc.metadata;
    this.#rest = {};
    for (const key of Object.keys(doc)) {
      if (key !== 'metadata' && key !== 'base_types' && key !== 'user_types' && key !== 'enums' && key !== 'symbols') {
        this.#rest[key] = (doc as unknown as Record<string, unknown>)[key];
      }
    }
    this.#baseTypes = doc.base_types;
    const users = Object.keys(doc.user_types);
    this.#userNames = new NameIndex(users);
    this.#userText = new Texts(users.map((n) => JSON.stringify(doc.user_types[n])));
    const enums = Object.keys(doc.enums);
    this.#enumNames = new NameIndex(enums);
    this.#enumText = new Texts(enums.map((n) => packEnum(doc.enums[n])));
    const symbols = Object.keys(doc.symbols);
    this.#symbolNames = new NameIndex(symbols);
    this.#addresses = new BigUint64Array(symbols.length);
    this.#typeOnly = new Uint8Array(symbols.length);
    const pieces = new Array<string>(symbols.length);
    for (let i = 0; i < symbols.length; i++) {
      const s = doc.symbols[symbols[i]];
      this.#addresses[i] = s.address;
      let keys = 0;
      for (const _ in s) keys++;
      if (keys === 1) pieces[i] = '';
      else if (keys === 2 && s.type !== undefined) {
        // most entries are an address and a type: the type alone is half the work to write
        this.#typeOnly[i] = 1;
        pieces[i] = JSON.stringify(s.type);
      } else {
        const rest = dict<unknown>();
        for (const k in s) if (k !== 'address') rest[k] = (s as unknown as Record<string, unknown>)[k];
        pieces[i] = JSON.stringify(rest);
      }
    }
    this.#symbolText = new Texts(pieces);
  }

  parts(): PackedParts {
    return {
      metadata: this.metadata,
      rest: this.#rest,
      baseTypes: this.#baseTypes,
      userNames: this.#userNames.parts(),
      userText: this.#userText.parts(),
      enumNames: this.#enumNames.parts(),
      enumText: this.#enumText.parts(),
      symbolNames: this.#symbolNames.parts(),
      addresses: this.#addresses,
      symbolText: this.#symbolText.parts(),
      typeOnly: this.#typeOnly,
    };
  }

  baseType(name: string): IsfBaseType | undefined {
    return own(this.#baseTypes, name);
  }

  userType(name: string): IsfUserType | undefined {
    const i = this.#userNames.indexOf(name);
    if (i < 0) return undefined;
    let t = this.#userCache.get(i);
    if (!t) this.#userCache.set(i, (t = JSON.parse(this.#userText.at(i)) as IsfUserType));
    return t;
  }

  enumType(name: string): IsfEnum | undefined {
    const i = this.#enumNames.indexOf(name);
    return i < 0 ? undefined : this.#enumAt(i);
  }

  #enumAt(i: number): IsfEnum {
    let e = this.#enumCache.get(i);
    if (!e) {
      e = JSON.parse(this.#enumText.at(i)) as IsfEnum;
      const c = e.constants as unknown as Record<string, string>;
      for (const k of Object.keys(c)) (e.constants as Record<string, bigint>)[k] = BigInt(c[k]);
      this.#enumCache.set(i, e);
    }
    return e;
  }

  anyEnumConstant(constant: string): bigint | undefined {
    if (!this.#constants) {
      const seen = new Map<string, number>();
      for (let i = 0; i < this.#enumNames.size; i++) {
        const e = JSON.parse(this.#enumText.at(i)) as { constants: Record<string, unknown> };
        for (const c of Object.keys(e.constants)) if (!seen.has(c)) seen.set(c, i);
      }
      this.#constants = { names: new NameIndex([...seen.keys()]), enumOf: Uint32Array.from(seen.values()) };
    }
    const k = this.#constants.names.indexOf(constant);
    return k < 0 ? undefined : own(this.#enumAt(this.#constants.enumOf[k]).constants, constant);
  }

  hasSymbol(name: string): boolean {
    return this.#symbolNames.indexOf(name) >= 0;
  }

  symbolAddress(name: string): bigint | undefined {
    const i = this.#symbolNames.indexOf(name);
    return i < 0 ? undefined : this.#addresses[i];
  }

  /** A new object each time (as cheap as the old entry was, and nobody keeps a reference). */
  symbol(name: string): IsfSymbol | undefined {
    const i = this.#symbolNames.indexOf(name);
    return i < 0 ? undefined : this.#symbolAt(i);
  }

  #symbolAt(i: number): IsfSymbol {
    if (this.#symbolText.empty(i)) return { address: this.#addresses[i] };
    if (this.#typeOnly[i] === 1) return { address: this.#addresses[i], type: JSON.parse(this.#symbolText.at(i)) as TypeRef };
    return { address: this.#addresses[i], ...(JSON.parse(this.#symbolText.at(i)) as Omit<IsfSymbol, 'address'>) };
  }

  baseTypeNames(): string[] {
    return Object.keys(this.#baseTypes);
  }
  userTypeNames(): string[] {
    return this.#userNames.names();
  }
  enumNames(): string[] {
    return this.#enumNames.names();
  }
  symbolNames(): string[] {
    return this.#symbolNames.names();
  }

  get counts(): { baseTypes: number; userTypes: number; enums: number; symbols: number } {
    return {
      baseTypes: Object.keys(this.#baseTypes).length,
      userTypes: this.#userNames.size,
      enums: this.#enumNames.size,
      symbols: this.#symbolNames.size,
    };
  }

  /** The whole document again, as validation left it (entries already asked for are shared). */
  toDocument(): IsfDocument {
    const userTypes = dict<IsfUserType>();
    for (let i = 0; i < this.#userNames.size; i++) {
      userTypes[this.#userNames.nameAt(i)] = this.#userCache.get(i) ?? (JSON.parse(this.#userText.at(i)) as IsfUserType);
    }
    const enums = dict<IsfEnum>();
    for (let i = 0; i < this.#enumNames.size; i++) enums[this.#enumNames.nameAt(i)] = this.#enumAt(i);
    const symbols = dict<IsfSymbol>();
    for (let i = 0; i < this.#symbolNames.size; i++) symbols[this.#symbolNames.nameAt(i)] = this.#symbolAt(i);
    return { metadata: this.metadata, base_types: this.#baseTypes, user_types: userTypes, enums, symbols, ...this.#rest } as IsfDocument;
  }
}
