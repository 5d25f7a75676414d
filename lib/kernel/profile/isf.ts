/**
 * The profile format: the subset of Volatility 3's Intermediate Symbol Format (ISF, schema 6.2.0)
 * that dwarf2json writes for Linux, so that existing ISF files load as they are.
 *
 * In memory, addresses and enum constants are bigint (kernel addresses do not fit a double, and
 * neither does every enum value); in the JSON they are plain integers, as dwarf2json writes them.
 */

export const ISF_FORMAT = '6.2.0';

/** A reference to a type (ISF "type descriptor"). Typedefs and qualifiers are already resolved. */
export type TypeRef =
  | { kind: 'base'; name: string }
  | { kind: 'struct' | 'union' | 'class'; name: string }
  | { kind: 'enum'; name: string }
  | { kind: 'pointer'; subtype: TypeRef; base?: string }
  | { kind: 'array'; count: number; subtype: TypeRef }
  | { kind: 'function' }
  | { kind: 'bitfield'; bit_position: number; bit_length: number; type: TypeRef };

export type TypeKind = TypeRef['kind'];

export interface IsfBaseType {
  kind: 'int' | 'char' | 'bool' | 'float' | 'void';
  size: number;
  signed: boolean;
  endian: 'little' | 'big';
}

export interface IsfField {
  offset: number;
  type: TypeRef;
  /** dwarf2json's `unnamed_field_N` members (anonymous structs/unions). */
  anonymous?: boolean;
}

export interface IsfUserType {
  kind: 'struct' | 'union' | 'class';
  size: number;
  fields: Record<string, IsfField>;
}

export interface IsfEnum {
  size: number;
  /** Name of the base type with the enum's size and signedness ("void" when none matched). */
  base: string;
  constants: Record<string, bigint>;
}

export interface IsfSymbol {
  address: bigint;
  type?: TypeRef;
  /** Base64 of the symbol's bytes (dwarf2json stores `linux_banner` this way). */
  constant_data?: string;
  linkage_name?: string;
}

export interface IsfSourceInfo {
  kind?: 'dwarf' | 'symtab' | 'system-map';
  name?: string;
  hash_type?: 'sha256';
  hash_value?: string;
}

export interface IsfMetadata {
  format: string;
  producer?: { name?: string; version?: string; datetime?: string };
  linux?: {
    symbols?: IsfSourceInfo[];
    types?: IsfSourceInfo[];
    /** Not in Volatility's schema: accepted on load when another tool wrote it; we never write it. */
    banner?: string;
  };
  [key: string]: unknown;
}

export interface IsfDocument {
  metadata: IsfMetadata;
  base_types: Record<string, IsfBaseType>;
  user_types: Record<string, IsfUserType>;
  enums: Record<string, IsfEnum>;
  symbols: Record<string, IsfSymbol>;
}

/** An object without a prototype, so that type names like `__proto__` or `constructor` are plain keys. */
export function dict<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

/** Own-property lookup (ISF objects are dictionaries keyed by arbitrary names). */
export function own<T>(rec: Record<string, T>, key: string): T | undefined {
  return Object.prototype.hasOwnProperty.call(rec, key) ? rec[key] : undefined;
}
