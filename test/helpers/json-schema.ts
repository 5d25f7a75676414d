/**
 * A small JSON Schema validator for the subset of draft 2020-12 docs/schemas/ uses: type (one or a
 * list), required, properties, additionalProperties (false or a schema), items, enum, pattern,
 * minimum. Any other keyword is an error, so a schema cannot say more than is checked.
 */
export interface Schema {
  $schema?: string;
  $id?: string;
  title?: string;
  description?: string;
  type?: JsonType | JsonType[];
  required?: string[];
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  items?: Schema;
  enum?: unknown[];
  pattern?: string;
  minimum?: number;
}

export type JsonType = 'object' | 'array' | 'string' | 'number' | 'integer' | 'boolean' | 'null';

const KEYWORDS = new Set(['$schema', '$id', 'title', 'description', 'type', 'required', 'properties', 'additionalProperties', 'items', 'enum', 'pattern', 'minimum']);

function typeOf(v: unknown): JsonType | 'other' {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  if (typeof v === 'string' || typeof v === 'boolean' || typeof v === 'object') return typeof v as JsonType;
  return 'other';
}

function hasType(v: unknown, t: JsonType): boolean {
  const actual = typeOf(v);
  return actual === t || (t === 'number' && actual === 'integer');
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Every way `value` breaks `schema`, each as "PATH: what"; empty when it conforms. */
export function validate(schema: Schema, value: unknown, path = '$'): string[] {
  const errors: string[] = [];
  for (const k of Object.keys(schema)) if (!KEYWORDS.has(k)) errors.push(`${path}: the schema uses ${k}, which this validator does not know`);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => hasType(value, t))) return [...errors, `${path}: ${typeOf(value)}, not ${types.join(' or ')}`];
  }
  if (schema.enum !== undefined && !schema.enum.some((e) => deepEqual(e, value))) errors.push(`${path}: ${JSON.stringify(value)} is none of ${JSON.stringify(schema.enum)}`);
  if (typeof value === 'string' && schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) errors.push(`${path}: ${JSON.stringify(value)} does not match /${schema.pattern}/`);
  if (typeof value === 'number' && schema.minimum !== undefined && value < schema.minimum) errors.push(`${path}: ${value} is below the minimum ${schema.minimum}`);
  if (Array.isArray(value) && schema.items !== undefined) value.forEach((v, i) => errors.push(...validate(schema.items!, v, `${path}[${i}]`)));
  if (typeOf(value) === 'object') {
    const o = value as Record<string, unknown>;
    for (const r of schema.required ?? []) if (!Object.hasOwn(o, r)) errors.push(`${path}: required ${r} is missing`);
    for (const [k, v] of Object.entries(o)) {
      const sub = schema.properties?.[k];
      if (sub !== undefined) errors.push(...validate(sub, v, `${path}.${k}`));
      else if (schema.additionalProperties === false) errors.push(`${path}: ${k} is not allowed`);
      else if (typeof schema.additionalProperties === 'object') errors.push(...validate(schema.additionalProperties, v, `${path}.${k}`));
    }
  }
  return errors;
}
