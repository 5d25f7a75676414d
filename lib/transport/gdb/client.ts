/**
 * GdbClient: the commands vmictl uses on a gdbstub (QEMU's, first of all), over a GdbConnection.
 *
 * Connecting runs the handshake: `qSupported` (features, PacketSize → maxPacketSize and the
 * largest `m` read), `QStartNoAckMode` only if offered (QEMU 7.2 does not: every packet is acked),
 * `qqemu.PhyMemMode` (the memory mode is global to QEMU and may have been left on by someone
 * else), and the target description (`qXfer:features:read:target.xml`, includes followed), from
 * which registers are laid out.
 *
 * QEMU 7.2 notes: `p`/`P` answer empty until the target description has been read on the
 * connection (we read it at connect, and fall back to `g`/`G` anyway); `?` removes all
 * breakpoints, so it is never sent implicitly; physical-mode reads never fail (unassigned memory
 * reads as zeros) while virtual-mode reads of unmapped pages fail with E14; connecting pauses
 * the VM, and closing without detach() leaves it paused with breakpoints still inserted;
 * after `D` the stub must not be sent anything (a byte would pause the VM), so detach() closes.
 */
import { AbortError, ProtocolError, TimeoutError, VmiError } from '../../errors';
import { CallOptions, withDeadline } from '../../util/deadline';
import { TypedEmitter } from '../../util/typed-emitter';
import { ConnectionOptions, ConnectionStats, GdbConnection, RequestGroup, RequestOptions, RunState } from './connection';
import {
  GdbArgumentError,
  GdbBreakpointError,
  GdbChecksumError,
  GdbErrorReply,
  GdbMemoryAccessError,
  GdbStateError,
  GdbUnsupportedError,
} from './errors';
import { decodeHex, encodeHex, hexAddress, parseHexNumber, readUIntLE } from './hex';
import type { GdbMemoryPort, MemoryRange, ReadOptions } from './memory-port';
import { MAX_INCOMING_PACKET, unescapeBinary } from './packet';
import { RegisterLayout, RegisterValues, entries } from './registers';
import type { StopReply } from './stop-reply';
import { TargetDescription, layoutOf, loadTargetDescription } from './target-description';

export interface GdbConnectOptions extends CallOptions, ConnectionOptions {
  /** Use QStartNoAckMode when the stub offers it (default true). */
  noAckMode?: boolean;
  /** Ask for multiprocess thread ids (`pPID.TID`) (default false: plain ids such as `01`). */
  multiprocess?: boolean;
}

export type BreakpointType = 0 | 1 | 2 | 3 | 4;

export interface VContAction {
  /** c continue, s step, C/S with a signal, t stop, r range step. */
  action: 'c' | 's' | 'C' | 'S' | 't' | 'r';
  /** The thread it applies to; none = every thread without an action of its own. */
  thread?: string;
  signal?: number;
  start?: bigint;
  end?: bigint;
}

export type GdbClientEvents = {
  /** The target stopped. `solicited` is false when nobody here asked (VM paused through QMP, connect). */
  stop: [reply: StopReply, solicited: boolean];
  /** Console output (`O` packets) while running. */
  output: [text: string];
  /** The connection is gone; `error` is undefined after close()/detach(). */
  close: [error: Error | undefined];
};

/** Default packet size when the stub does not say (gdb's historical default). */
const DEFAULT_PACKET_SIZE = 400;
/** `M` header room: 'M' + 16 address digits + ',' + 8 length digits + ':' and slack. */
const WRITE_HEADER = 32;
const MAX_ACCESS = 1 << 30;
const MAX_XFER = 1 << 20;
const MAX_MONITOR_OUTPUT = 16 << 20;
const MAX_THREAD_PAGES = 4096;

interface Piece {
  address: bigint;
  length: number;
  range: number;
  offset: number;
  tries: number;
}

/** How many times a piece is read again after a reply with a bad checksum. */
const CHECKSUM_RETRIES = 3;

export class GdbClient extends TypedEmitter<GdbClientEvents> implements GdbMemoryPort {
  readonly address: string;
  readonly #conn: GdbConnection;
  readonly #maxInFlight: number;
  readonly #requestTimeout: number;
  #features = new Map<string, string | boolean>();
  #maxPacketSize = DEFAULT_PACKET_SIZE;
  #phys: boolean | undefined;
  #layout: RegisterLayout | undefined;
  #layoutError: Error | undefined;
  #description: TargetDescription | undefined;
  #early: (() => void)[] | undefined = [];
  #vContActions: Set<string> | undefined;
  /**
   * The thread the stub's register and memory accesses apply to, when known: the last `Hg` it took,
   * or the thread of the last stop reply, which becomes the stub's general thread (QEMU's
   * gdb_set_stop_cpu; gdb's remote.c record_currthread assumes the same). Spares an `Hg` round
   * trip before each `g`/`G` of the thread that just stopped.
   */
  #generalThread: string | undefined;
  /** Counts stop replies, so that an `Hg` answered around a stop is not trusted. */
  #stopCount = 0;

  private constructor(conn: GdbConnection, opts: GdbConnectOptions) {
    super();
    this.#conn = conn;
    conn.on('stop', (r) => {
      this.#stopCount++;
      this.#generalThread = r.kind === 'T' ? r.thread : undefined;
    });
    this.address = conn.address;
    this.#maxInFlight = Math.max(1, opts.maxInFlight ?? 32);
    this.#requestTimeout = opts.requestTimeout ?? 10_000;
    // Events during connect() are replayed once it has resolved, so listeners attached right
    // after `await GdbClient.connect()` see the T02 QEMU sends when it pauses a running VM.
    const deliver = (fire: () => void) => (this.#early ? this.#early.push(fire) : fire());
    conn.on('stop', (r, solicited) => deliver(() => this.emit('stop', r, solicited)));
    conn.on('output', (text) => deliver(() => this.emit('output', text)));
    conn.on('close', (err) => deliver(() => this.emit('close', err)));
  }

  /** Connects to `unix:/path` or `tcp:127.0.0.1:PORT` and runs the handshake. */
  static async connect(address: string, opts: GdbConnectOptions = {}): Promise<GdbClient> {
    const timeout = opts.timeout ?? 10_000;
    const deadline = Date.now() + timeout;
    const conn = await GdbConnection.open(address, { ...opts, timeout, signal: opts.signal });
    const client = new GdbClient(conn, opts);
    const ac = new AbortController();
    try {
      // one timeout for the whole of connect(): what the socket took is not given again
      await withDeadline(`gdbstub handshake at ${conn.address}`, client.#handshake(opts, { signal: ac.signal, timeout: Infinity }), {
        timeout: Math.max(1, deadline - Date.now()),
        signal: opts.signal,
        onCancel: () => ac.abort(),
      });
    } catch (err) {
      await conn.close();
      throw err;
    }
    const early = client.#early ?? [];
    client.#early = undefined;
    if (early.length) setImmediate(() => early.forEach((fire) => fire()));
    return client;
  }

  async #handshake(opts: GdbConnectOptions, call: CallOptions): Promise<void> {
    const wanted = ['swbreak+', 'hwbreak+', 'vContSupported+', 'xmlRegisters=i386'];
    if (opts.multiprocess) wanted.unshift('multiprocess+');
    const supported = await this.#text(`qSupported:${wanted.join(';')}`, call);
    for (const item of supported.split(';')) {
      if (!item) continue;
      const eq = item.indexOf('=');
      if (eq >= 0) this.#features.set(item.slice(0, eq), item.slice(eq + 1));
      else if (item.endsWith('+')) this.#features.set(item.slice(0, -1), true);
      else if (item.endsWith('-') || item.endsWith('?')) this.#features.set(item.slice(0, -1), false);
      else this.#features.set(item, true);
    }
    const size = this.#features.get('PacketSize');
    if (typeof size === 'string') {
      const n = parseHexNumber(size, 'qSupported PacketSize');
      this.#maxPacketSize = Math.min(Math.max(n, 64), MAX_INCOMING_PACKET);
    }
    if (this.#features.get('QStartNoAckMode') === true && opts.noAckMode !== false) {
      const ok = await this.#text('QStartNoAckMode', call);
      if (ok === 'OK') this.#conn.disableAcks();
    }
    const mode = await this.#text('qqemu.PhyMemMode', call);
    this.#phys = mode === '1' ? true : mode === '0' ? false : undefined;
    if (this.#features.get('qXfer:features:read') === true) {
      try {
        this.#description = await loadTargetDescription((annex) => this.#readXfer('features', annex, call));
        this.#layout = layoutOf(this.#description);
        this.#conn.registerLayout = this.#layout;
      } catch (err) {
        // Only a broken description is tolerated (memory access works without registers).
        if (!(err instanceof ProtocolError) && !(err instanceof GdbErrorReply)) throw err;
        this.#layoutError = err;
      }
    } else {
      this.#layoutError = new GdbUnsupportedError('qXfer:features:read', 'target description (qXfer:features:read)');
    }
  }

  // ---- state ----

  /** Features from qSupported: `name+` → true, `name-` → false, `name=value` → value. */
  get features(): ReadonlyMap<string, string | boolean> {
    return this.#features;
  }
  /** Largest packet the stub accepts (qSupported PacketSize; 4096 on QEMU 7.2). */
  get maxPacketSize(): number {
    return this.#maxPacketSize;
  }
  /** Largest read in one `m` packet: the hex reply must fit a packet (2048 on QEMU 7.2). */
  get maxReadLength(): number {
    return Math.floor(this.#maxPacketSize / 2);
  }
  /** Largest write in one `M` packet. */
  get maxWriteLength(): number {
    return Math.max(1, Math.floor((this.#maxPacketSize - WRITE_HEADER) / 2));
  }
  /** Whether `m`/`M` use physical addresses; undefined if the stub has no such mode. */
  get physicalMemoryMode(): boolean | undefined {
    return this.#phys;
  }
  get state(): RunState {
    return this.#conn.state;
  }
  /** The most recent stop reply (including unsolicited ones such as T02 at connect). */
  get lastStop(): StopReply | undefined {
    return this.#conn.lastStop;
  }
  get stats(): Readonly<ConnectionStats> {
    return this.#conn.stats;
  }
  get ackMode(): boolean {
    return this.#conn.ackMode;
  }
  get targetDescription(): TargetDescription | undefined {
    return this.#description;
  }
  /** The register layout from the target description; throws why it is unavailable. */
  get registerLayout(): RegisterLayout {
    if (this.#layout) return this.#layout;
    throw new GdbStateError('no-registers', `${this.address}: no register layout: ${this.#layoutError?.message ?? 'target description not read'}`);
  }

  // ---- raw ----

  /** Sends any packet and returns the reply as text. For what the typed methods do not cover. */
  async command(packet: string, opts: CallOptions & { expectStop?: boolean } = {}): Promise<string> {
    return this.#text(packet, opts);
  }

  async #text(packet: string, opts: RequestOptions): Promise<string> {
    return (await this.#conn.request(packet, opts)).toString('latin1');
  }

  /** Requests a packet that answers OK or an error. */
  async #ok(packet: string, opts: RequestOptions, what?: string): Promise<void> {
    const reply = await this.#text(packet, opts);
    if (reply === 'OK') return;
    throw replyError(packet, reply, what);
  }

  /**
   * Runs a multi-packet operation under one deadline: with a caller timeout or signal, the
   * packets share an internal AbortController (and no timeout of their own); without, each packet
   * gets the connection's request timeout.
   */
  #scoped<T>(name: string, opts: CallOptions, run: (call: CallOptions) => Promise<T>): Promise<T> {
    if (opts.timeout === undefined && opts.signal === undefined) return run({});
    if (opts.signal?.aborted) return Promise.reject(new AbortError(name, { cause: opts.signal.reason }));
    const ac = new AbortController();
    return withDeadline(name, run({ signal: ac.signal, timeout: Infinity }), {
      timeout: opts.timeout,
      signal: opts.signal,
      onCancel: () => ac.abort(),
    });
  }

  async #readXfer(object: string, annex: string, call: CallOptions): Promise<string> {
    const parts: Buffer[] = [];
    let offset = 0;
    const chunk = Math.max(64, this.#maxPacketSize - 5);
    for (;;) {
      const packet = `qXfer:${object}:read:${annex}:${offset.toString(16)},${chunk.toString(16)}`;
      const reply = await this.#conn.request(packet, call);
      const kind = reply.length > 0 ? String.fromCharCode(reply[0]) : '';
      if (kind !== 'm' && kind !== 'l') throw replyError(packet, reply.toString('latin1'), `reading ${annex}`);
      const data = unescapeBinary(reply.subarray(1));
      parts.push(data);
      offset += data.length;
      if (offset > MAX_XFER) throw new ProtocolError(`qXfer ${annex} is larger than ${MAX_XFER} bytes`);
      if (kind === 'l') break;
      if (data.length === 0) throw new ProtocolError(`qXfer ${annex}: empty 'm' reply (no progress)`);
    }
    return Buffer.concat(parts).toString('utf8');
  }

  // ---- threads ----

  /** Selects the thread for register and memory access (`Hg`, default) or for resuming (`Hc`). */
  async selectThread(thread: string, op: 'g' | 'c' = 'g', opts: CallOptions = {}): Promise<void> {
    checkThread(thread);
    if (op === 'g' && thread === this.#generalThread) return;
    const stops = this.#stopCount;
    if (op === 'g') this.#generalThread = undefined;
    await this.#ok(`H${op}${thread}`, opts, `selecting thread ${thread}`);
    if (op === 'g' && stops === this.#stopCount) this.#generalThread = thread;
  }

  /** The thread `g`/`G`/`m` apply to, if the client knows it (see selectThread). */
  get generalThread(): string | undefined {
    return this.#generalThread;
  }

  /** The thread ids (`qfThreadInfo`/`qsThreadInfo`); on QEMU, one per vCPU. */
  async threads(opts: CallOptions = {}): Promise<string[]> {
    return this.#scoped('threads', opts, async (call) => {
      const out: string[] = [];
      let packet = 'qfThreadInfo';
      for (let page = 0; page < MAX_THREAD_PAGES; page++) {
        const reply = await this.#text(packet, call);
        if (reply === 'l') return out;
        if (reply === '') throw new GdbUnsupportedError(packet, 'thread list (qfThreadInfo)');
        if (reply[0] !== 'm') throw replyError(packet, reply);
        for (const id of reply.slice(1).split(',')) if (id) out.push(id);
        packet = 'qsThreadInfo';
      }
      throw new ProtocolError(`thread list longer than ${MAX_THREAD_PAGES} replies`);
    });
  }

  /** The current thread (`qC`). */
  async currentThread(opts: CallOptions = {}): Promise<string> {
    const reply = await this.#text('qC', opts);
    if (reply.startsWith('QC') && reply.length > 2) return reply.slice(2);
    if (reply === '') throw new GdbUnsupportedError('qC', 'current thread (qC)');
    throw replyError('qC', reply);
  }

  // ---- registers ----

  /** Every register in the `g` packet, by name (little-endian values). */
  async readRegisters(opts: CallOptions & { thread?: string } = {}): Promise<Map<string, bigint>> {
    const layout = this.registerLayout;
    return this.#scoped('read registers', opts, async (call) => {
      const { block, unavailable } = await this.#readBlock(call, opts.thread);
      return layout.decode(block, unavailable);
    });
  }

  /** Writes some registers by name: reads the `g` block, changes them, writes it back with `G`. */
  async writeRegisters(values: RegisterValues, opts: CallOptions & { thread?: string } = {}): Promise<void> {
    const layout = this.registerLayout;
    for (const [name, value] of entries(values)) layout.encodeValue(layout.require(name), value);
    return this.#scoped('write registers', opts, async (call) => {
      const { block, unavailable } = await this.#readBlock(call, opts.thread);
      if (unavailable) throw new GdbStateError('unavailable', 'the g packet has unavailable registers: write them one by one with writeRegister()');
      const packet = `G${encodeHex(layout.encode(block, values))}`;
      const reply = await this.#text(packet, { ...call, name: 'G (write registers)' });
      if (reply !== 'OK') throw replyError('G', reply, 'writing registers');
    });
  }

  /** One register by name (`p` by number; falls back to `g` where `p` is not supported). */
  async readRegister(name: string, opts: CallOptions & { thread?: string } = {}): Promise<bigint> {
    const info = this.registerLayout.require(name);
    return this.#scoped(`read register ${info.name}`, opts, async (call) => {
      const packet = `p${info.regnum.toString(16)}`;
      const reply = await this.#withThread(opts.thread, packet, call);
      if (reply === '') {
        const all = await this.readRegisters({ ...call, thread: opts.thread });
        const v = all.get(info.name);
        if (v === undefined) throw new GdbUnsupportedError(packet, `register ${info.name} (neither p nor g provides it)`);
        return v;
      }
      if (/^[xX]+$/.test(reply)) throw new GdbStateError('unavailable', `register ${info.name} is unavailable`);
      if (reply.length === 3 && reply[0] === 'E') throw replyError(packet, reply, `reading register ${info.name}`);
      return readUIntLE(decodeHex(reply, `p reply for ${info.name}`));
    });
  }

  /** Writes one register by name (`P`; falls back to a `g`/`G` read-modify-write). */
  async writeRegister(name: string, value: bigint, opts: CallOptions & { thread?: string } = {}): Promise<void> {
    const info = this.registerLayout.require(name);
    const bytes = this.registerLayout.encodeValue(info, value);
    return this.#scoped(`write register ${info.name}`, opts, async (call) => {
      const packet = `P${info.regnum.toString(16)}=${encodeHex(bytes)}`;
      const reply = await this.#withThread(opts.thread, packet, call);
      if (reply === 'OK') return;
      if (reply === '') return this.writeRegisters(new Map([[info.name, value]]), { ...call, thread: opts.thread });
      throw replyError(packet, reply, `writing register ${info.name}`);
    });
  }

  /**
   * Sends `packet`, preceded by `Hg<thread>` when a thread is given. Both are queued together so no
   * other request can come between them.
   */
  async #withThread(thread: string | undefined, packet: string, call: CallOptions): Promise<string> {
    if (thread === undefined || thread === this.#generalThread) return this.#text(packet, call);
    checkThread(thread);
    const stops = this.#stopCount;
    this.#generalThread = undefined;
    const select = this.#text(`Hg${thread}`, call);
    const reply = this.#text(packet, call);
    reply.catch(() => undefined);
    const selected = await select;
    if (selected !== 'OK') throw replyError(`Hg${thread}`, selected, `selecting thread ${thread}`);
    if (stops === this.#stopCount) this.#generalThread = thread;
    return reply;
  }

  async #readBlock(call: CallOptions, thread?: string): Promise<{ block: Buffer; unavailable?: Uint8Array }> {
    const reply = await this.#withThread(thread, 'g', call);
    if (reply.length === 3 && reply[0] === 'E') throw replyError('g', reply, 'reading registers');
    if (reply === '') throw new GdbUnsupportedError('g', 'register read (g)');
    if (!reply.includes('x')) return { block: decodeHex(reply, 'g reply') };
    // `xx` marks unavailable bytes
    if (reply.length % 2) throw new ProtocolError('g reply has odd length', reply);
    const unavailable = new Uint8Array(reply.length / 2);
    let hex = '';
    for (let i = 0; i < reply.length; i += 2) {
      const pair = reply.slice(i, i + 2);
      if (pair === 'xx') {
        unavailable[i / 2] = 1;
        hex += '00';
      } else hex += pair;
    }
    return { block: decodeHex(hex, 'g reply'), unavailable };
  }

  // ---- memory ----

  /** See GdbMemoryPort.readMemory. */
  async readMemory(address: bigint, length: number, opts: ReadOptions = {}): Promise<Buffer> {
    if (length > 0 && length <= this.maxReadLength) return this.#readOnePacket(address, length, opts);
    const [out] = await this.#readRanges([{ address, length }], opts, true);
    return out;
  }

  /**
   * A read that fits one packet, as most single reads of the kernel layer do (a pointer, a
   * struct): one request at a time, without a bulk read's group, closures and call timer, which
   * cost a measurable part of a round trip. A short reply or a bad checksum asks again.
   */
  async #readOnePacket(address: bigint, length: number, opts: ReadOptions): Promise<Buffer> {
    checkRange(address, length, 'read');
    const out = Buffer.allocUnsafe(length);
    const ranges = [{ address, length }];
    const pieces: Piece[] = [{ address, length, range: 0, offset: 0, tries: 0 }];
    const timeout = opts.timeout ?? this.#requestTimeout;
    const deadline = Date.now() + timeout;
    // pipelined, as a bulk read's packets are (window > 1): other reads may be in flight with it
    const pipelined = (opts.window ?? this.#maxInFlight) > 1 && this.#maxInFlight > 1;
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i];
      const packet = `m${hexAddress(p.address)},${p.length.toString(16)}`;
      // a caller's timeout bounds the whole read, however many packets it takes
      const left = i === 0 || !Number.isFinite(timeout) ? timeout : Math.max(0, deadline - Date.now());
      let reply: Buffer;
      try {
        reply = await this.#conn.request(packet, { pipelined, timeout: left, signal: opts.signal });
      } catch (err) {
        if (err instanceof GdbChecksumError && p.tries < CHECKSUM_RETRIES) {
          pieces.push({ ...p, tries: p.tries + 1 });
          continue;
        }
        throw err;
      }
      this.#storePiece(p, packet, reply, [out], pieces, ranges, true);
    }
    return out;
  }

  /** See GdbMemoryPort.readMemoryRanges. */
  async readMemoryRanges(ranges: readonly MemoryRange[], opts: ReadOptions = {}): Promise<Buffer[]> {
    return this.#readRanges(ranges, opts, false);
  }

  async #readRanges(ranges: readonly MemoryRange[], opts: ReadOptions, single: boolean): Promise<Buffer[]> {
    const step = this.maxReadLength;
    const results: Buffer[] = [];
    const pieces: Piece[] = [];
    ranges.forEach((r, index) => {
      checkRange(r.address, r.length, 'read');
      results.push(Buffer.allocUnsafe(r.length));
      for (let off = 0; off < r.length; off += step) {
        pieces.push({ address: r.address + BigInt(off), length: Math.min(step, r.length - off), range: index, offset: off, tries: 0 });
      }
    });
    if (pieces.length === 0) return results;
    const window = Math.min(Math.max(1, Math.floor(opts.window ?? this.#maxInFlight)), this.#maxInFlight);
    const what = () => (single ? `read of ${ranges[0].length} bytes at 0x${hexAddress(ranges[0].address)}` : `read of ${ranges.length} ranges`);
    if (opts.signal?.aborted) throw new AbortError(what(), { cause: opts.signal.reason });
    // Thousands of packets: no signal listener per packet, but one for the call. A caller timeout
    // bounds the whole read with one timer; without one, each packet has the connection's request
    // timeout (a shared timer), so the read fails when a reply is that late. Either way the packets
    // still out are cancelled as a group.
    const group = new RequestGroup();
    const callTimeout = opts.timeout;
    const request: RequestOptions = { pipelined: window > 1, timeout: callTimeout === undefined ? this.#requestTimeout : Infinity, group };
    return new Promise<Buffer[]>((resolve, reject) => {
      let next = 0;
      let active = 0;
      let finished = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = () => {
        finished = true;
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      const fail = (err: unknown) => {
        if (finished) return;
        finish();
        group.cancel(err instanceof Error ? err : new ProtocolError(String(err)));
        reject(err);
      };
      const onAbort = () => fail(new AbortError(what(), { cause: opts.signal?.reason }));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (callTimeout !== undefined && Number.isFinite(callTimeout)) {
        timer = setTimeout(() => fail(new TimeoutError(what(), callTimeout)), callTimeout);
        timer.unref();
      }
      const launch = () => {
        while (!finished && active < window && next < pieces.length) {
          const p = pieces[next++];
          active++;
          const packet = `m${hexAddress(p.address)},${p.length.toString(16)}`;
          this.#conn.request(packet, request).then(
            (reply) => {
              active--;
              if (finished) return;
              try {
                this.#storePiece(p, packet, reply, results, pieces, ranges, single);
              } catch (err) {
                fail(err);
                return;
              }
              if (next >= pieces.length && active === 0) {
                finish();
                resolve(results);
              } else launch();
            },
            (err) => {
              active--;
              if (err instanceof GdbChecksumError && p.tries < CHECKSUM_RETRIES && !finished) {
                // reads are idempotent: ask again
                pieces.push({ ...p, tries: p.tries + 1 });
                launch();
                return;
              }
              fail(err instanceof TimeoutError && callTimeout === undefined ? new TimeoutError(`${what()} (no reply from the stub)`, this.#requestTimeout) : err);
            },
          );
        }
      };
      launch();
    });
  }

  #storePiece(p: Piece, packet: string, reply: Buffer, results: Buffer[], pieces: Piece[], ranges: readonly MemoryRange[], single: boolean): void {
    const r = ranges[p.range];
    if (reply.length === 0) throw new GdbUnsupportedError(packet, 'memory read (m)');
    if (reply[0] === 0x45 /* E */ && (reply.length === 3 || reply[1] === 0x2e)) {
      throw new GdbMemoryAccessError(packet, reply.toString('latin1'), p.address, p.length, { address: r.address, length: r.length, index: single ? undefined : p.range }, this.#phys);
    }
    if (reply.length > p.length * 2) throw new ProtocolError(`${packet}: reply longer than asked`, reply.toString('latin1', 0, 64));
    // Decode straight into place; write() stops at the first non-hex digit, which the count shows.
    const hex = reply.toString('latin1');
    const got = results[p.range].write(hex, p.offset, p.length, 'hex');
    if (got * 2 !== hex.length) throw new ProtocolError(`${packet}: reply is not hex`, hex.slice(0, 64));
    if (got < p.length) {
      // A stub may answer with fewer bytes than asked: ask again for the rest.
      pieces.push({ address: p.address + BigInt(got), length: p.length - got, range: p.range, offset: p.offset + got, tries: 0 });
    }
  }

  /** See GdbMemoryPort.writeMemory. */
  async writeMemory(address: bigint, data: Uint8Array, opts: CallOptions = {}): Promise<void> {
    checkRange(address, data.length, 'write');
    const step = this.maxWriteLength;
    return this.#scoped(`write of ${data.length} bytes at 0x${hexAddress(address)}`, opts, async (call) => {
      for (let off = 0; off < data.length; off += step) {
        const piece = data.subarray(off, Math.min(off + step, data.length));
        const at = address + BigInt(off);
        const packet = `M${hexAddress(at)},${piece.length.toString(16)}:${encodeHex(piece)}`;
        const name = `M${hexAddress(at)},${piece.length.toString(16)}`;
        const reply = await this.#text(packet, { ...call, name });
        if (reply === 'OK') continue;
        if (reply === '') throw new GdbUnsupportedError(name, 'memory write (M)');
        if (reply[0] === 'E') {
          throw new GdbMemoryAccessError(name, reply, at, piece.length, { address, length: data.length }, this.#phys);
        }
        throw new ProtocolError(`${name}: unexpected reply`, reply);
      }
    });
  }

  /** See GdbMemoryPort.setPhysicalMemoryMode. */
  async setPhysicalMemoryMode(on: boolean, opts: CallOptions = {}): Promise<void> {
    const packet = `Qqemu.PhyMemMode:${on ? 1 : 0}`;
    await this.#ok(packet, opts, 'physical memory mode (Qqemu.PhyMemMode, QEMU >= 4.1)');
    this.#phys = on;
  }

  /** Asks the stub which memory mode is on (`qqemu.PhyMemMode`) and remembers it. */
  async queryPhysicalMemoryMode(opts: CallOptions = {}): Promise<boolean> {
    const reply = await this.#text('qqemu.PhyMemMode', opts);
    if (reply !== '0' && reply !== '1') throw replyError('qqemu.PhyMemMode', reply, 'physical memory mode query');
    this.#phys = reply === '1';
    return this.#phys;
  }

  // ---- breakpoints ----

  /**
   * Inserts a breakpoint (0 software, 1 hardware) or watchpoint (2 write, 3 read, 4 access);
   * `kind` is the breakpoint kind or the watched length. Under KVM types 1–4 share the 4 debug
   * registers, so a fifth fails with a GdbBreakpointError.
   */
  async insertBreakpoint(type: BreakpointType, address: bigint, kind = 1, opts: CallOptions = {}): Promise<void> {
    return this.#breakpoint('Z', type, address, kind, opts);
  }

  async removeBreakpoint(type: BreakpointType, address: bigint, kind = 1, opts: CallOptions = {}): Promise<void> {
    return this.#breakpoint('z', type, address, kind, opts);
  }

  async #breakpoint(op: 'Z' | 'z', type: BreakpointType, address: bigint, kind: number, opts: CallOptions): Promise<void> {
    if (![0, 1, 2, 3, 4].includes(type)) throw new GdbArgumentError(`breakpoint type must be 0-4, not ${String(type)}`);
    checkRange(address, 0, 'breakpoint');
    if (!Number.isInteger(kind) || kind < 0 || kind > 0xffff) throw new GdbArgumentError(`bad breakpoint kind/length ${kind}`);
    const packet = `${op}${type},${hexAddress(address)},${kind.toString(16)}`;
    const reply = await this.#text(packet, opts);
    if (reply === 'OK') return;
    if (reply === '') throw new GdbUnsupportedError(packet, `breakpoint type ${type} (${op}${type})`);
    throw new GdbBreakpointError(packet, reply, type, address, kind);
  }

  // ---- execution ----

  /** Resumes every vCPU (`c`). Resolves once the stub has it; then waitForStop(). */
  continue(opts: CallOptions = {}): Promise<void> {
    return this.#conn.resume('c', opts);
  }

  /** Single-steps one instruction (`s`, or `vCont;s:<thread>` for one thread) and resolves with the stop. */
  async step(thread?: string, opts: CallOptions = {}): Promise<StopReply> {
    if (thread !== undefined) checkThread(thread);
    return this.#scoped('step', opts, async (call) => {
      await this.#conn.resume(thread === undefined ? 's' : `vCont;s:${thread}`, call);
      return this.#conn.waitForStop(call);
    });
  }

  /** Resumes with per-thread actions (`vCont;s:1;c`). Resolves once running; then waitForStop(). */
  async vCont(actions: readonly VContAction[], opts: CallOptions = {}): Promise<void> {
    if (actions.length === 0) throw new GdbArgumentError('vCont needs at least one action');
    const supported = await this.#vContSupport(opts);
    const parts = actions.map((a) => {
      if (!supported.has(a.action)) throw new GdbUnsupportedError(`vCont;${a.action}`, `vCont action ${a.action} (stub supports ${[...supported].join(',')})`);
      let s: string = a.action;
      if (a.action === 'C' || a.action === 'S') {
        if (a.signal === undefined || !Number.isInteger(a.signal) || a.signal < 0 || a.signal > 255) throw new GdbArgumentError(`vCont ${a.action} needs a signal 0-255`);
        s += a.signal.toString(16).padStart(2, '0');
      }
      if (a.action === 'r') {
        if (a.start === undefined || a.end === undefined) throw new GdbArgumentError('vCont r needs start and end');
        s += `${hexAddress(a.start)},${hexAddress(a.end)}`;
      }
      if (a.thread !== undefined) {
        checkThread(a.thread);
        s += `:${a.thread}`;
      }
      return s;
    });
    await this.#conn.resume(`vCont;${parts.join(';')}`, opts);
  }

  async #vContSupport(opts: CallOptions): Promise<Set<string>> {
    if (!this.#vContActions) {
      const reply = await this.#text('vCont?', opts);
      if (!reply.startsWith('vCont')) throw new GdbUnsupportedError('vCont?', 'vCont');
      this.#vContActions = new Set(reply.split(';').slice(1));
    }
    return this.#vContActions;
  }

  /**
   * Stops a running target (the 0x03 byte) and resolves with the stop reply (T02 on QEMU). If the
   * target is stopped already, resolves with the stop that stopped it.
   */
  async interrupt(opts: CallOptions = {}): Promise<StopReply> {
    if (this.#conn.state === 'running') {
      this.#conn.interrupt();
      return this.#conn.waitForStop(opts);
    }
    if (this.#conn.state === 'stopped' && this.#conn.lastStop) return this.#conn.lastStop;
    return this.#conn.waitForStop(opts);
  }

  /** Waits until the target stops after continue()/vCont() and returns why. */
  waitForStop(opts: CallOptions = {}): Promise<StopReply> {
    return this.#conn.waitForStop(opts);
  }

  // ---- monitor, detach, close ----

  /** Runs a QEMU monitor (HMP) command through `qRcmd` and returns what it printed. */
  async monitor(command: string, opts: CallOptions = {}): Promise<string> {
    const out: Buffer[] = [];
    let size = 0;
    const take = (hex: Buffer) => {
      const text = decodeHex(hex, 'qRcmd output');
      size += text.length;
      if (size > MAX_MONITOR_OUTPUT) throw new ProtocolError(`monitor output larger than ${MAX_MONITOR_OUTPUT} bytes`);
      out.push(text);
    };
    const packet = `qRcmd,${encodeHex(Buffer.from(command, 'utf8'))}`;
    const final = await this.#conn.request(packet, {
      ...opts,
      name: `monitor ${JSON.stringify(command.slice(0, 40))}`,
      collect: (data) => {
        if (data[0] === 0x4f && !(data.length === 2 && data[1] === 0x4b)) {
          take(data.subarray(1));
          return false;
        }
        return true;
      },
    });
    const reply = final.toString('latin1');
    if (reply === '') throw new GdbUnsupportedError(packet, 'monitor commands (qRcmd)');
    if (reply !== 'OK') {
      if (reply[0] === 'E' && (reply.length === 3 || reply[1] === '.')) throw replyError(packet, reply, `monitor ${command}`);
      take(final);
    }
    return Buffer.concat(out).toString('utf8');
  }

  /**
   * Detaches (`D`): QEMU removes every breakpoint and resumes the VM. A running target is
   * interrupted first (`D` needs a stopped one). The connection is closed afterwards, because
   * anything sent to QEMU's stub after `D` would pause the VM again.
   */
  async detach(opts: CallOptions = {}): Promise<void> {
    try {
      await this.#scoped('detach', opts, async (call) => {
        if (this.#conn.state === 'running') await this.interrupt(call);
        await this.#ok('D', call, 'detach');
      });
    } finally {
      await this.#conn.close();
    }
  }

  /**
   * Closes the connection; pending calls fail with DisconnectedError. Idempotent. QEMU 7.2 leaves
   * the VM paused (and breakpoints inserted) when a client goes without detach().
   */
  close(): Promise<void> {
    return this.#conn.close();
  }
}

function replyError(packet: string, reply: string, what?: string): VmiError {
  if (reply === '') return new GdbUnsupportedError(packet, what);
  if (reply[0] === 'E') return new GdbErrorReply(packet, reply);
  return new ProtocolError(`${what ?? packet}: unexpected reply`, reply);
}

function checkRange(address: bigint, length: number, what: string): void {
  if (typeof address !== 'bigint' || address < 0n || address >= 1n << 64n) {
    throw new GdbArgumentError(`${what}: address must be a bigint in [0, 2^64), not ${String(address)}`);
  }
  if (!Number.isInteger(length) || length < 0 || length > MAX_ACCESS) {
    throw new GdbArgumentError(`${what}: length must be an integer in [0, ${MAX_ACCESS}], not ${length}`);
  }
  if (address + BigInt(length) > 1n << 64n) throw new GdbArgumentError(`${what}: 0x${address.toString(16)} + ${length} wraps around 2^64`);
}

function checkThread(thread: string): void {
  if (!/^(-1|[0-9a-fA-F]{1,16}|p(-1|[0-9a-fA-F]{1,16})(\.(-1|[0-9a-fA-F]{1,16}))?)$/.test(thread)) {
    throw new GdbArgumentError(`not a thread id: ${JSON.stringify(thread)}`);
  }
}
