/**
 * System.map: `ffffffff81000000 T _text` lines, as written by the kernel build (nm output).
 * Reading is bounded: a file larger than MAX_BYTES or with more than MAX_LINES lines is refused,
 * and a line that does not have the shape is an error naming its line number (a wrong file is
 * far likelier than a harmless odd line).
 */
import * as fs from 'node:fs';
import { ValidationError } from '../../errors';

export const MAX_SYSTEM_MAP_BYTES = 64 * 1024 * 1024;
export const MAX_SYSTEM_MAP_LINES = 4_000_000;

export interface MapSymbol {
  name: string;
  address: bigint;
  /** nm's type letter: T/t text, D/d data, B/b bss, R/r read-only, A absolute, W/w weak... */
  type: string;
  /** `[module]` suffix (kallsyms-style files), when present. */
  module?: string;
}

const LINE = /^([0-9a-fA-F]{1,16})\s+([A-Za-z?-])\s+(\S+)(?:\s+\[(\S+)\])?\s*$/;

/** True for nm letters of global symbols (upper case), which win over local ones of the same name. */
function isGlobal(type: string): boolean {
  return type >= 'A' && type <= 'Z';
}

/**
 * Parses System.map text into name → symbol. When a name appears more than once (static symbols
 * of different files), a global symbol wins over a local one, and otherwise the first one stays.
 */
export function parseSystemMap(text: string, source = 'System.map'): Map<string, MapSymbol> {
  const out = new Map<string, MapSymbol>();
  let lineNo = 0;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    lineNo++;
    if (lineNo > MAX_SYSTEM_MAP_LINES) throw new ValidationError(`${source}: more than ${MAX_SYSTEM_MAP_LINES} lines`);
    const line = text.slice(start, end).trim();
    start = end + 1;
    if (line === '') continue;
    const m = LINE.exec(line);
    if (!m) throw new ValidationError(`${source}:${lineNo}: not a System.map line: ${JSON.stringify(line.slice(0, 80))}`);
    const sym: MapSymbol = { name: m[3], address: BigInt('0x' + m[1]), type: m[2] };
    if (m[4] !== undefined) sym.module = m[4];
    const prev = out.get(sym.name);
    if (!prev || (!isGlobal(prev.type) && isGlobal(sym.type))) out.set(sym.name, sym);
  }
  return out;
}

/** Reads and parses a System.map file, refusing files over MAX_SYSTEM_MAP_BYTES. */
export function readSystemMap(path: string): Map<string, MapSymbol> {
  const size = fs.statSync(path).size;
  if (size > MAX_SYSTEM_MAP_BYTES) {
    throw new ValidationError(`${path}: ${size} bytes is too large for a System.map (limit ${MAX_SYSTEM_MAP_BYTES})`);
  }
  return parseSystemMap(fs.readFileSync(path, 'latin1'), path);
}
