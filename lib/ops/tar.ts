/**
 * The tar format `cp` streams through `-`, as `docker cp` does: ustar headers, with pax extended
 * headers where ustar cannot say it (names over 100 bytes, link targets over 100, sizes of 8 GiB
 * and more, large ids, mtimes out of range). The reader also takes GNU tar's own long names
 * (typeflags L and K) and base-256 numbers, since that is what `tar -c` makes by default.
 *
 * A tar to read is untrusted (a host stdin, or what a guest made): every header is checksummed,
 * every size bounded, and every entry's path is reduced to safe components below the extraction
 * directory before it is yielded: an absolute path, a `..` that leaves it, or a path through a
 * symlink the archive made earlier stops the read with an error that names the entry.
 */
import { VmiError } from '../errors';
import { MAX_DEPTH, MAX_ENTRIES } from './copy-common';
import { printableName, unsafeComponent } from './names';

export const BLOCK = 512;
/** Most bytes of a pax extended header, a GNU long name or link (a name is at most a few KiB). */
export const MAX_META = 1 << 20;
/** Most bytes of a path or link target. */
export const MAX_PATH_BYTES = 64 * 1024;
/** Most metadata headers (pax, GNU long names) before the entry they describe. */
const MAX_META_RUN = 16;
/** The largest value of an 11-digit octal field (8 GiB − 1 for a size). */
const OCTAL11_MAX = 0o77777777777;
const OCTAL7_MAX = 0o7777777;

/** A tar that cannot be read safely; `entry` names the entry (escaped for a terminal). */
export class TarError extends VmiError {
  readonly entry: string | undefined;
  constructor(message: string, entry?: Buffer) {
    const shown = entry === undefined ? undefined : printableName(entry);
    super('ETAR', shown === undefined ? `tar: ${message}` : `tar entry "${shown}": ${message}`);
    this.entry = shown;
  }
}

export type TarKind = 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';

export interface TarHeader {
  /** The path as written in the archive (directories without their trailing /). */
  path: Buffer;
  kind: TarKind;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  linkname?: Buffer;
}

export interface TarEntry extends TarHeader {
  /** `path` as checked components below the extraction directory ([] is the directory itself). */
  components: Buffer[];
  /** For a hard link: its target's components. */
  linkComponents?: Buffer[];
  /** The typeflag, for what is not copied (devices, fifos). */
  typeflag: string;
}

// ---------------------------------------------------------------- writing

function octal(buf: Buffer, at: number, width: number, value: number): void {
  buf.write(value.toString(8).padStart(width - 1, '0'), at, width - 1, 'latin1');
  buf[at + width - 1] = 0;
}

/** One pax record, `LEN key=value\n`, where LEN counts itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

/** ustar's name/prefix split of `path`, or null when it does not fit. */
function splitUstar(path: Buffer): { name: Buffer; prefix: Buffer } | null {
  if (path.length <= 100) return { name: path, prefix: Buffer.alloc(0) };
  for (let i = path.indexOf(0x2f, path.length - 101); i >= 0 && i <= 155; i = path.indexOf(0x2f, i + 1)) {
    if (i > 0 && path.length - i - 1 <= 100 && path.length - i - 1 > 0) return { prefix: path.subarray(0, i), name: path.subarray(i + 1) };
  }
  return null;
}

const TYPEFLAG: Record<Exclude<TarKind, 'other'>, string> = { file: '0', directory: '5', symlink: '2', hardlink: '1' };

function ustarBlock(name: Buffer, prefix: Buffer, typeflag: string, h: { mode: number; uid: number; gid: number; size: number; mtime: number; linkname?: Buffer }): Buffer {
  const b = Buffer.alloc(BLOCK);
  name.copy(b, 0, 0, 100);
  octal(b, 100, 8, h.mode & 0o7777);
  octal(b, 108, 8, h.uid <= OCTAL7_MAX ? h.uid : 0);
  octal(b, 116, 8, h.gid <= OCTAL7_MAX ? h.gid : 0);
  octal(b, 124, 12, h.size <= OCTAL11_MAX ? h.size : 0);
  octal(b, 136, 12, h.mtime >= 0 && h.mtime <= OCTAL11_MAX ? Math.floor(h.mtime) : 0);
  b.write(typeflag, 156, 1, 'latin1');
  if (h.linkname && h.linkname.length <= 100) h.linkname.copy(b, 157);
  b.write('ustar\u000000', 257, 8, 'latin1');
  prefix.copy(b, 345, 0, 155);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'latin1');
  return b;
}

/** Zero bytes that fill an entry's data of `size` bytes up to a whole block. */
export function tarPadding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** The two zero blocks that end an archive. */
export function tarEnd(): Buffer {
  return Buffer.alloc(2 * BLOCK);
}

/** The header block(s) of one entry: a pax extended header first when ustar cannot hold it all. */
export function tarHeader(h: TarHeader): Buffer {
  if (h.kind === 'other') throw new TarError('only files, directories and links are written', h.path);
  const path = h.kind === 'directory' ? Buffer.concat([h.path, Buffer.from('/')]) : h.path;
  const records: Buffer[] = [];
  let split = splitUstar(path);
  if (!split) {
    records.push(paxRecord('path', path));
    split = { name: path.subarray(0, 100), prefix: Buffer.alloc(0) };
  }
  if (h.linkname && h.linkname.length > 100) records.push(paxRecord('linkpath', h.linkname));
  if (h.size > OCTAL11_MAX) records.push(paxRecord('size', Buffer.from(String(h.size))));
  if (h.uid > OCTAL7_MAX) records.push(paxRecord('uid', Buffer.from(String(h.uid))));
  if (h.gid > OCTAL7_MAX) records.push(paxRecord('gid', Buffer.from(String(h.gid))));
  if (h.mtime < 0 || h.mtime > OCTAL11_MAX) records.push(paxRecord('mtime', Buffer.from(String(Math.floor(h.mtime)))));
  const main = ustarBlock(split.name, split.prefix, TYPEFLAG[h.kind], { ...h, size: h.kind === 'file' ? h.size : 0 });
  if (!records.length) return main;
  const pax = Buffer.concat(records);
  const paxHeader = ustarBlock(Buffer.from('././@PaxHeader'), Buffer.alloc(0), 'x', { mode: 0o644, uid: 0, gid: 0, size: pax.length, mtime: 0 });
  return Buffer.concat([paxHeader, pax, tarPadding(pax.length), main]);
}

// ---------------------------------------------------------------- reading

/** Chunks of a tar stream (stdin, or buffers). */
export type TarSource = AsyncIterable<Buffer | string> | Iterable<Buffer | string>;

/** Exactly-n reads over an async stream of chunks. */
class Bytes {
  readonly #it: AsyncIterator<Buffer | string> | Iterator<Buffer | string>;
  #buf: Buffer = Buffer.alloc(0);
  #done = false;
  /** Bytes consumed so far (for messages). */
  offset = 0;

  constructor(source: TarSource) {
    this.#it = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  }

  /** Fills the buffer to `n` bytes if the stream has them; returns how many it holds. */
  async #fill(n: number): Promise<number> {
    while (this.#buf.length < n && !this.#done) {
      const r = await this.#it.next();
      if (r.done) this.#done = true;
      else this.#buf = this.#buf.length ? Buffer.concat([this.#buf, Buffer.from(r.value)]) : Buffer.from(r.value);
    }
    return this.#buf.length;
  }

  /** Exactly `n` bytes, or null at a clean end (nothing left); a short remainder is an error. */
  async exactly(n: number, what: () => string): Promise<Buffer | null> {
    const have = await this.#fill(n);
    if (have === 0) return null;
    if (have < n) throw new TarError(`the stream ends in the middle of ${what()} (offset ${this.offset + have})`);
    return this.take(n);
  }

  /** Up to `n` bytes (at least 1), what has arrived; null when the stream ended. */
  async some(n: number): Promise<Buffer | null> {
    if (!this.#buf.length && (await this.#fill(1)) === 0) return null;
    return this.take(Math.min(n, this.#buf.length));
  }

  private take(n: number): Buffer {
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    this.offset += n;
    return out;
  }
}

function cString(b: Buffer): Buffer {
  const nul = b.indexOf(0);
  return nul < 0 ? b : b.subarray(0, nul);
}

/** An octal (or GNU base-256) number field; null when empty. */
function number(field: Buffer, what: string, entry: Buffer): number {
  if (field[0] & 0x80) {
    if (field[0] & 0x40) throw new TarError(`negative ${what}`, entry);
    let v = BigInt(field[0] & 0x3f);
    for (let i = 1; i < field.length; i++) v = (v << 8n) | BigInt(field[i]);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new TarError(`${what} ${v} is beyond any sane value`, entry);
    return Number(v);
  }
  const text = cString(field).toString('latin1').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarError(`${what} field is not octal`, entry);
  return parseInt(text, 8);
}

function decimal(value: Buffer, key: string, entry: Buffer, fraction = false): number {
  const text = value.toString('latin1');
  if (!(fraction ? /^-?[0-9]{1,16}(\.[0-9]*)?$/ : /^[0-9]{1,16}$/).test(text)) throw new TarError(`pax ${key}=${JSON.stringify(text.slice(0, 40))} is not a sane number`, entry);
  const v = Math.floor(Number(text));
  if (!Number.isSafeInteger(v)) throw new TarError(`pax ${key} is beyond any sane value`, entry);
  return v;
}

/** The records of a pax extended header, bounded and strict (a malformed record is an error). */
function parsePax(data: Buffer, entry: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (let at = 0; at < data.length;) {
    const space = data.indexOf(0x20, at);
    if (space < 0 || space - at > 8) throw new TarError(`malformed pax record at byte ${at}`, entry);
    const len = Number(data.subarray(at, space).toString('latin1'));
    if (!Number.isSafeInteger(len) || len <= space - at + 1 || at + len > data.length || data[at + len - 1] !== 0x0a) throw new TarError(`pax record at byte ${at} has a bad length`, entry);
    const rec = data.subarray(space + 1, at + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw new TarError(`pax record at byte ${at} has no key`, entry);
    out.set(rec.subarray(0, eq).toString('latin1'), Buffer.from(rec.subarray(eq + 1)));
    at += len;
  }
  return out;
}

function kindOf(typeflag: string): TarKind {
  if (typeflag === '0' || typeflag === '\0' || typeflag === '7') return 'file';
  if (typeflag === '5') return 'directory';
  if (typeflag === '2') return 'symlink';
  if (typeflag === '1') return 'hardlink';
  return 'other';
}

function key(components: readonly Buffer[]): string {
  return Buffer.concat(components.flatMap((c) => [c, Buffer.from('/')])).toString('latin1');
}

/**
 * Reads a tar stream entry by entry: `next()` gives the next entry (skipping what was not read of
 * the one before), `body()` its data in pieces of at most `chunk` bytes.
 */
export class TarReader {
  readonly #in: Bytes;
  readonly #chunk: number;
  /** Data bytes of the current entry not read yet, then its padding. */
  #left = 0;
  #pad = 0;
  #entries = 0;
  /** Symlinks the archive made (by key()): a later entry may not go through one. */
  readonly #symlinks = new Set<string>();
  #ended = false;
  /** The path of the entry whose data is being read (for messages). */
  #current: Buffer = Buffer.alloc(0);

  constructor(source: TarSource, opts: { chunk?: number } = {}) {
    this.#in = new Bytes(source);
    this.#chunk = opts.chunk ?? 1 << 20;
  }

  async #skip(n: number, what: () => string): Promise<void> {
    while (n > 0) {
      const b = await this.#in.some(Math.min(n, this.#chunk));
      if (!b) throw new TarError(`the stream ends in the middle of ${what()}`);
      n -= b.length;
    }
  }

  /** A metadata entry's data (pax, GNU long name), bounded by MAX_META. */
  async #meta(size: number, entry: Buffer): Promise<Buffer> {
    if (size > MAX_META) throw new TarError(`a metadata header of ${size} bytes (more than ${MAX_META})`, entry);
    const data = (await this.#in.exactly(size, () => 'a metadata header')) ?? Buffer.alloc(0);
    if (data.length < size) throw new TarError('the stream ends in a metadata header', entry);
    await this.#skip((BLOCK - (size % BLOCK)) % BLOCK, () => 'a metadata header');
    return Buffer.from(data);
  }

  /** The next entry, or null at the end of the archive. */
  async next(): Promise<TarEntry | null> {
    if (this.#ended) return null;
    await this.#skip(this.#left + this.#pad, () => `the data of "${printableName(this.#current)}"`);
    this.#left = this.#pad = 0;
    let pax = new Map<string, Buffer>();
    let longName: Buffer | undefined;
    let longLink: Buffer | undefined;
    for (let run = 0; ; run++) {
      const at = this.#in.offset;
      const block = await this.#in.exactly(BLOCK, () => 'a header');
      if (!block || block.every((x) => x === 0)) {
        // the end: two zero blocks (one, or none at all, is taken as GNU tar takes it)
        this.#ended = true;
        return null;
      }
      const name = Buffer.from(cString(block.subarray(0, 100)));
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
      if (number(block.subarray(148, 156), 'checksum', name) !== sum) throw new TarError(`bad header checksum at offset ${at}: not a tar stream, or a corrupt one`);
      if (run >= MAX_META_RUN) throw new TarError(`more than ${MAX_META_RUN} metadata headers in a row`, name);
      if (++this.#entries > MAX_ENTRIES + MAX_META_RUN) throw new TarError(`more than ${MAX_ENTRIES} entries`, name);
      const typeflag = String.fromCharCode(block[156]);
      const size = number(block.subarray(124, 136), 'size', name);
      if (typeflag === 'x') {
        for (const [k, v] of parsePax(await this.#meta(size, name), name)) pax.set(k, v);
        continue;
      }
      if (typeflag === 'g') {
        await this.#meta(size, name);
        continue;
      }
      if (typeflag === 'L' || typeflag === 'K') {
        const v = cString(await this.#meta(size, name));
        if (typeflag === 'L') longName = v;
        else longLink = v;
        continue;
      }
      const magic = block.subarray(257, 263).toString('latin1');
      const prefix = magic === 'ustar\0' ? cString(block.subarray(345, 500)) : Buffer.alloc(0);
      let path: Buffer = pax.get('path') ?? longName ?? (prefix.length ? Buffer.concat([prefix, Buffer.from('/'), name]) : name);
      const linkname = pax.get('linkpath') ?? longLink ?? Buffer.from(cString(block.subarray(157, 257)));
      if (path.length > MAX_PATH_BYTES || linkname.length > MAX_PATH_BYTES) throw new TarError(`a path longer than ${MAX_PATH_BYTES} bytes`, path.subarray(0, 200));
      const kind = kindOf(typeflag);
      let end = path.length;
      while (kind === 'directory' && end > 1 && path[end - 1] === 0x2f) end--;
      const header: TarHeader = {
        path: Buffer.from(path.subarray(0, end)),
        kind,
        mode: number(block.subarray(100, 108), 'mode', path) & 0o7777,
        uid: pax.has('uid') ? decimal(pax.get('uid')!, 'uid', path) : number(block.subarray(108, 116), 'uid', path),
        gid: pax.has('gid') ? decimal(pax.get('gid')!, 'gid', path) : number(block.subarray(116, 124), 'gid', path),
        size: pax.has('size') ? decimal(pax.get('size')!, 'size', path) : size,
        mtime: pax.has('mtime') ? decimal(pax.get('mtime')!, 'mtime', path, true) : number(block.subarray(136, 148), 'mtime', path),
      };
      if (kind === 'symlink' || kind === 'hardlink') header.linkname = Buffer.from(linkname);
      // only regular files carry data; a hard link or directory's size field is ignored, as GNU tar does
      const data = kind === 'file' || kind === 'other' ? header.size : 0;
      if (kind === 'other' && typeflag >= '3' && typeflag <= '6') header.size = 0;
      this.#left = kind === 'other' && typeflag >= '3' && typeflag <= '6' ? 0 : data;
      this.#pad = (BLOCK - (this.#left % BLOCK)) % BLOCK;
      path = header.path;
      this.#current = path;
      const entry: TarEntry = { ...header, components: this.#check(path, kind === 'directory'), typeflag };
      if (kind === 'hardlink') entry.linkComponents = this.#check(header.linkname!, false, path);
      if (kind === 'symlink') this.#symlinks.add(key(entry.components));
      return entry;
    }
  }

  /** `path` as safe components below the extraction directory; throws for one that would leave it. */
  #check(path: Buffer, directory: boolean, entry = path): Buffer[] {
    if (path[0] === 0x2f) throw new TarError('an absolute path: refused', entry);
    const out: Buffer[] = [];
    for (const part of splitSlash(path)) {
      if (part.length === 0 || (part.length === 1 && part[0] === 0x2e)) continue;
      if (part.length === 2 && part[0] === 0x2e && part[1] === 0x2e) {
        if (!out.length) throw new TarError('a path with .. that leaves the target directory: refused', entry);
        out.pop();
        continue;
      }
      const why = unsafeComponent(part);
      if (why) throw new TarError(why, entry);
      out.push(part);
      if (out.length > MAX_DEPTH + 1) throw new TarError(`deeper than ${MAX_DEPTH} levels`, entry);
    }
    if (!out.length && !directory) throw new TarError('names the target directory itself', entry);
    for (let i = 1; i < out.length; i++) {
      if (this.#symlinks.has(key(out.slice(0, i)))) throw new TarError(`goes through "${printableName(Buffer.concat(out.slice(0, i).flatMap((c, j) => (j ? [Buffer.from('/'), c] : [c]))))}", a symlink made earlier in the archive: refused`, entry);
    }
    return out;
  }

  /** The current entry's data, in pieces as they arrive (at most `chunk` bytes each). */
  async *body(): AsyncGenerator<Buffer> {
    while (this.#left > 0) {
      const b = await this.#in.some(Math.min(this.#left, this.#chunk));
      if (!b) throw new TarError(`the stream ends in the middle of its data (${this.#left} bytes missing)`, this.#current);
      this.#left -= b.length;
      yield Buffer.from(b);
    }
  }
}

function splitSlash(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= b.length; i++) {
    if (i === b.length || b[i] === 0x2f) {
      out.push(b.subarray(start, i));
      start = i + 1;
    }
  }
  return out;
}
