/**
 * The packed-profile cache: a profile file's packed form (compact.ts) written next to the user's
 * other vmictl caches, so that the next process loads it in tens of milliseconds instead of
 * parsing, validating and packing the 17 MB of JSON again (most of a short `vmictl ps`).
 *
 * A cache file is named by the SHA-256 of the profile file's bytes, which it also records: an
 * edited profile is a different file. It ends with the SHA-256 of everything before, and its
 * offsets are checked on the way in; a file that is short, altered or of another layout is
 * ignored (and written again), never an error. Its entries were validated when the profile
 * was packed, so they are not validated again.
 *
 * Layout: MAGIC, u32le header length, header JSON, sections (each padded to 8 bytes), digest.
 *
 * Finding the cache file means hashing the whole profile (17 MB: most of the time a cached load
 * takes), so a small index maps the profile file's identity on disk — path, device, inode, size,
 * mtime and ctime, which any write changes — to the hash of its bytes, and a profile unchanged
 * since the last load is not read at all.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PackedStore, type NameIndexParts, type PackedParts, type TextsParts } from './compact';
import { parseProfile, profileText, readProfileBytes } from './load';

const MAGIC = Buffer.from('vmictl packed profile 1\n', 'latin1');
const DIGEST_BYTES = 32;
/** Smaller profiles parse in a few milliseconds: a cache file would cost more than it saves. */
export const PACKED_CACHE_MIN_BYTES = 1024 * 1024;

type Encoding = 'latin1' | 'utf16le' | 'u32' | 'u64' | 'u8';

interface Header {
  source: string;
  metadata: unknown;
  rest: unknown;
  baseTypes: unknown;
  /** name, encoding, byte length */
  sections: Array<[string, Encoding, number]>;
}

const sha256 = (b: Buffer | Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Loads a profile file packed, through the cache in `dir` when the file is large enough. */
export function loadPackedProfile(file: string, dir: string): PackedStore {
  const index = indexFileOf(file, dir);
  const known = index && readIndex(index);
  if (known) {
    const cached = readPackedCache(path.join(dir, `${known}.packed`), known);
    if (cached) return cached;
  }
  const raw = readProfileBytes(file);
  if (raw.length < PACKED_CACHE_MIN_BYTES) return new PackedStore(parseProfile(profileText(raw, file), file));
  const source = sha256(raw);
  const cacheFile = path.join(dir, `${source}.packed`);
  const cached = readPackedCache(cacheFile, source);
  const store = cached ?? new PackedStore(parseProfile(profileText(raw, file), file));
  try {
    if (!cached) writePackedCache(cacheFile, source, store);
    if (index) writeAtomically(index, Buffer.from(source, 'latin1'));
  } catch {
    // a cache that cannot be written (read-only home, full disk) only costs the next start time
  }
  return store;
}

/** The index entry for the file as it is on disk now (undefined when it cannot be stat'ed). */
function indexFileOf(file: string, dir: string): string | undefined {
  try {
    const st = fs.statSync(file, { bigint: true });
    if (st.size < BigInt(PACKED_CACHE_MIN_BYTES)) return undefined;
    const id = [path.resolve(file), st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs].join('\0');
    return path.join(dir, 'by-file', `${sha256(Buffer.from(id, 'utf8'))}.source`);
  } catch {
    return undefined;
  }
}

/** The profile hash an index entry names, if it holds one. */
function readIndex(index: string): string | undefined {
  try {
    const text = fs.readFileSync(index, 'latin1');
    return /^[0-9a-f]{64}$/.test(text) ? text : undefined;
  } catch {
    return undefined;
  }
}

/** The store a cache file holds, or undefined when it is absent, of another source or damaged. */
export function readPackedCache(cacheFile: string, source: string): PackedStore | undefined {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(cacheFile);
  } catch {
    return undefined;
  }
  try {
    if (buf.length < MAGIC.length + 4 + DIGEST_BYTES || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
    const body = buf.subarray(0, buf.length - DIGEST_BYTES);
    if (createHash('sha256').update(body).digest().compare(buf.subarray(body.length)) !== 0) return undefined;
    const headerLength = buf.readUInt32LE(MAGIC.length);
    let at = MAGIC.length + 4;
    if (at + headerLength > body.length) return undefined;
    const header = JSON.parse(buf.toString('utf8', at, at + headerLength)) as Header;
    if (header.source !== source || !Array.isArray(header.sections)) return undefined;
    at += headerLength;
    const sections = new Map<string, string | Uint32Array | BigUint64Array | Uint8Array>();
    for (const [name, encoding, bytes] of header.sections) {
      at = align8(at);
      if (!Number.isSafeInteger(bytes) || bytes < 0 || at + bytes > body.length) return undefined;
      sections.set(name, decode(buf, at, bytes, encoding));
      at += bytes;
    }
    const text = (n: string): string => {
      const v = sections.get(n);
      if (typeof v !== 'string') throw new Error(`section ${n} missing`);
      return v;
    };
    const array = <T>(n: string, type: new (...a: never[]) => T): T => {
      const v = sections.get(n);
      if (!(v instanceof type)) throw new Error(`section ${n} missing`);
      return v;
    };
    const names = (p: string): NameIndexParts => ({ text: text(`${p}.text`), start: array(`${p}.start`, Uint32Array), docIndex: array(`${p}.docIndex`, Uint32Array), sortedAt: array(`${p}.sortedAt`, Uint32Array) });
    const texts = (p: string): TextsParts => ({ text: text(`${p}.text`), start: array(`${p}.start`, Uint32Array) });
    const parts: PackedParts = {
      metadata: header.metadata as PackedParts['metadata'],
      rest: header.rest as PackedParts['rest'],
      baseTypes: header.baseTypes as PackedParts['baseTypes'],
      userNames: names('userNames'),
      userText: texts('userText'),
      enumNames: names('enumNames'),
      enumText: texts('enumText'),
      symbolNames: names('symbolNames'),
      addresses: array('addresses', BigUint64Array),
      symbolText: texts('symbolText'),
      typeOnly: array('typeOnly', Uint8Array),
    };
    if (!isObject(parts.metadata) || !isObject(parts.rest) || !isObject(parts.baseTypes)) return undefined;
    return new PackedStore(null, parts);
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): boolean {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

function decode(buf: Buffer, at: number, bytes: number, encoding: Encoding): string | Uint32Array | BigUint64Array | Uint8Array {
  // typed arrays get their own (aligned) copy: a Buffer's offset in its pool is not
  const copy = () => buf.buffer.slice(buf.byteOffset + at, buf.byteOffset + at + bytes);
  switch (encoding) {
    case 'latin1':
    case 'utf16le':
      return buf.toString(encoding, at, at + bytes);
    case 'u32':
      if (bytes % 4) throw new Error('u32 section length');
      return new Uint32Array(copy());
    case 'u64':
      if (bytes % 8) throw new Error('u64 section length');
      return new BigUint64Array(copy());
    case 'u8':
      return new Uint8Array(copy());
    default:
      throw new Error(`unknown encoding ${JSON.stringify(encoding)}`);
  }
}

/** Writes the cache file atomically (a temporary file renamed over it). */
export function writePackedCache(cacheFile: string, source: string, store: PackedStore): void {
  const p = store.parts();
  const sections: Array<[string, Buffer | ArrayBufferView, Encoding]> = [];
  const str = (name: string, s: string) => {
    // one byte a character when every character fits one, as V8 holds such strings
    const wide = /[^\x00-\xff]/.test(s);
    sections.push([name, Buffer.from(s, wide ? 'utf16le' : 'latin1'), wide ? 'utf16le' : 'latin1']);
  };
  const names = (prefix: string, n: NameIndexParts) => {
    str(`${prefix}.text`, n.text);
    sections.push([`${prefix}.start`, n.start, 'u32'], [`${prefix}.docIndex`, n.docIndex, 'u32'], [`${prefix}.sortedAt`, n.sortedAt, 'u32']);
  };
  const texts = (prefix: string, t: TextsParts) => {
    str(`${prefix}.text`, t.text);
    sections.push([`${prefix}.start`, t.start, 'u32']);
  };
  names('userNames', p.userNames);
  texts('userText', p.userText);
  names('enumNames', p.enumNames);
  texts('enumText', p.enumText);
  names('symbolNames', p.symbolNames);
  sections.push(['addresses', p.addresses, 'u64']);
  texts('symbolText', p.symbolText);
  sections.push(['typeOnly', p.typeOnly, 'u8']);

  const header: Header = { source, metadata: p.metadata, rest: p.rest, baseTypes: p.baseTypes, sections: sections.map(([n, b, e]) => [n, e, b.byteLength]) };
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const chunks: Buffer[] = [MAGIC, Buffer.alloc(4), headerBytes];
  chunks[1].writeUInt32LE(headerBytes.length);
  let at = MAGIC.length + 4 + headerBytes.length;
  for (const [, b] of sections) {
    const pad = align8(at) - at;
    if (pad) chunks.push(Buffer.alloc(pad));
    chunks.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    at += pad + b.byteLength;
  }
  const hash = createHash('sha256');
  for (const c of chunks) hash.update(c);
  chunks.push(hash.digest());
  writeAtomically(cacheFile, Buffer.concat(chunks));
}

/** Writes a file whole or not at all (a temporary file renamed over it). */
function writeAtomically(file: string, data: Buffer): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}
