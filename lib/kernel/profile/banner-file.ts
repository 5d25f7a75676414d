/**
 * The banner of a profile file, read from as little of the file as it takes: choosing a profile
 * (every `vmictl` command that finds the kernel) asks it of each candidate, and a profile is tens of
 * megabytes. The file's bytes are scanned in chunks, never decoded whole: the JSON structure and
 * the keys looked for are ASCII, and no byte of a multi-byte UTF-8 character is ASCII, so matching
 * bytes finds what matching the decoded text finds. The scan stops at `metadata.linux.banner`
 * (which comes first in the files we and dwarf2json write), and otherwise at the `linux_banner`
 * symbol. Compressed files are inflated whole first (there is no synchronous partial inflate).
 */
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { ValidationError, VmiError } from '../../errors';
import { MAX_PROFILE_FILE_BYTES, MAX_PROFILE_JSON_BYTES } from './load';
import { normalizeBanner } from './profile';

/** Bytes read at a time. */
const CHUNK = 1024 * 1024;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN = 0x7b;
const CLOSE = 0x7d;
const COLON = 0x3a;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0x0b || c === 0x0c;
}

/**
 * A window on the bytes of a file, read in chunks as a scan asks for them (or all given at once).
 * Positions are offsets in the file; bytes before the earliest position a search still needs are
 * dropped, so a scan holds about one chunk however far into the file it goes.
 */
class Bytes {
  buf: Buffer;
  /** file offset of buf[0] */
  start = 0;
  /** file offset just past the last byte read */
  end: number;
  readonly #next: ((into: Buffer) => number) | undefined;
  #done: boolean;

  constructor(source: ((into: Buffer) => number) | Buffer) {
    if (Buffer.isBuffer(source)) {
      this.buf = source;
      this.end = source.length;
      this.#done = true;
    } else {
      this.buf = Buffer.allocUnsafe(2 * CHUNK);
      this.end = 0;
      this.#next = source;
      this.#done = false;
    }
  }

  at(pos: number): number {
    return this.buf[pos - this.start];
  }

  indexOf(needle: Buffer, from: number): number {
    const i = this.buf.subarray(0, this.end - this.start).indexOf(needle, Math.max(0, from - this.start));
    return i < 0 ? -1 : i + this.start;
  }

  text(from: number, to: number): string {
    return this.buf.toString('utf8', from - this.start, to - this.start);
  }

  /** Reads one more chunk, keeping the bytes from `keep` on; false at the end. */
  more(keep: number): boolean {
    if (this.#done || !this.#next) return false;
    const from = Math.min(Math.max(keep, this.start), this.end);
    const kept = this.end - from;
    if (from > this.start) this.buf.copyWithin(0, from - this.start, this.end - this.start);
    this.start = from;
    if (this.buf.length - kept < CHUNK) {
      const grown = Buffer.allocUnsafe(kept + 2 * CHUNK);
      this.buf.copy(grown, 0, 0, kept);
      this.buf = grown;
    }
    const n = this.#next(this.buf.subarray(kept, kept + CHUNK));
    if (n === 0) this.#done = true;
    this.end += n;
    return n > 0;
  }
}

type Found = { value: Record<string, unknown> } | 'none' | 'more';

/**
 * The object that starts at or after `from` (after whitespace): 'none' when the bytes there are
 * not one, 'more' when they run out before it closes.
 */
function objectAt(b: Bytes, from: number): Found {
  let i = from;
  while (i < b.end && isSpace(b.at(i))) i++;
  if (i >= b.end) return 'more';
  if (b.at(i) !== OPEN) return 'none';
  let depth = 0;
  let inString = false;
  for (let j = i; j < b.end; j++) {
    const c = b.at(j);
    if (inString) {
      if (c === BACKSLASH) j++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === OPEN) depth++;
    else if (c === CLOSE && --depth === 0) {
      try {
        const v: unknown = JSON.parse(b.text(i, j + 1));
        return v && typeof v === 'object' && !Array.isArray(v) ? { value: v as Record<string, unknown> } : 'none';
      } catch {
        return 'none';
      }
    }
  }
  return 'more';
}

/** Looks for the first `"key": {...}` member, reading more of the file as needed. */
class MemberSearch {
  readonly #needle: Buffer;
  /** where the next occurrence of the key may start: the bytes from here on are still needed */
  from = 0;
  result: Record<string, unknown> | undefined;
  done = false;

  constructor(key: string) {
    this.#needle = Buffer.from(JSON.stringify(key));
  }

  /** Advances over the bytes read so far (until it needs more, or is done). */
  step(b: Bytes): void {
    while (!this.done) {
      const at = b.indexOf(this.#needle, this.from);
      if (at < 0) {
        // the key may straddle the end of what was read
        this.from = Math.max(this.from, b.end - this.#needle.length + 1);
        return;
      }
      this.from = at;
      let i = at + this.#needle.length;
      while (i < b.end && isSpace(b.at(i))) i++;
      if (i >= b.end) return;
      if (b.at(i) !== COLON) { this.from = at + 1; continue; }
      const v = objectAt(b, i + 1);
      if (v === 'more') return;
      if (v === 'none') { this.from = at + 1; continue; }
      this.result = v.value;
      this.done = true;
    }
  }

  /** At the end of the file: what was found stays, the rest is not there. */
  finish(): void {
    this.done = true;
  }
}

function metadataBanner(meta: Record<string, unknown>): string | undefined {
  const linux = meta.linux as Record<string, unknown> | undefined;
  return linux && typeof linux.banner === 'string' && linux.banner !== '' ? normalizeBanner(linux.banner) : undefined;
}

function symbolBanner(sym: Record<string, unknown> | undefined): string | undefined {
  if (!sym || typeof sym.constant_data !== 'string') return undefined;
  const b = normalizeBanner(Buffer.from(sym.constant_data, 'base64').toString('latin1'));
  return b !== '' ? b : undefined;
}

/** The banner in the bytes `b` gives, as bannerOfProfileText() finds it in the text. */
function scan(b: Bytes): string | undefined {
  const meta = new MemberSearch('metadata');
  const sym = new MemberSearch('linux_banner');
  for (;;) {
    meta.step(b);
    if (meta.result) {
      const banner = metadataBanner(meta.result);
      if (banner !== undefined) return banner;
    }
    sym.step(b);
    // the symbol counts only once the metadata is known to have no banner
    if (meta.done && sym.done) return symbolBanner(sym.result);
    const keep = Math.min(meta.done ? Infinity : meta.from, sym.done ? Infinity : sym.from);
    if (!b.more(keep)) {
      meta.finish();
      sym.finish();
      return (meta.result && metadataBanner(meta.result)) ?? symbolBanner(sym.result);
    }
  }
}

/** The banner recorded in a profile file (plain or gzip JSON), or undefined; `bytesRead` says how much of the file it took. */
export function scanProfileBanner(file: string): { banner: string | undefined; bytesRead: number } {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    if (size > MAX_PROFILE_FILE_BYTES) throw new ValidationError(`${file}: ${size} bytes is too large for a profile`);
    const head = Buffer.alloc(6);
    const got = fs.readSync(fd, head, 0, 6, 0);
    if (got >= 2 && head[0] === 0x1f && head[1] === 0x8b) {
      const text = zlib.gunzipSync(fs.readFileSync(fd), { maxOutputLength: MAX_PROFILE_JSON_BYTES });
      return { banner: scan(new Bytes(text)), bytesRead: size };
    }
    if (got >= 6 && head.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) {
      throw new VmiError('EPROFILEFORMAT', `${file}: xz-compressed profiles are not supported; decompress it first (xz -d)`);
    }
    let position = 0;
    const b = new Bytes((into) => {
      const n = fs.readSync(fd, into, 0, into.length, position);
      position += n;
      return n;
    });
    return { banner: scan(b), bytesRead: position };
  } finally {
    fs.closeSync(fd);
  }
}
