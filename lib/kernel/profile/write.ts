/**
 * Writing profiles: ISF JSON with one entry per line (readable, diffable, a third of the size of
 * indented JSON), keys sorted so the same input always gives the same bytes, and plain integers
 * for bigint addresses. A `.gz` file name writes gzip-compressed JSON.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { stringifyExact } from './json';
import type { IsfDocument } from './isf';

function sortedKeys(rec: object): string[] {
  return Object.keys(rec).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Sorts an object's keys recursively (arrays keep their order). */
function sortDeep(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(sortDeep);
  const out: Record<string, unknown> = {};
  for (const k of sortedKeys(v)) out[k] = sortDeep((v as Record<string, unknown>)[k]);
  return out;
}

/** The ISF JSON text of a document. */
export function serializeProfile(doc: IsfDocument): string {
  const chunks: string[] = ['{\n', '"metadata": ', stringifyExact(sortDeep(doc.metadata))];
  const sections: Array<[string, Record<string, unknown>]> = [
    ['base_types', doc.base_types as Record<string, unknown>],
    ['user_types', doc.user_types as Record<string, unknown>],
    ['enums', doc.enums as Record<string, unknown>],
    ['symbols', doc.symbols as Record<string, unknown>],
  ];
  for (const [key, rec] of sections) {
    chunks.push(`,\n${JSON.stringify(key)}: {`);
    let first = true;
    for (const name of sortedKeys(rec)) {
      chunks.push(first ? '\n' : ',\n', JSON.stringify(name), ': ', stringifyExact(sortDeep(rec[name])));
      first = false;
    }
    chunks.push(first ? '}' : '\n}');
  }
  chunks.push('\n}\n');
  return chunks.join('');
}

/**
 * Writes a profile to `file` (gzip when the name ends in `.gz`), through a temporary file and a
 * rename, so that a reader never sees half a profile. Returns the number of bytes written.
 */
export function writeProfile(doc: IsfDocument, file: string): number {
  const text = serializeProfile(doc);
  const data = /\.gz$/i.test(file) ? zlib.gzipSync(Buffer.from(text, 'utf8'), { level: 6 }) : Buffer.from(text, 'utf8');
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  return data.length;
}
