/**
 * A small seeded mutation fuzzer (no dependencies): takes a harness's seed inputs, applies stacked
 * mutations (bit flips, byte sets, interesting integers, inserts, deletes, duplications, splices
 * with other seeds, dictionary tokens, numbers in text), runs each input, and checks the property
 * every harness shares: an input ends in a result or a typed error (a VmiError), within a time
 * and a memory bound. Everything else is a finding, saved with its input for replay.
 *
 * Typed errors: input a harness feeds in is untrusted data (guest memory, a stub's packets, a file),
 * never a caller's argument, so only VmiError is an acceptable failure. RangeError is what vmictl
 * throws for API misuse (a caller passing a bad argument), and is a finding when untrusted data
 * causes it: the data reached a place that assumed it had been checked.
 *
 * Hangs: a synchronous endless loop cannot be interrupted from the same thread, so a watchdog
 * thread (plain JavaScript, no loader needed) sees the input in shared memory; when one input runs
 * longer than the hang bound it writes the input to the findings directory and kills the process.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { VmiError } from '../../lib/errors';

/**
 * A path in the source tree (fixtures, corpus), whether this runs from test/fuzz as TypeScript or
 * compiled from dist/test/fuzz: the nearest directory upwards that has package.json.
 */
export function sourcePath(...parts: string[]): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, ...parts);
}

/** Deterministic PRNG (sfc32): the same seed gives the same inputs, so a run can be replayed. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  constructor(seed: number) {
    this.#a = 0x9e3779b9;
    this.#b = 0x243f6a88;
    this.#c = 0xb7e15162;
    this.#d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.u32();
  }
  u32(): number {
    const a = this.#a, b = this.#b, c = this.#c, d = this.#d;
    const t = (((a + b) | 0) + d) | 0;
    this.#d = (d + 1) | 0;
    this.#a = b ^ (b >>> 9);
    this.#b = (c + (c << 3)) | 0;
    this.#c = ((c << 21) | (c >>> 11)) + t | 0;
    return t >>> 0;
  }
  /** An integer in [0, n). */
  below(n: number): number {
    return n <= 1 ? 0 : this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
  /** Small numbers far more often than big ones (lengths of inserted runs and the like). */
  small(max: number): number {
    const bits = this.below(Math.max(1, Math.ceil(Math.log2(max + 1))) + 1);
    return Math.min(max, this.below(1 << bits) + 1);
  }
}

/** 2^31, 2^32, 2^63, 2^64-1 and their neighbours, 0, -1, lengths near page and packet sizes. */
export const INTERESTING_64: readonly bigint[] = (() => {
  const base = [0n, 1n, 2n, 7n, 8n, 15n, 16n, 0x7fn, 0x80n, 0xffn, 0x100n, 0xfffn, 0x1000n, 0x7fffn, 0x8000n, 0xffffn, 0x10000n,
    0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 0x1fffffffffffffn, 0x20000000000000n,
    0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn, 0xfffffffffffff000n, 0xffff800000000000n,
    0xffff888000000000n, 0xffffffff80000000n, 0x00007fffffffffffn, 0x0000800000000000n];
  const out = new Set<bigint>();
  for (const v of base) for (const d of [-1n, 0n, 1n]) out.add(BigInt.asUintN(64, v + d));
  return [...out];
})();

const INTERESTING_8 = [0, 1, 0x7f, 0x80, 0xff, 0x20, 0x0a, 0x00, 0x30, 0x39, 0x41, 0x61, 0x7b, 0x7d, 0x22, 0x5c, 0x23, 0x24, 0x2a];
const INTERESTING_DECIMAL = ['0', '-1', '1', '2147483647', '2147483648', '4294967295', '4294967296', '9007199254740991', '9007199254740993',
  '9223372036854775807', '9223372036854775808', '18446744073709551615', '18446744073709551616', '1e308', '-0', '1.5', '99999999999999999999999'];

export interface MutateOptions {
  /** Byte strings worth inserting (protocol keywords, field names). */
  dictionary?: readonly Buffer[];
  /** Other inputs to splice with. */
  pool?: readonly Buffer[];
  /** Largest output (bytes). */
  maxLength?: number;
}

/** Applies one to eight mutations to a copy of `input`. */
export function mutate(rng: Rng, input: Buffer, opts: MutateOptions = {}): Buffer {
  const max = opts.maxLength ?? 1 << 16;
  let buf: Buffer = Buffer.from(input);
  const rounds = 1 + rng.below(rng.chance(0.5) ? 2 : 8);
  for (let r = 0; r < rounds; r++) buf = mutateOnce(rng, buf, opts);
  return buf.length > max ? buf.subarray(0, max) : buf;
}

function insert(buf: Buffer, at: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([buf.subarray(0, at), bytes, buf.subarray(at)]);
}

function overwrite(buf: Buffer, at: number, bytes: Uint8Array): Buffer {
  if (at + bytes.length > buf.length) return insert(buf.subarray(0, at), at, bytes);
  const out = Buffer.from(buf);
  out.set(bytes, at);
  return out;
}

function mutateOnce(rng: Rng, buf: Buffer, opts: MutateOptions): Buffer {
  const n = buf.length;
  const pos = () => rng.below(n + 1);
  switch (rng.below(14)) {
    case 0: { // flip one bit
      if (n === 0) return Buffer.from([rng.below(256)]);
      const out = Buffer.from(buf);
      out[rng.below(n)] ^= 1 << rng.below(8);
      return out;
    }
    case 1: { // set a random byte
      if (n === 0) return Buffer.from([rng.below(256)]);
      const out = Buffer.from(buf);
      out[rng.below(n)] = rng.below(256);
      return out;
    }
    case 2: { // an interesting byte
      if (n === 0) return Buffer.from([rng.pick(INTERESTING_8)]);
      const out = Buffer.from(buf);
      out[rng.below(n)] = rng.pick(INTERESTING_8);
      return out;
    }
    case 3: { // an interesting integer, 2/4/8 bytes, little- or big-endian
      const width = rng.pick([2, 4, 8]);
      const v = BigInt.asUintN(width * 8, rng.pick(INTERESTING_64));
      const b = Buffer.alloc(width);
      if (width === 2) rng.chance(0.5) ? b.writeUInt16LE(Number(v)) : b.writeUInt16BE(Number(v));
      else if (width === 4) rng.chance(0.5) ? b.writeUInt32LE(Number(v)) : b.writeUInt32BE(Number(v));
      else rng.chance(0.5) ? b.writeBigUInt64LE(v) : b.writeBigUInt64BE(v);
      return overwrite(buf, rng.below(Math.max(1, n - width + 1)), b);
    }
    case 4: { // add or subtract a little from a byte/word (lengths and counts off by a few)
      if (n < 4) return buf;
      const out = Buffer.from(buf);
      const at = rng.below(n - 3);
      out.writeUInt32LE((out.readUInt32LE(at) + (rng.below(65) - 32)) >>> 0, at);
      return out;
    }
    case 5: { // insert random bytes
      const len = rng.small(64);
      const b = Buffer.alloc(len);
      for (let i = 0; i < len; i++) b[i] = rng.below(256);
      return insert(buf, pos(), b);
    }
    case 6: { // insert a run of one byte (long strings, unterminated)
      const len = rng.small(4096);
      return insert(buf, pos(), Buffer.alloc(len, rng.chance(0.5) ? rng.pick(INTERESTING_8) : rng.below(256)));
    }
    case 7: { // delete a range
      if (n === 0) return buf;
      const at = rng.below(n);
      const len = Math.min(n - at, rng.small(n));
      return Buffer.concat([buf.subarray(0, at), buf.subarray(at + len)]);
    }
    case 8: { // duplicate a range somewhere else
      if (n === 0) return buf;
      const at = rng.below(n);
      const len = Math.min(n - at, rng.small(256));
      return insert(buf, pos(), Buffer.from(buf.subarray(at, at + len)));
    }
    case 9: { // copy a range over another (moves structure around)
      if (n < 2) return buf;
      const from = rng.below(n);
      const len = Math.min(n - from, rng.small(64));
      return overwrite(buf, rng.below(n), Buffer.from(buf.subarray(from, from + len)));
    }
    case 10: { // splice: our head with another input's tail
      const other = opts.pool && opts.pool.length > 0 ? rng.pick(opts.pool) : buf;
      return Buffer.concat([buf.subarray(0, rng.below(n + 1)), other.subarray(rng.below(other.length + 1))]);
    }
    case 11: // insert a dictionary token
    case 12: { // or write one over what is there
      const dict = opts.dictionary;
      if (!dict || dict.length === 0) return mutateOnce(rng, buf, { ...opts, dictionary: undefined });
      const tok = rng.pick(dict);
      return rng.chance(0.5) ? insert(buf, pos(), tok) : overwrite(buf, rng.below(Math.max(1, n)), tok);
    }
    default: { // replace a number written in text (decimal or hex digits) with an interesting one
      const text = buf.toString('latin1');
      const re = /-?[0-9]+/g;
      const spots: Array<[number, number]> = [];
      for (let m = re.exec(text); m && spots.length < 256; m = re.exec(text)) spots.push([m.index, m[0].length]);
      if (spots.length === 0) return mutateOnce(rng, buf, opts);
      const [at, len] = rng.pick(spots);
      const v = rng.chance(0.7) ? rng.pick(INTERESTING_DECIMAL) : rng.pick(INTERESTING_64).toString(16);
      return Buffer.concat([buf.subarray(0, at), Buffer.from(v, 'latin1'), buf.subarray(at + len)]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Harnesses and the run loop.

export interface Harness {
  name: string;
  /** Inputs to start from (valid or nearly valid documents, packets, images). */
  seeds(): Buffer[] | Promise<Buffer[]>;
  dictionary?: readonly Buffer[];
  /** Runs one input; may return a promise. Throwing a VmiError is a valid outcome. */
  run(input: Buffer): unknown;
  /** Largest input the mutator makes (default 64 KiB). */
  maxLength?: number;
  /** Longer than this (ms) for one input is a finding (default 1000). */
  slowMs?: number;
  /** Heap and buffers retained by one input beyond this (bytes) is a finding (default 64 MiB). */
  maxRetainedBytes?: number;
  /** Frees what the harness set up (temporary files). */
  close?(): void | Promise<void>;
}

export type FindingKind = 'untyped-error' | 'slow' | 'memory' | 'leak' | 'hang';

export interface Finding {
  harness: string;
  kind: FindingKind;
  message: string;
  input: Buffer;
  /** Where the input was saved (when a directory was given). */
  file?: string;
}

export interface FuzzOptions {
  /** Inputs to run (default: until `timeMs`). */
  runs?: number;
  /** Stop after this many milliseconds (default: after `runs`). */
  timeMs?: number;
  seed?: number;
  /** Where findings are saved as `<kind>-<sha1>`; none: not saved. */
  findingsDir?: string;
  /** Stop at the first finding. */
  stopOnFinding?: boolean;
  /** A watchdog kills the process when one input runs longer (default 30 s); 0: no watchdog. */
  hangMs?: number;
}

export interface FuzzStats {
  harness: string;
  execs: number;
  ms: number;
  execsPerSecond: number;
  findings: Finding[];
  /** Slowest single input (ms). */
  slowestMs: number;
  /** Heap growth over the run, after garbage collection when --expose-gc is on (bytes). */
  heapGrowth: number;
}

/** The outcome class of one input: undefined when it is fine. */
export function classifyError(err: unknown): string | undefined {
  if (err instanceof VmiError) return undefined;
  const e = err as Error;
  return `${e?.name ?? typeof err}: ${e?.message ?? String(err)}\n${(e?.stack ?? '').split('\n').slice(1, 6).join('\n')}`;
}

/** Heap plus external memory (Buffers); v8's statistics, since process.memoryUsage() reads /proc each time. */
function retainedBytes(): number {
  const h = getHeapStatistics();
  return h.used_heap_size + h.external_memory;
}

function collect(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

export function inputHash(input: Buffer): string {
  return createHash('sha1').update(input).digest('hex').slice(0, 16);
}

/** Saves a finding's input as `<dir>/<harness>/<kind>-<hash>` and returns the path. */
export function saveInput(dir: string, harness: string, kind: string, input: Buffer): string {
  const d = path.join(dir, harness);
  fs.mkdirSync(d, { recursive: true });
  const file = path.join(d, `${kind}-${inputHash(input)}`);
  fs.writeFileSync(file, input);
  return file;
}

/** Runs one input and returns the finding it makes, if any. */
export async function runOne(h: Harness, input: Buffer): Promise<{ finding?: Omit<Finding, 'harness' | 'input'>; ms: number }> {
  const before = retainedBytes();
  const start = performance.now();
  let failure: string | undefined;
  try {
    await h.run(input);
  } catch (err) {
    failure = classifyError(err);
  }
  const ms = performance.now() - start;
  if (failure) return { finding: { kind: 'untyped-error', message: failure }, ms };
  if (ms > (h.slowMs ?? 1000)) return { finding: { kind: 'slow', message: `one input took ${ms.toFixed(0)} ms` }, ms };
  const grew = retainedBytes() - before;
  if (grew > (h.maxRetainedBytes ?? 64 << 20)) return { finding: { kind: 'memory', message: `one input left ${(grew / 2 ** 20).toFixed(0)} MiB allocated` }, ms };
  return { ms };
}

const WATCHDOG = `
const { workerData } = require('node:worker_threads');
const fs = require('node:fs');
const path = require('node:path');
const { state, bytes, hangMs, dir, harness } = workerData;
const s = new Int32Array(state);
let lastSeq = -1, since = Date.now();
for (;;) {
  Atomics.wait(s, 2, 0, 200);
  if (Atomics.load(s, 2) === 1) break;
  const seq = Atomics.load(s, 0);
  const busy = Atomics.load(s, 1);
  if (seq !== lastSeq || !busy) { lastSeq = seq; since = Date.now(); continue; }
  if (Date.now() - since > hangMs) {
    const input = Buffer.from(new Uint8Array(bytes, 0, Atomics.load(s, 3)));
    let where = '(not saved)';
    if (dir) {
      const hash = require('node:crypto').createHash('sha1').update(input).digest('hex').slice(0, 16);
      fs.mkdirSync(path.join(dir, harness), { recursive: true });
      where = path.join(dir, harness, 'hang-' + hash);
      fs.writeFileSync(where, input);
    }
    fs.writeSync(2, 'fuzz: ' + harness + ': HANG: one input ran for more than ' + hangMs + ' ms; input saved to ' + where + '\\n');
    process.kill(process.pid, 'SIGKILL');
  }
}
`;

const WATCHDOG_MAX_INPUT = 4 << 20;

/** A watchdog thread over shared memory: [seq, busy, stop, length] then the current input. */
class Watchdog {
  readonly #state = new SharedArrayBuffer(16);
  readonly #bytes = new SharedArrayBuffer(WATCHDOG_MAX_INPUT);
  readonly #s = new Int32Array(this.#state);
  readonly #u8 = new Uint8Array(this.#bytes);
  readonly #worker: Worker;
  constructor(harness: string, hangMs: number, dir: string | undefined) {
    this.#worker = new Worker(WATCHDOG, { eval: true, workerData: { state: this.#state, bytes: this.#bytes, hangMs, dir, harness } });
    this.#worker.unref();
  }
  begin(input: Buffer): void {
    const n = Math.min(input.length, WATCHDOG_MAX_INPUT);
    this.#u8.set(input.subarray(0, n));
    Atomics.store(this.#s, 3, n);
    Atomics.add(this.#s, 0, 1);
    Atomics.store(this.#s, 1, 1);
  }
  end(): void {
    Atomics.store(this.#s, 1, 0);
  }
  async stop(): Promise<void> {
    Atomics.store(this.#s, 2, 1);
    Atomics.notify(this.#s, 2);
    await this.#worker.terminate();
  }
}

/** Runs a harness for `runs` inputs or `timeMs`, whichever comes first. */
export async function fuzz(h: Harness, opts: FuzzOptions = {}): Promise<FuzzStats> {
  const rng = new Rng(opts.seed ?? 1);
  const seeds = await h.seeds();
  if (seeds.length === 0) throw new Error(`${h.name}: no seeds`);
  const runs = opts.runs ?? Infinity;
  const deadline = opts.timeMs === undefined ? Infinity : performance.now() + opts.timeMs;
  const hangMs = opts.hangMs ?? 30_000;
  const dog = hangMs > 0 ? new Watchdog(h.name, hangMs, opts.findingsDir) : undefined;
  const findings: Finding[] = [];
  const seen = new Set<string>();
  // inputs that ran fine become material for later mutations, a bounded ring of them
  const pool: Buffer[] = [...seeds];
  const POOL_MAX = 256;
  let slowest = 0;
  collect();
  const heapStart = process.memoryUsage().heapUsed;
  const start = performance.now();
  let execs = 0;
  try {
    for (; execs < runs && performance.now() < deadline; execs++) {
      // every seed once as it is, then mutations of seeds and of earlier inputs
      const input = execs < seeds.length ? seeds[execs]! : mutate(rng, rng.chance(0.7) ? rng.pick(seeds) : rng.pick(pool), { dictionary: h.dictionary, pool, maxLength: h.maxLength });
      dog?.begin(input);
      const { finding, ms } = await runOne(h, input);
      dog?.end();
      slowest = Math.max(slowest, ms);
      if (finding) {
        // one finding per distinct message head, so a run does not fill a disk with the same bug
        const key = `${finding.kind}:${finding.message.split('\n').slice(0, 2).join('|').replace(/[0-9]+/g, 'N')}`;
        if (!seen.has(key)) {
          seen.add(key);
          const f: Finding = { harness: h.name, input, ...finding };
          if (opts.findingsDir) f.file = saveInput(opts.findingsDir, h.name, finding.kind, input);
          findings.push(f);
          if (opts.stopOnFinding) { execs++; break; }
        }
      } else if (execs >= seeds.length && rng.chance(0.05)) {
        if (pool.length < POOL_MAX) pool.push(input);
        else pool[seeds.length + rng.below(POOL_MAX - seeds.length)] = input;
      }
      // let timers and I/O run now and then (the harnesses are mostly synchronous)
      if ((execs & 255) === 255) await new Promise((r) => setImmediate(r));
    }
  } finally {
    await dog?.stop();
  }
  const ms = performance.now() - start;
  pool.length = 0;
  collect();
  const heapGrowth = process.memoryUsage().heapUsed - heapStart;
  // after GC nothing a run did should stay; without --expose-gc this is only an upper bound
  if ((globalThis as { gc?: unknown }).gc && heapGrowth > 128 << 20) {
    findings.push({ harness: h.name, kind: 'leak', message: `heap grew by ${(heapGrowth / 2 ** 20).toFixed(0)} MiB over the run`, input: Buffer.alloc(0) });
  }
  return { harness: h.name, execs, ms, execsPerSecond: execs / (ms / 1000), findings, slowestMs: slowest, heapGrowth };
}

/** Replays saved inputs (a directory of files) through a harness; returns the findings they still make. */
export async function replay(h: Harness, files: readonly string[]): Promise<Finding[]> {
  const out: Finding[] = [];
  for (const file of files) {
    const input = fs.readFileSync(file);
    const { finding } = await runOne(h, input);
    if (finding) out.push({ harness: h.name, input, file, ...finding });
  }
  return out;
}
