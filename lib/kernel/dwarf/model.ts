/**
 * What the DWARF extractor produces: the C types of a program reduced to the shapes that
 * Volatility 3's ISF uses (dwarf2json's model). Typedefs and qualifiers are resolved away;
 * anonymous structs, unions and enums get content-derived `unnamed_<hash>` names.
 */

/** A reference to a type, in ISF's type-descriptor shape. */
export type TypeDescriptor =
  | { kind: 'base'; name: string }
  | { kind: 'struct' | 'union' | 'class'; name: string }
  | { kind: 'enum'; name: string }
  | { kind: 'pointer'; subtype: TypeDescriptor }
  | { kind: 'array'; count: number; subtype: TypeDescriptor }
  | { kind: 'function' }
  | { kind: 'bitfield'; bit_position: number; bit_length: number; type: TypeDescriptor };

export type BaseKind = 'int' | 'char' | 'bool' | 'float' | 'void';

export interface BaseTypeInfo {
  kind: BaseKind;
  size: number;
  signed: boolean;
}

export interface FieldInfo {
  offset: number;
  type: TypeDescriptor;
  /** An unnamed struct/union member, named `unnamed_field_N` like dwarf2json does. */
  anonymous?: true;
}

export interface UserTypeInfo {
  kind: 'struct' | 'union' | 'class';
  size: number;
  /** Fields in declaration order. */
  fields: Map<string, FieldInfo>;
}

export interface EnumInfo {
  size: number;
  /** True when a constant is negative (dwarf2json picks the ISF `base` from this). */
  signed: boolean;
  constants: Map<string, bigint>;
}

export interface VariableInfo {
  /** From DW_AT_location (DW_OP_addr); absent for declarations. */
  address?: bigint;
  type: TypeDescriptor;
}

export interface DwarfStats {
  units: number;
  skippedUnits: number;
  versions: number[];
  infoBytes: number;
  /** DIEs whose type could not be followed (e.g. dwz references), turned into void. */
  unresolved: number;
}

export interface DwarfModel {
  baseTypes: Map<string, BaseTypeInfo>;
  /** Size of a data pointer (from DW_TAG_pointer_type), 0 when no pointer was seen. */
  pointerSize: number;
  userTypes: Map<string, UserTypeInfo>;
  enums: Map<string, EnumInfo>;
  variables: Map<string, VariableInfo>;
  /** DW_AT_producer of the first C unit, when there is one. */
  producer?: string;
  stats: DwarfStats;
}
