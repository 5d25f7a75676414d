/**
 * Reading and checking ISF profile files (plain JSON or gzip-compressed JSON).
 *
 * A profile is data from outside, so everything is checked before use: the document shape, each
 * type descriptor (recursively, with a depth bound), integers where integers belong. Checking
 * normalises in place (addresses and enum constants become bigint) instead of copying the tens of
 * megabytes a kernel profile has.
 */
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { VmiError, ValidationError } from '../../errors';
import { parseJsonExact, jsonInteger } from './json';
import type { IsfDocument } from './isf';

/** Upper bounds on what a profile file may be, compressed and not. */
export const MAX_PROFILE_FILE_BYTES = 512 * 1024 * 1024;
export const MAX_PROFILE_JSON_BYTES = 1024 * 1024 * 1024;
const MAX_TYPE_DEPTH = 64;

/** The JSON text of a profile file, inflated when it is gzip-compressed (by content, not by name). */
export function readProfileText(path: string): string {
  return profileText(readProfileBytes(path), path);
}

/** The bytes of a profile file, as stored (perhaps compressed), within the size bound. */
export function readProfileBytes(path: string): Buffer {
  const size = fs.statSync(path).size;
  if (size > MAX_PROFILE_FILE_BYTES) throw new ValidationError(`${path}: ${size} bytes is too large for a profile`);
  return fs.readFileSync(path);
}

/** The JSON text of a profile file's bytes (`path` names it in messages). */
export function profileText(raw: Buffer, path: string): string {
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    return zlib.gunzipSync(raw, { maxOutputLength: MAX_PROFILE_JSON_BYTES }).toString('utf8');
  }
  if (raw.length >= 6 && raw.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) {
    throw new VmiError('EPROFILEFORMAT', `${path}: xz-compressed profiles are not supported; decompress it first (xz -d)`);
  }
  return raw.toString('utf8');
}

/** Parses and validates ISF JSON text. `source` names the file in error messages. */
export function parseProfile(text: string, source = '<profile>'): IsfDocument {
  let raw: unknown;
  try {
    raw = parseJsonExact(text);
  } catch (err) {
    throw new ValidationError(`${source}: not valid JSON: ${(err as Error).message}`);
  }
  return validateIsf(raw, source);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Checks an ISF document and normalises it in place: symbol addresses and enum constants become
 * bigint, absent optional parts get their defaults. Throws ValidationError naming the first bad
 * element (`user_types.task_struct.fields.pid.type: ...`).
 */
export function validateIsf(raw: unknown, source = '<profile>'): IsfDocument {
  const fail = (where: string, what: string): never => {
    throw new ValidationError(`${source}: ${where}: ${what}`);
  };
  if (!isObject(raw)) return fail('document', 'not a JSON object');
  const meta = raw.metadata;
  if (!isObject(meta)) return fail('metadata', 'missing');
  if (typeof meta.format !== 'string' || !/^6\.\d+\.\d+$/.test(meta.format)) {
    return fail('metadata.format', `unsupported ISF format ${JSON.stringify(meta.format)} (6.x.y is supported)`);
  }
  if (meta.linux !== undefined && !isObject(meta.linux)) fail('metadata.linux', 'not an object');
  if (isObject(meta.linux) && meta.linux.banner !== undefined && typeof meta.linux.banner !== 'string') fail('metadata.linux.banner', 'not a string');

  for (const key of ['base_types', 'user_types', 'enums', 'symbols']) {
    if (raw[key] === undefined) raw[key] = {};
    if (!isObject(raw[key])) fail(key, 'not an object');
  }

  const intField = (where: string, v: unknown, min = 0): number => {
    // safe integers only: sizes, offsets and counts become read lengths and addresses
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) return fail(where, `expected an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v;
  };

  const baseTypes = raw.base_types as Record<string, unknown>;
  for (const name of Object.keys(baseTypes)) {
    const b = baseTypes[name];
    const where = `base_types.${name}`;
    if (!isObject(b)) return fail(where, 'not an object');
    if (!['int', 'char', 'bool', 'float', 'void'].includes(b.kind as string)) fail(`${where}.kind`, `unknown kind ${JSON.stringify(b.kind)}`);
    intField(`${where}.size`, b.size);
    if (b.signed === undefined) b.signed = false;
    else if (typeof b.signed !== 'boolean') fail(`${where}.signed`, 'not a boolean');
    if (b.endian === undefined) b.endian = 'little';
    else if (b.endian !== 'little' && b.endian !== 'big') fail(`${where}.endian`, `unknown endian ${JSON.stringify(b.endian)}`);
  }

  const checkType = (where: string, t: unknown, depth: number): void => {
    if (depth > MAX_TYPE_DEPTH) fail(where, 'type nested too deeply');
    if (!isObject(t)) return fail(where, 'not a type descriptor');
    switch (t.kind) {
      case 'base':
      case 'struct':
      case 'union':
      case 'class':
      case 'enum':
        if (typeof t.name !== 'string') fail(`${where}.name`, 'missing');
        break;
      case 'pointer':
        if (t.subtype === undefined) t.subtype = { kind: 'base', name: 'void' };
        checkType(`${where}.subtype`, t.subtype, depth + 1);
        break;
      case 'array':
        intField(`${where}.count`, t.count);
        checkType(`${where}.subtype`, t.subtype, depth + 1);
        break;
      case 'function':
        break;
      case 'bitfield':
        intField(`${where}.bit_position`, t.bit_position);
        intField(`${where}.bit_length`, t.bit_length, 1);
        checkType(`${where}.type`, t.type, depth + 1);
        break;
      default:
        fail(`${where}.kind`, `unknown kind ${JSON.stringify(t.kind)}`);
    }
  };

  const userTypes = raw.user_types as Record<string, unknown>;
  for (const name of Object.keys(userTypes)) {
    const u = userTypes[name];
    const where = `user_types.${name}`;
    if (!isObject(u)) return fail(where, 'not an object');
    if (u.kind !== 'struct' && u.kind !== 'union' && u.kind !== 'class') fail(`${where}.kind`, `unknown kind ${JSON.stringify(u.kind)}`);
    intField(`${where}.size`, u.size);
    if (!isObject(u.fields)) return fail(`${where}.fields`, 'not an object');
    for (const fname of Object.keys(u.fields)) {
      const f = u.fields[fname];
      const fw = `${where}.fields.${fname}`;
      if (!isObject(f)) return fail(fw, 'not an object');
      intField(`${fw}.offset`, f.offset);
      checkType(`${fw}.type`, f.type, 0);
      if (f.anonymous !== undefined && typeof f.anonymous !== 'boolean') fail(`${fw}.anonymous`, 'not a boolean');
    }
  }

  const enums = raw.enums as Record<string, unknown>;
  for (const name of Object.keys(enums)) {
    const e = enums[name];
    const where = `enums.${name}`;
    if (!isObject(e)) return fail(where, 'not an object');
    intField(`${where}.size`, e.size);
    if (e.base === undefined) e.base = 'void';
    else if (typeof e.base !== 'string') fail(`${where}.base`, 'not a string');
    if (!isObject(e.constants)) return fail(`${where}.constants`, 'not an object');
    for (const c of Object.keys(e.constants)) {
      const v = jsonInteger(e.constants[c]);
      if (v === undefined) return fail(`${where}.constants.${c}`, 'not an integer');
      e.constants[c] = v;
    }
  }

  const symbols = raw.symbols as Record<string, unknown>;
  for (const name of Object.keys(symbols)) {
    const s = symbols[name];
    const where = `symbols.${name}`;
    if (!isObject(s)) return fail(where, 'not an object');
    const a = jsonInteger(s.address);
    if (a === undefined || a < 0n || a >= 1n << 64n) return fail(`${where}.address`, `not an address: ${JSON.stringify(String(s.address))}`);
    s.address = a;
    if (s.type !== undefined) checkType(`${where}.type`, s.type, 0);
    if (s.constant_data !== undefined && (typeof s.constant_data !== 'string' || !/^[A-Za-z0-9+/=\s]*$/.test(s.constant_data))) {
      fail(`${where}.constant_data`, 'not base64');
    }
  }
  return raw as unknown as IsfDocument;
}

/** Reads, parses and validates a profile file. */
export function loadProfileDocument(path: string): IsfDocument {
  return parseProfile(readProfileText(path), path);
}

