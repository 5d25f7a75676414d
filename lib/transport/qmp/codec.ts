/**
 * Framing of the QMP byte stream into JSON objects, and encoding of requests.
 *
 * QEMU ends each message with "\r\n", but framing on newlines alone would be wrong: a monitor
 * started with `pretty=on` spreads one object over many lines. So this does what QEMU's own
 * json-streamer does: it follows braces outside strings and cuts where the top-level object closes.
 * Only bytes are inspected; `{`, `}`, `"` and `\` never occur inside a UTF-8 multi-byte sequence,
 * so a chunk boundary in the middle of a character is harmless.
 *
 * The peer is not trusted to end its messages: bytes held for an unfinished object are bounded
 * (64 MiB by default, well above the largest real reply such as a big `query-qmp-schema`), and so
 * is nesting depth. Exceeding either is a ProtocolError instead of unbounded memory.
 */
import { ProtocolError } from '../../errors';

export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** QEMU's parser refuses nesting deeper than 1024 (MAX_NESTING in json-streamer.c); so do we. */
export const MAX_NESTING = 1024;

const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function isJsonWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Splits a byte stream into parsed JSON objects. After it throws once it stays failed. */
export class JsonStreamDecoder {
  readonly maxMessageBytes: number;
  #parts: Buffer[] = [];
  #partBytes = 0;
  #depth = 0;
  #inString = false;
  #escaped = false;
  #failed: Error | undefined;

  constructor(maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES) {
    this.maxMessageBytes = maxMessageBytes;
  }

  /** Bytes of an object that has started but not ended (non-zero at EOF means a torn message). */
  get pendingBytes(): number {
    return this.#partBytes;
  }

  /**
   * Consumes one chunk and hands every object it completes to `onMessage`, in order, as soon as
   * it is complete: objects that precede garbage in the same chunk are still delivered before the
   * ProtocolError is thrown.
   */
  push(chunk: Buffer, onMessage: (msg: Record<string, unknown>) => void): void {
    if (this.#failed) throw this.#failed;
    try {
      this.#scan(chunk, onMessage);
    } catch (err) {
      this.#failed = err as Error;
      this.#parts = [];
      this.#partBytes = 0;
      throw err;
    }
  }

  #scan(chunk: Buffer, onMessage: (msg: Record<string, unknown>) => void): void {
    // Where the current object starts in this chunk (0 when it began in an earlier chunk).
    let start = this.#depth > 0 ? 0 : -1;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (this.#depth === 0) {
        if (c === LBRACE) {
          this.#depth = 1;
          start = i;
        } else if (!isJsonWhitespace(c)) {
          throw new ProtocolError('QMP stream: expected "{" between messages', chunk.subarray(i, i + 200).toString('latin1'));
        }
        continue;
      }
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (c === BACKSLASH) this.#escaped = true;
        else if (c === QUOTE) this.#inString = false;
        continue;
      }
      if (c === QUOTE) {
        this.#inString = true;
      } else if (c === LBRACE || c === LBRACKET) {
        if (++this.#depth > MAX_NESTING) throw new ProtocolError(`QMP stream: message nested deeper than ${MAX_NESTING}`);
      } else if ((c === RBRACE || c === RBRACKET) && --this.#depth === 0) {
        onMessage(this.#finish(chunk.subarray(start, i + 1)));
        start = -1;
      }
    }
    if (this.#depth > 0) {
      const tail = chunk.subarray(start);
      this.#parts.push(tail);
      this.#partBytes += tail.length;
      this.#checkSize(this.#partBytes);
    }
  }

  #finish(last: Buffer): Record<string, unknown> {
    this.#checkSize(this.#partBytes + last.length);
    const bytes = this.#parts.length === 0 ? last : Buffer.concat([...this.#parts, last]);
    this.#parts = [];
    this.#partBytes = 0;
    const text = bytes.toString('utf8');
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new ProtocolError('QMP stream: invalid JSON', text, { cause: err });
    }
  }

  #checkSize(n: number): void {
    if (n > this.maxMessageBytes) {
      throw new ProtocolError(`QMP stream: message exceeds ${this.maxMessageBytes} bytes without ending`);
    }
  }
}

/**
 * Encodes one request. The key order is fixed (execute, arguments, id) so the bytes on the wire are
 * predictable in logs and tests. QEMU accepts any whitespace between messages; "\n" keeps a
 * captured stream readable.
 */
export function encodeRequest(command: string, args: object | undefined, id: number): string {
  const msg = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
  return JSON.stringify(msg) + '\n';
}
