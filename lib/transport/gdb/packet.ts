/**
 * The gdb remote serial protocol's wire format: `$payload#cs` packets (cs = sum of the payload's
 * bytes mod 256 as two hex digits), `%payload#cs` notifications, single-byte `+`/`-` acks, the
 * `}` escape (next byte XOR 0x20) for `#`, `$`, `}` and `*`, and `X*N` run-length encoding
 * (repeat X a further N-29 times) that a stub may use in what it sends.
 *
 * The encoder escapes every special byte, so any payload (text or binary) frames correctly. The
 * decoder is a byte-stream state machine: packets may be torn across reads or several may share
 * one read. It expands run-length encoding but leaves `}` escapes in place: those are part of
 * binary replies (qXfer) only, and `unescapeBinary` undoes them where they apply.
 */
import { ProtocolError } from '../../errors';

/** The largest packet we accept from a stub (before expansion and after): 1 MiB. */
export const MAX_INCOMING_PACKET = 1 << 20;

const DOLLAR = 0x24;
const PERCENT = 0x25;
const HASH = 0x23;
const STAR = 0x2a;
const BRACE = 0x7d;
const PLUS = 0x2b;
const MINUS = 0x2d;
const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * Sum of bytes mod 256. Long inputs (memory replies are 4 KiB) are summed four bytes at a time:
 * two 16-bit lanes each collect two bytes per 32-bit word, folded before they can overflow.
 */
export function checksum(data: Uint8Array, start = 0, end = data.length): number {
  let sum = 0;
  let i = start;
  if (end - i >= 64) {
    const base = data.byteOffset;
    while (((base + i) & 3) !== 0) sum += data[i++];
    const words = (end - i) >>> 2;
    const u32 = new Uint32Array(data.buffer, base + i, words);
    let acc = 0;
    for (let w = 0; w < words; w++) {
      const v = u32[w];
      acc += (v & 0x00ff00ff) + ((v >>> 8) & 0x00ff00ff);
      if ((w & 127) === 127) {
        sum += (acc & 0xffff) + (acc >>> 16);
        acc = 0;
      }
    }
    sum += (acc & 0xffff) + (acc >>> 16);
    i += words * 4;
  }
  for (; i < end; i++) sum += data[i];
  return sum & 0xff;
}

function needsEscape(b: number): boolean {
  return b === HASH || b === DOLLAR || b === BRACE || b === STAR;
}

/** Escapes `#`, `$`, `}` and `*` as `}` followed by the byte XOR 0x20. */
export function escapeBinary(data: Uint8Array): Buffer {
  let extra = 0;
  for (let i = 0; i < data.length; i++) if (needsEscape(data[i])) extra++;
  const out = Buffer.allocUnsafe(data.length + extra);
  let o = 0;
  for (let i = 0; i < data.length; i++) {
    const b = data[i];
    if (needsEscape(b)) {
      out[o++] = BRACE;
      out[o++] = b ^ 0x20;
    } else out[o++] = b;
  }
  return out;
}

/** Undoes `escapeBinary`. A `}` at the very end is a ProtocolError. */
export function unescapeBinary(data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(data.length);
  let o = 0;
  for (let i = 0; i < data.length; i++) {
    const b = data[i];
    if (b === BRACE) {
      if (++i >= data.length) throw new ProtocolError('escape character at the end of a packet');
      out[o++] = data[i] ^ 0x20;
    } else out[o++] = b;
  }
  return out.subarray(0, o);
}

/**
 * Frames a payload: `$` + escaped payload + `#` + checksum. Strings are taken byte for byte
 * (latin1); every packet vmictl sends is ASCII.
 */
export function encodePacket(payload: string | Uint8Array): Buffer {
  if (typeof payload === 'string' && !/[#$}*\u0100-\uffff]/.test(payload)) {
    // the common case (every command): one allocation
    let sum = 0;
    for (let i = 0; i < payload.length; i++) sum += payload.charCodeAt(i);
    return Buffer.from(`$${payload}#${HEX2[sum & 0xff]}`, 'latin1');
  }
  const raw = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
  let body: Uint8Array = raw;
  for (let i = 0; i < raw.length; i++) {
    if (needsEscape(raw[i])) {
      body = escapeBinary(raw);
      break;
    }
  }
  const out = Buffer.allocUnsafe(body.length + 4);
  out[0] = DOLLAR;
  out.set(body, 1);
  out[body.length + 1] = HASH;
  out.write(checksum(body).toString(16).padStart(2, '0'), body.length + 2, 'latin1');
  return out;
}

/**
 * Expands run-length encoding: `X*N` is X followed by N-29 more copies of X. N must be a printable
 * character from 0x1e (' ' - 2, 1 copy) to 0x7e; a `*` with nothing before it, or at the end, is
 * corrupt. The result is limited to `limit` bytes.
 */
export function decodeRunLength(data: Uint8Array, limit = MAX_INCOMING_PACKET): Buffer {
  if (data.indexOf(STAR) < 0) return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const parts: number[] = [];
  let size = 0;
  // First pass: validate and size.
  for (let i = 0; i < data.length; i++) {
    if (data[i] === STAR) {
      if (i === 0) throw new ProtocolError('run-length encoding with no character to repeat');
      if (i + 1 >= data.length) throw new ProtocolError('run-length encoding without a count');
      const count = data[i + 1] - 29;
      if (count < 1 || data[i + 1] > 0x7e) throw new ProtocolError(`bad run-length count byte 0x${data[i + 1].toString(16)}`);
      parts.push(i);
      size += count;
      i++;
    } else size++;
    if (size > limit) throw new ProtocolError(`run-length encoded packet expands beyond ${limit} bytes`);
  }
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  let from = 0;
  for (const at of parts) {
    out.set(data.subarray(from, at), o);
    o += at - from;
    const count = data[at + 1] - 29;
    out.fill(out[o - 1], o, o + count);
    o += count;
    from = at + 2;
  }
  out.set(data.subarray(from), o);
  return out;
}

/**
 * Run-length encodes `data` the way gdbserver does (runs of 4 or more; counts that would produce
 * `#` or `$` are shortened). Used by tests and fake servers to produce what a real stub may send.
 */
export function encodeRunLength(data: Uint8Array): Buffer {
  const out: number[] = [];
  let i = 0;
  while (i < data.length) {
    const b = data[i];
    let run = 1;
    while (i + run < data.length && data[i + run] === b && run < 98) run++;
    if (run >= 4) {
      let repeat = run - 1;
      while (repeat + 29 === HASH || repeat + 29 === DOLLAR) repeat--;
      out.push(b, STAR, repeat + 29);
      i += repeat + 1;
    } else {
      out.push(b);
      i++;
    }
  }
  return Buffer.from(out);
}

export type FrameEvent =
  /** A packet with a good checksum, run-length encoding expanded (escapes left in place). */
  | { type: 'packet'; data: Buffer }
  /** A `%…#cs` asynchronous notification (never acked). */
  | { type: 'notification'; data: Buffer }
  /** A packet whose checksum matched but whose contents are invalid (bad run-length encoding). */
  | { type: 'invalid'; error: ProtocolError }
  /** A packet whose checksum did not match: nack it and the stub sends it again. */
  | { type: 'bad-checksum'; data: Buffer; expected: number; received: string }
  | { type: 'ack' }
  | { type: 'nack' };

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

const IDLE = 0;
const DATA = 1;
const CSUM1 = 2;
const CSUM2 = 3;

/**
 * Incremental decoder for what a stub sends. `push` delivers events through `onEvent` in stream
 * order, and throws a ProtocolError only when framing is lost for good (a packet longer than the
 * limit): the connection must be dropped then.
 */
export class PacketDecoder {
  readonly #limit: number;
  readonly #onEvent: (ev: FrameEvent) => void;
  #state = IDLE;
  #notification = false;
  #parts: Buffer[] = [];
  #size = 0;
  #csumHigh = 0;
  /** Bytes outside packets that were not acks, and packets restarted by a `$` inside them. */
  junkBytes = 0;
  restarts = 0;

  constructor(onEvent: (ev: FrameEvent) => void, limit = MAX_INCOMING_PACKET) {
    this.#onEvent = onEvent;
    this.#limit = limit;
  }

  /** True while part of a packet has been received. */
  get inPacket(): boolean {
    return this.#state !== IDLE;
  }

  push(chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.#state) {
        case IDLE: {
          const b = chunk[i++];
          if (b === DOLLAR || b === PERCENT) this.#begin(b === PERCENT);
          else if (b === PLUS) this.#onEvent({ type: 'ack' });
          else if (b === MINUS) this.#onEvent({ type: 'nack' });
          else this.junkBytes++;
          break;
        }
        case DATA: {
          const hash = chunk.indexOf(HASH, i);
          const end = hash < 0 ? n : hash;
          const restart = chunk.indexOf(DOLLAR, i);
          if (restart >= 0 && restart < end) {
            // A `$` can never be inside a packet (it would be escaped): the stub started over.
            this.restarts++;
            i = restart + 1;
            this.#begin(false);
            break;
          }
          if (end > i) {
            this.#parts.push(chunk.subarray(i, end));
            this.#size += end - i;
          }
          if (this.#size > this.#limit) {
            this.#state = IDLE;
            this.#parts = [];
            throw new ProtocolError(`packet longer than ${this.#limit} bytes`);
          }
          if (hash < 0) return;
          i = hash + 1;
          this.#state = CSUM1;
          break;
        }
        case CSUM1:
          this.#csumHigh = chunk[i++];
          this.#state = CSUM2;
          break;
        case CSUM2: {
          const low = chunk[i++];
          this.#state = IDLE;
          this.#finish(this.#csumHigh, low);
          break;
        }
      }
    }
  }

  #begin(notification: boolean): void {
    this.#state = DATA;
    this.#notification = notification;
    this.#parts = [];
    this.#size = 0;
  }

  #finish(high: number, low: number): void {
    const parts = this.#parts;
    this.#parts = [];
    const data = parts.length === 1 ? parts[0] : Buffer.concat(parts, this.#size);
    const expected = checksum(data);
    const hi = hexValue(high);
    const lo = hexValue(low);
    if (hi < 0 || lo < 0 || hi * 16 + lo !== expected) {
      this.#onEvent({ type: 'bad-checksum', data, expected, received: String.fromCharCode(high, low) });
      return;
    }
    let decoded: Buffer;
    try {
      decoded = decodeRunLength(data, this.#limit);
    } catch (err) {
      this.#onEvent({ type: 'invalid', error: err as ProtocolError });
      return;
    }
    this.#onEvent(this.#notification ? { type: 'notification', data: decoded } : { type: 'packet', data: decoded });
  }
}
