/**
 * The QMP client: connection lifecycle, request/reply correlation and event delivery. Framing is
 * in codec.ts, message shapes in messages.ts, so this file is only about who is waiting for what.
 *
 * Rules it keeps (after QEMU's python/qemu/qmp and cdt-gdb-adapter):
 * - every request carries an id of ours and its reply is matched by that id, so events may arrive
 *   between, before or after replies, in any chunking;
 * - a call that times out or is aborted is forgotten, and its late reply is dropped (QEMU still ran
 *   the command: QMP has no cancellation);
 * - losing the connection fails every pending call and event wait; calls after that fail at once.
 */
import type * as net from 'node:net';
import { AbortError, DisconnectedError, ProtocolError, TimeoutError, VmiError } from '../../errors';
import { withDeadline, type CallOptions } from '../../util/deadline';
import { TypedEmitter } from '../../util/typed-emitter';
import { captureCallSite, withCallSite } from './call-site';
import { DEFAULT_MAX_MESSAGE_BYTES, JsonStreamDecoder, encodeRequest } from './codec';
import { QmpExecuteError, QmpGreetingError, QmpNegotiationError } from './errors';
import { classify, type QmpMessage } from './messages';
import { openSocket } from './socket';
import type { QmpClientEvents, QmpEvent, QmpGreeting } from './types';

export interface QmpConnectOptions {
  /** Milliseconds for connecting, greeting and negotiation together (default 30 s). */
  timeout?: number;
  signal?: AbortSignal;
  /** Default timeout of execute/hmp/waitForEvent when the call gives none (default 30 s). */
  commandTimeout?: number;
  /** Largest message accepted from the peer (default 64 MiB). */
  maxMessageBytes?: number;
}

export interface WaitForEventOptions extends CallOptions {
  /** Only an event for which this returns true resolves the wait. */
  filter?: (ev: QmpEvent) => boolean;
}

interface PendingCall {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  args: object | undefined;
}

interface EventWaiter {
  name: string;
  filter?: (ev: QmpEvent) => boolean;
  resolve: (ev: QmpEvent) => void;
  reject: (err: Error) => void;
}

/**
 * A listener that throws must not leave a message half-dispatched: the error is re-thrown on a
 * later tick (still an uncaught exception, as with any EventEmitter), after the protocol state is
 * consistent again.
 */
function rethrowLater(err: unknown): void {
  process.nextTick(() => {
    throw err;
  });
}

export class QmpClient extends TypedEmitter<QmpClientEvents> {
  static readonly DEFAULT_TIMEOUT_MS = 30_000;

  /** Canonical address of the peer (`unix:/path` or `tcp:127.0.0.1:PORT`). */
  readonly address: string;
  /** Timeout used by calls that do not pass one; `Infinity` disables it. */
  defaultTimeout: number;

  readonly #socket: net.Socket;
  readonly #decoder: JsonStreamDecoder;
  readonly #pending = new Map<number, PendingCall>();
  readonly #waiters = new Set<EventWaiter>();
  readonly #greetingReceived: Promise<QmpGreeting>;
  readonly #socketClosed: Promise<void>;
  #greetingResolve!: (g: QmpGreeting) => void;
  #greetingReject!: (err: Error) => void;
  #greeting: QmpGreeting | undefined;
  #nextId = 1;
  #socketError: Error | undefined;
  /** undefined while open; null after close(); otherwise why the connection was lost. */
  #closedBy: Error | null | undefined;

  private constructor(socket: net.Socket, address: string, opts: QmpConnectOptions) {
    super();
    this.#socket = socket;
    this.address = address;
    this.defaultTimeout = opts.commandTimeout ?? QmpClient.DEFAULT_TIMEOUT_MS;
    this.#decoder = new JsonStreamDecoder(opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
    this.#greetingReceived = new Promise<QmpGreeting>((resolve, reject) => {
      this.#greetingResolve = resolve;
      this.#greetingReject = reject;
    });
    // Awaited by connect(); this only keeps a failure before that from being "unhandled".
    this.#greetingReceived.catch(() => undefined);
    this.#socketClosed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => {
      this.#socketError ??= err;
    });
    socket.on('close', () => this.#onSocketClose());
  }

  /**
   * Connects, reads the greeting and leaves capability-negotiation mode. Rejects with a
   * ConnectionError (cannot connect), QmpGreetingError (not a QMP peer), QmpNegotiationError
   * (`qmp_capabilities` refused), TimeoutError or AbortError; the socket is closed in every case.
   */
  static async connect(address: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const { socket, label, connected } = openSocket(address);
    const client = new QmpClient(socket, label, opts);
    const progress: { stage: 'connect' | 'greeting' | 'negotiation' } = { stage: 'connect' };
    const handshake = async (): Promise<QmpClient> => {
      await connected;
      progress.stage = 'greeting';
      await client.#receiveGreeting();
      progress.stage = 'negotiation';
      await client.#negotiate();
      return client;
    };
    const timeout = opts.timeout ?? QmpClient.DEFAULT_TIMEOUT_MS;
    try {
      return await withDeadline(`QMP connect to ${label}`, handshake(), {
        timeout,
        signal: opts.signal,
        onCancel: (err) => client.#shutdown(err),
      });
    } catch (err) {
      client.#shutdown(err instanceof Error ? err : new VmiError('ECONNECT', String(err)));
      // Seen on QEMU 7.2: a -qmp socket serves one client at a time; a second one is accepted by
      // the kernel but greeted only after the first leaves. Say so, it is the usual cause.
      if (err instanceof TimeoutError && progress.stage === 'greeting') {
        throw new TimeoutError(`QMP connect to ${label} (connected, but no greeting: QEMU serves one client per QMP socket; is another one attached?)`, timeout);
      }
      throw err;
    }
  }

  /** What QEMU announced when we connected. */
  get greeting(): QmpGreeting {
    if (!this.#greeting) throw new VmiError('ESTATE', 'QMP greeting not received yet');
    return this.#greeting;
  }

  /** Calls waiting for a reply (for diagnostics: timed-out and aborted calls are not counted). */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** True once the connection is closed or lost. */
  get closed(): boolean {
    return this.#closedBy !== undefined;
  }

  /**
   * Runs a QMP command and resolves with its `return` value. An error reply rejects with a
   * QmpExecuteError. `T` is not checked: callers describe what they expect QEMU to return.
   */
  execute<T = unknown>(command: string, args?: object, opts: CallOptions = {}): Promise<T> {
    const site = captureCallSite(this.execute);
    const operation = `QMP ${command}`;
    const fail = (err: unknown) => Promise.reject(withCallSite(err, site));
    if (typeof command !== 'string' || command === '') return fail(new VmiError('EINVAL', 'QMP command name must be a non-empty string'));
    if (args !== undefined && (typeof args !== 'object' || args === null || Array.isArray(args))) {
      return fail(new VmiError('EINVAL', `${operation}: arguments must be an object`));
    }
    if (this.#closedBy !== undefined) return fail(this.#goneError(operation));
    // Checked before sending: an aborted call must not reach QEMU at all.
    if (opts.signal?.aborted) return fail(new AbortError(operation, { cause: opts.signal.reason }));
    const id = this.#nextId++;
    let line: string;
    try {
      line = encodeRequest(command, args, id);
    } catch (err) {
      return fail(new VmiError('EINVAL', `${operation}: arguments cannot be encoded as JSON: ${(err as Error).message}`, { cause: err }));
    }
    const reply = new Promise<unknown>((resolve, reject) => {
      this.#pending.set(id, { command, args, resolve, reject });
    });
    this.#socket.write(line);
    return withDeadline(operation, reply, {
      timeout: opts.timeout ?? this.defaultTimeout,
      signal: opts.signal,
      onCancel: () => this.#pending.delete(id),
    }).then(
      (v) => v as T,
      (err) => fail(err),
    );
  }

  /**
   * Runs an HMP command line through `human-monitor-command` and returns its output, with QEMU's
   * "\r\n" line ends turned into "\n". HMP reports most failures as text, not as QMP errors:
   * callers must inspect the output.
   */
  async hmp(commandLine: string, opts: CallOptions = {}): Promise<string> {
    const out = await this.execute<unknown>('human-monitor-command', { 'command-line': commandLine }, opts);
    if (typeof out !== 'string') throw new ProtocolError('human-monitor-command returned a non-string', JSON.stringify(out));
    return out.replace(/\r\n/g, '\n');
  }

  /**
   * Resolves with the next event called `name` (that passes `filter`). Register the wait BEFORE
   * running the command that causes the event: QEMU often sends the event before the command's
   * reply (`stop` emits STOP first), so waiting after the reply can miss it.
   * The default timeout applies; pass `timeout: Infinity` to wait without one.
   */
  waitForEvent(name: string, opts: WaitForEventOptions = {}): Promise<QmpEvent> {
    const site = captureCallSite(this.waitForEvent);
    const operation = `QMP wait for event ${name}`;
    const fail = (err: unknown) => Promise.reject(withCallSite(err, site));
    if (this.#closedBy !== undefined) return fail(this.#goneError(operation));
    if (opts.signal?.aborted) return fail(new AbortError(operation, { cause: opts.signal.reason }));
    let waiter!: EventWaiter;
    const seen = new Promise<QmpEvent>((resolve, reject) => {
      waiter = { name, filter: opts.filter, resolve, reject };
      this.#waiters.add(waiter);
    });
    return withDeadline(operation, seen, {
      timeout: opts.timeout ?? this.defaultTimeout,
      signal: opts.signal,
      onCancel: () => this.#waiters.delete(waiter),
    }).catch(fail);
  }

  /**
   * Closes the connection: pending calls reject with DisconnectedError, queued requests are still
   * flushed, and the promise resolves once the socket is closed. Safe to call more than once.
   */
  close(): Promise<void> {
    this.#shutdown(null);
    return this.#socketClosed;
  }

  async #receiveGreeting(): Promise<void> {
    try {
      await this.#greetingReceived;
    } catch (err) {
      if (err instanceof QmpGreetingError) throw err;
      throw new QmpGreetingError(`no greeting: ${(err as Error).message}`, undefined, { cause: err });
    }
  }

  async #negotiate(): Promise<void> {
    try {
      // The surrounding connect() deadline bounds this call.
      await this.execute('qmp_capabilities', undefined, { timeout: Infinity });
    } catch (err) {
      if (err instanceof QmpExecuteError) throw new QmpNegotiationError(`${err.errorClass}: ${err.desc}`, { cause: err });
      throw new QmpNegotiationError((err as Error).message, { cause: err });
    }
  }

  #onData(chunk: Buffer): void {
    if (this.#closedBy !== undefined) return;
    try {
      this.#decoder.push(chunk, (raw) => {
        if (this.#closedBy === undefined) this.#dispatch(classify(raw));
      });
    } catch (err) {
      this.#shutdown(err as Error);
    }
  }

  #dispatch(msg: QmpMessage): void {
    if (msg.kind === 'greeting') {
      if (this.#greeting) throw new ProtocolError('QMP peer sent a second greeting');
      this.#greeting = msg.greeting;
      this.#greetingResolve(msg.greeting);
      return;
    }
    if (!this.#greeting) throw new QmpGreetingError(`expected the greeting, got a ${msg.kind} message`);
    if (msg.kind === 'event') {
      this.#deliverEvent(msg.event);
      return;
    }
    // Ids are ours and numeric; anything else, or an id no longer pending (the call timed out or
    // was aborted), is a reply nobody waits for.
    const call = typeof msg.id === 'number' ? this.#pending.get(msg.id) : undefined;
    if (!call) return;
    this.#pending.delete(msg.id as number);
    if (msg.kind === 'return') call.resolve(msg.value);
    else call.reject(new QmpExecuteError(call.command, call.args, msg.error));
  }

  #deliverEvent(ev: QmpEvent): void {
    for (const w of this.#waiters) {
      if (w.name !== ev.event) continue;
      let match: boolean;
      try {
        match = w.filter === undefined || w.filter(ev);
      } catch (err) {
        this.#waiters.delete(w);
        w.reject(err instanceof Error ? err : new VmiError('EFILTER', String(err)));
        continue;
      }
      if (match) {
        this.#waiters.delete(w);
        w.resolve(ev);
      }
    }
    try {
      this.emit('event', ev);
    } catch (err) {
      rethrowLater(err);
    }
  }

  /** The error for a call made after the connection is gone. */
  #goneError(operation: string): Error {
    const why = this.#closedBy;
    if (why === null || why === undefined) return new DisconnectedError(`${operation}: QMP connection to ${this.address} was closed`);
    return new DisconnectedError(`${operation}: ${why.message}`, { cause: why });
  }

  /**
   * The error for a call that was pending when the connection ended: a protocol violation is
   * reported as such (it is why the call failed), anything else as a disconnect.
   */
  #pendingError(operation: string): Error {
    const why = this.#closedBy;
    if (why instanceof ProtocolError) return new ProtocolError(`${operation}: ${why.message}`, undefined, { cause: why });
    return this.#goneError(operation);
  }

  /** Ends the connection once; `reason` null means close() was called. */
  #shutdown(reason: Error | null): void {
    if (this.#closedBy !== undefined) return;
    this.#closedBy = reason;
    for (const call of this.#pending.values()) call.reject(this.#pendingError(`QMP ${call.command}`));
    this.#pending.clear();
    for (const w of this.#waiters) w.reject(this.#pendingError(`QMP wait for event ${w.name}`));
    this.#waiters.clear();
    // Before the greeting, the reason itself is the answer connect() reports (wrapped there).
    this.#greetingReject(reason ?? new DisconnectedError(`QMP connection to ${this.address} was closed`));
    if (reason === null && !this.#socket.destroyed) {
      // Flush what was written (a caller may have sent `quit` just before), then let go. A peer
      // that stops reading must not keep close() waiting forever.
      this.#socket.end(() => this.#socket.destroy());
      setTimeout(() => this.#socket.destroy(), 1000).unref();
    } else {
      this.#socket.destroy();
    }
  }

  #onSocketClose(): void {
    if (this.#closedBy === undefined) {
      const torn = this.#decoder.pendingBytes > 0 ? ` in the middle of a message (${this.#decoder.pendingBytes} bytes unfinished)` : '';
      const cause = this.#socketError ? `: ${this.#socketError.message}` : '';
      this.#shutdown(new DisconnectedError(`QMP connection to ${this.address} lost${torn}${cause}`, { cause: this.#socketError }));
    }
    try {
      this.emit('close', this.#closedBy ?? undefined);
    } catch (err) {
      rethrowLater(err);
    }
  }
}
