/**
 * A scriptable QMP server on a real socket (unix in a private temp dir, or 127.0.0.1), for testing
 * the client against the bytes it would exchange with QEMU. It records every byte the client sends,
 * answers commands through per-command handlers, and lets a test inject events, several messages in
 * one write, torn writes, silence, or a connection dropped mid-message.
 *
 * It parses requests by splitting on "\n" on purpose, without the client's own decoder: the client
 * promises one request per line, and a test should not trust the code under test to check it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';

/** The greeting QEMU 7.2 (Debian 12) sends, byte for byte. */
export const QEMU_72_GREETING =
  '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}\r\n';

export interface QmpRequest {
  execute: string;
  arguments?: Record<string, unknown>;
  id?: unknown;
}

export type QmpReply = { return: unknown } | { error: { class: string; desc: string } };

/** Returns the reply to send (the request's id is added), or nothing to stay silent. */
export type Handler = (req: QmpRequest, conn: FakeQmpConnection) => QmpReply | void | Promise<QmpReply | void>;

export interface FakeQmpOptions {
  /** Object to send as greeting, raw text, or null to never greet. Default: QEMU 7.2's. */
  greeting?: object | string | null;
  /** Handlers by command name, on top of the defaults (qmp_capabilities, query-status). */
  handlers?: Record<string, Handler>;
  listen?: 'unix' | 'tcp';
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Formats a message the way QEMU does: JSON with ", " and ": " separators, then "\r\n". */
export function qemuJson(msg: object): string {
  return JSON.stringify(msg).replace(/("(?:[^"\\]|\\.)*")|([,:])/g, (_m, str: string | undefined, sep: string) => str ?? `${sep} `) + '\r\n';
}

export function eventMessage(name: string, data?: object, seconds = 1700000000, microseconds = 123456): object {
  return data === undefined
    ? { timestamp: { seconds, microseconds }, event: name }
    : { timestamp: { seconds, microseconds }, event: name, data };
}

export class FakeQmpConnection {
  /** Everything the client sent, decoded as UTF-8. */
  received = '';
  /** Every complete request line, parsed. */
  readonly requests: QmpRequest[] = [];
  readonly socket: net.Socket;
  /** Resolves when the client's side is closed. */
  readonly closed: Promise<void>;
  #partial = '';
  // A UTF-8 character may be split across reads.
  #utf8 = new StringDecoder('utf8');
  #requestWaiters: { command?: string; resolve: (r: QmpRequest) => void }[] = [];
  #server: FakeQmpServer;

  constructor(socket: net.Socket, server: FakeQmpServer) {
    this.socket = socket;
    this.#server = server;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => this.#onData(this.#utf8.write(chunk)));
  }

  #onData(text: string): void {
    this.received += text;
    // Only the new text can hold a newline: keeps a multi-megabyte request linear to parse.
    if (!text.includes('\n')) {
      this.#partial += text;
      return;
    }
    const lines = (this.#partial + text).split('\n');
    this.#partial = lines.pop()!;
    for (const line of lines) {
      if (line.trim() === '') continue;
      const req = JSON.parse(line) as QmpRequest;
      this.requests.push(req);
      this.#requestWaiters = this.#requestWaiters.filter((w) => {
        if (w.command !== undefined && w.command !== req.execute) return true;
        w.resolve(req);
        return false;
      });
      void this.#answer(req);
    }
  }

  async #answer(req: QmpRequest): Promise<void> {
    const handler = this.#server.handlers.get(req.execute);
    const reply = handler
      ? await handler(req, this)
      : { error: { class: 'CommandNotFound', desc: `The command ${req.execute} has not been found` } };
    if (reply && !this.socket.destroyed) this.send({ ...reply, id: req.id });
  }

  /** The next request (optionally for `command`) that arrives from now on. */
  nextRequest(command?: string): Promise<QmpRequest> {
    return new Promise((resolve) => this.#requestWaiters.push({ command, resolve }));
  }

  /** Sends one message formatted as QEMU does. */
  send(msg: object): void {
    this.socket.write(qemuJson(msg));
  }

  sendRaw(data: string | Buffer): void {
    this.socket.write(data);
  }

  event(name: string, data?: object): void {
    this.send(eventMessage(name, data));
  }

  /**
   * Writes `data` in pieces cut at `cuts` (byte offsets), pausing between writes so that each
   * arrives as its own read. `between` runs after each piece but the last (for assertions).
   */
  async sendTorn(data: string | Buffer, cuts: number[], between?: (piece: number) => Promise<void> | void): Promise<void> {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
    const bounds = [0, ...cuts, buf.length];
    for (let i = 0; i + 1 < bounds.length; i++) {
      this.socket.write(buf.subarray(bounds[i], bounds[i + 1]));
      if (i + 2 < bounds.length) {
        await delay(15);
        await between?.(i);
      }
    }
  }

  /** Drops the connection at once, as a crashing QEMU would. */
  destroy(): void {
    this.socket.destroy();
  }
}

export class FakeQmpServer {
  readonly handlers = new Map<string, Handler>();
  readonly connections: FakeQmpConnection[] = [];
  address = '';
  readonly dir: string;
  #server: net.Server;
  #greeting: object | string | null;
  #connectionWaiters: ((c: FakeQmpConnection) => void)[] = [];

  private constructor(opts: FakeQmpOptions) {
    this.dir = mkdtempSync(join(tmpdir(), 'vmictl-fake-qmp-'));
    this.#greeting = opts.greeting === undefined ? QEMU_72_GREETING : opts.greeting;
    this.handlers.set('qmp_capabilities', () => ({ return: {} }));
    this.handlers.set('query-status', () => ({ return: { status: 'running', singlestep: false, running: true } }));
    for (const [name, h] of Object.entries(opts.handlers ?? {})) this.handlers.set(name, h);
    this.#server = net.createServer((socket) => {
      const conn = new FakeQmpConnection(socket, this);
      this.connections.push(conn);
      if (typeof this.#greeting === 'string') conn.sendRaw(this.#greeting);
      else if (this.#greeting !== null) conn.send(this.#greeting);
      for (const w of this.#connectionWaiters.splice(0)) w(conn);
    });
  }

  static async start(opts: FakeQmpOptions = {}): Promise<FakeQmpServer> {
    const s = new FakeQmpServer(opts);
    await new Promise<void>((resolve, reject) => {
      s.#server.once('error', reject);
      if (opts.listen === 'tcp') s.#server.listen(0, '127.0.0.1', resolve);
      else s.#server.listen(join(s.dir, 'qmp.sock'), resolve);
    });
    const a = s.#server.address();
    s.address = typeof a === 'string' ? `unix:${a}` : `tcp:127.0.0.1:${a!.port}`;
    return s;
  }

  /** Replaces (or adds) the handler for `command`. */
  handle(command: string, handler: Handler): this {
    this.handlers.set(command, handler);
    return this;
  }

  /** The next client to connect (or the first one, if it already has). */
  connection(): Promise<FakeQmpConnection> {
    if (this.connections.length > 0) return Promise.resolve(this.connections[0]);
    return new Promise((resolve) => this.#connectionWaiters.push(resolve));
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
