/**
 * One connection to a gdbstub: the socket, acks, retransmission, the request queue, pipelining,
 * run state and stop replies. Commands are built on top of it in client.ts.
 *
 * Request/reply matching. The protocol has no request ids: replies come back in the order the stub
 * received the packets. Requests are sent from a FIFO queue, one at a time, except `pipelined`
 * ones (memory reads), several of which may be in flight together (up to `maxInFlight`). In ack
 * mode the stub acks each packet it received ('+') before answering it, or asks for it again ('-'):
 * a nacked packet is sent again at the end of the stream, so it moves to the end of the reply order.
 *
 * Stop replies. A packet starting with T/S/W/X while the request in flight does not expect one is
 * an unsolicited stop (QEMU 7.2 sends `T02` when the VM is paused, e.g. right after connecting): it
 * is surfaced as a 'stop' event and the request keeps waiting for its real reply.
 *
 * Swallowed packets (QEMU 7.2). If the VM runs behind the stub's back (QMP `cont`), the first byte
 * the stub reads pauses the VM instead of being parsed: that packet is lost, `T02` is sent, and
 * packets after it are answered normally. So when an unsolicited stop arrives while packets are
 * unacked, replies are held back for a short grace period and acks counted: if every unacked
 * packet gets its ack, nothing was lost; if one ack is missing, the oldest packet was swallowed, and
 * it is sent again (and moves to the end of the reply order).
 *
 * Cancelled requests (timeout, abort). A request still in the queue is simply removed. One already
 * sent stays in the reply order as a placeholder whose reply is discarded when it arrives, so later
 * replies still match; requests behind it wait. If that reply has not come after
 * `staleReplyTimeout`, the stub is not answering and replies can no longer be matched safely: the
 * connection is closed and everything pending fails with DisconnectedError (reconnect to go on).
 * This trades a reconnect in a pathological case for never handing one request another's reply.
 */
import * as net from 'node:net';
import { AbortError, ConnectionError, DisconnectedError, ProtocolError, TimeoutError, VmiError } from '../../errors';
import { CallOptions, withDeadline } from '../../util/deadline';
import { TypedEmitter } from '../../util/typed-emitter';
import { formatSocketAddress, parseSocketAddress } from '../../util/address';
import { GdbChecksumError, GdbStateError } from './errors';
import { FrameEvent, MAX_INCOMING_PACKET, PacketDecoder, encodePacket } from './packet';
import { StopReply, isStopReply, parseStopReply } from './stop-reply';
import type { RegisterLayout } from './registers';

export interface ConnectionOptions {
  /** Largest packet accepted from the stub (default 1 MiB); a longer one is a ProtocolError. */
  maxIncomingPacket?: number;
  /** Most pipelined requests in flight at once (default 32). */
  maxInFlight?: number;
  /** Timeout for requests whose caller gave none, in ms (default 10000; Infinity for none). */
  requestTimeout?: number;
  /** How long to wait for the reply of a cancelled request before closing, in ms (default 10000). */
  staleReplyTimeout?: number;
  /** How long to hold replies after an unsolicited stop while packets are unacked, in ms (default 250). */
  swallowGrace?: number;
  /** How many times one packet is sent again after nacks before giving up (default 5). */
  maxRetransmits?: number;
}

export interface RequestOptions extends CallOptions {
  /** May be in flight together with other pipelined requests. */
  pipelined?: boolean;
  /** The reply may be a stop reply (`?`, `s` when used as a request). */
  expectStop?: boolean;
  /**
   * Sees every packet answering this request; returns true for the last one. Used for replies in
   * several packets (`qRcmd` sends `O…` output packets, then `OK`).
   */
  collect?: (data: Buffer) => boolean;
  /** Name used in errors (defaults to the packet). */
  name?: string;
  /**
   * Cancels together with the other requests of the group (bulk reads use this instead of a timer
   * and a signal listener per packet).
   */
  group?: RequestGroup;
}

/**
 * Requests that can be cancelled together: queued ones are dropped, ones in flight become
 * placeholders whose replies are discarded (see the class comment on cancelled requests).
 */
export class RequestGroup {
  /** @internal */ readonly entries = new Set<Entry>();
  /** @internal */ cancelWith: ((e: Entry, err: Error) => void) | undefined;
  #cancelled: Error | undefined;

  get cancelled(): Error | undefined {
    return this.#cancelled;
  }

  /** Cancels every request of the group still pending; they reject with `err`. Later ones too. */
  cancel(err: Error): void {
    if (this.#cancelled) return;
    this.#cancelled = err;
    for (const e of [...this.entries]) this.cancelWith?.(e, err);
    this.entries.clear();
  }
}

export type RunState = 'stopped' | 'running' | 'closed';

export interface ConnectionStats {
  packetsSent: number;
  packetsReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** Packets we sent again (after '-', or after the stub swallowed them). */
  retransmits: number;
  /** Packets from the stub with a bad checksum (nacked). */
  badChecksums: number;
  unsolicitedStops: number;
  swallowedPackets: number;
  strayAcks: number;
  strayPackets: number;
  /** Replies discarded because their request had been cancelled. */
  staleReplies: number;
  junkBytes: number;
}

export type ConnectionEvents = {
  /** The target stopped; `solicited` is false for stops nobody asked for (VM paused elsewhere). */
  stop: [reply: StopReply, solicited: boolean];
  /** Console output (`O` packets) while the target runs. */
  output: [text: string];
  /** `%` notifications (non-stop mode; unused by QEMU). */
  notification: [data: string];
  close: [error: Error | undefined];
};

type Kind = 'request' | 'resume';

interface Entry {
  kind: Kind;
  group: RequestGroup | undefined;
  name: string;
  frame: Buffer;
  pipelined: boolean;
  expectStop: boolean;
  collect?: (data: Buffer) => boolean;
  resolve: (data: Buffer) => void;
  reject: (err: Error) => void;
  settled: boolean;
  cancelledAt: number | undefined;
  sends: number;
  /** Sent when nothing else was in flight or unacked (so a '-' for its reply is safe). */
  sentAlone: boolean;
  /** When it fails with a TimeoutError (Date.now() ms), and the timeout that gave it. */
  deadline: number | undefined;
  timeout: number;
}

interface Suspect {
  unacked: number;
  acks: number;
  held: (Buffer | Error)[];
  timer: NodeJS.Timeout;
}

const EMPTY = Buffer.alloc(0);
const ACK = Buffer.from('+');
const NACK = Buffer.from('-');
const INTERRUPT = Buffer.from([0x03]);

export class GdbConnection extends TypedEmitter<ConnectionEvents> {
  readonly address: string;
  /** The layout used to name registers in stop replies (set once the target description is read). */
  registerLayout: RegisterLayout | undefined;
  readonly stats: ConnectionStats = {
    packetsSent: 0,
    packetsReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    retransmits: 0,
    badChecksums: 0,
    unsolicitedStops: 0,
    swallowedPackets: 0,
    strayAcks: 0,
    strayPackets: 0,
    staleReplies: 0,
    junkBytes: 0,
  };

  readonly #socket: net.Socket;
  readonly #decoder: PacketDecoder;
  readonly #maxInFlight: number;
  readonly #requestTimeout: number;
  readonly #staleTimeout: number;
  readonly #swallowGrace: number;
  readonly #maxRetransmits: number;

  #ackMode = true;
  #state: RunState = 'stopped';
  #queue: Entry[] = [];
  /** Requests sent and waiting for their reply, in reply order. */
  #inFlight: Entry[] = [];
  /** Packets sent and waiting for '+', in the order the stub will see them (ack mode only). */
  #unacked: Entry[] = [];
  #out: Buffer[] = [];
  #suspect: Suspect | undefined;
  #staleTimer: NodeJS.Timeout | undefined;
  #lastStop: StopReply | undefined;
  #currentStop: StopReply | undefined;
  #closedByUser = false;
  /** The resume whose stop reply has not come yet. */
  #resume: Entry | undefined;
  #stopWaiters = new Set<{ resolve: (r: StopReply) => void; reject: (e: Error) => void }>();
  #closeError: Error | undefined;
  #closed: Promise<void>;

  private constructor(socket: net.Socket, address: string, opts: ConnectionOptions) {
    super();
    this.#socket = socket;
    this.address = address;
    this.#maxInFlight = Math.max(1, opts.maxInFlight ?? 32);
    this.#requestTimeout = opts.requestTimeout ?? 10_000;
    this.#staleTimeout = opts.staleReplyTimeout ?? 10_000;
    this.#swallowGrace = opts.swallowGrace ?? 250;
    this.#maxRetransmits = opts.maxRetransmits ?? 5;
    this.#decoder = new PacketDecoder((ev) => this.#onFrame(ev), opts.maxIncomingPacket ?? MAX_INCOMING_PACKET);
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => {
      this.#closeError ??= new DisconnectedError(`${this.address}: ${err.message}`, { cause: err });
    });
    this.#closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.#fail(this.#closeError ?? new DisconnectedError(`${this.address}: gdbstub closed the connection`));
        resolve();
      });
    });
  }

  /** Opens the socket (`unix:/path` or `tcp:127.0.0.1:PORT`). */
  static open(address: string, opts: ConnectionOptions & CallOptions = {}): Promise<GdbConnection> {
    const parsed = parseSocketAddress(address);
    const display = formatSocketAddress(parsed);
    const socket = parsed.kind === 'unix' ? net.connect({ path: parsed.path }) : net.connect({ host: parsed.host, port: parsed.port });
    const connected = new Promise<GdbConnection>((resolve, reject) => {
      const onError = (err: Error) => reject(new ConnectionError(display, err.message, { cause: err }));
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve(new GdbConnection(socket, display, opts));
      });
    });
    return withDeadline(`connect to gdbstub at ${display}`, connected, {
      timeout: opts.timeout ?? 10_000,
      signal: opts.signal,
      onCancel: () => socket.destroy(),
    });
  }

  get state(): RunState {
    return this.#state;
  }

  get ackMode(): boolean {
    return this.#ackMode;
  }

  /** The most recent stop reply, solicited or not. */
  get lastStop(): StopReply | undefined {
    return this.#lastStop;
  }

  /** Stops acking after QStartNoAckMode was accepted. */
  disableAcks(): void {
    this.#ackMode = false;
    for (const e of this.#unacked.splice(0)) this.#acked(e);
  }

  /** Sends a request and resolves with its reply (run-length decoded, escapes left in place). */
  request(payload: string | Buffer, opts: RequestOptions = {}): Promise<Buffer> {
    const name = opts.name ?? describe(payload);
    const early = opts.group?.cancelled ?? this.#refuse(name, 'request', opts.signal);
    if (early) return Promise.reject(early);
    const { entry, promise } = this.#enqueue('request', payload, name, opts, opts.timeout ?? this.#requestTimeout);
    const result = withDeadline(name, promise, { signal: opts.signal, onCancel: () => this.#cancel(entry) });
    // Bulk reads skip this: thousands of packets per read, and their errors name the address.
    return opts.pipelined || opts.group ? result : keepCallSite(result, this.request);
  }

  /**
   * Sends a packet that resumes the target (`c`, `s`, `vCont;…`). Resolves once the stub has the
   * packet (acked); the stop reply comes later, through waitForStop() and the 'stop' event.
   */
  resume(payload: string, opts: CallOptions = {}): Promise<void> {
    const early = this.#refuse(payload, 'resume', opts.signal);
    if (early) return Promise.reject(early);
    const { entry, promise } = this.#enqueue('resume', payload, payload, opts, opts.timeout ?? this.#requestTimeout);
    const result = withDeadline(payload, promise.then(() => undefined), { signal: opts.signal, onCancel: () => this.#cancel(entry) });
    return keepCallSite(result, this.resume);
  }

  /** Sends the interrupt byte (0x03) if the target runs; returns whether it was sent. */
  interrupt(): boolean {
    if (this.#state !== 'running') return false;
    this.#write(INTERRUPT);
    return true;
  }

  /**
   * Resolves with the stop that ended the last resume. If the target is stopped already, that is
   * the stop reply that stopped it (or the one seen since, e.g. T02 at connect).
   */
  waitForStop(opts: CallOptions = {}): Promise<StopReply> {
    if (this.#state === 'closed') return Promise.reject(this.#closedError());
    if (this.#state === 'stopped') {
      const stop = this.#currentStop;
      if (stop) return Promise.resolve(stop);
      return Promise.reject(new GdbStateError('stopped', `${this.address}: the target is stopped and has not been resumed: there is no stop to wait for`));
    }
    let waiter!: { resolve: (r: StopReply) => void; reject: (e: Error) => void };
    const promise = new Promise<StopReply>((resolve, reject) => {
      waiter = { resolve, reject };
      this.#stopWaiters.add(waiter);
    });
    return withDeadline('wait for stop', promise, {
      timeout: opts.timeout,
      signal: opts.signal,
      onCancel: () => this.#stopWaiters.delete(waiter),
    });
  }

  /** Closes the socket; everything pending fails with DisconnectedError. Idempotent. */
  close(): Promise<void> {
    if (this.#state !== 'closed') {
      if (!this.#closeError) {
        this.#closedByUser = true;
        this.#closeError = new DisconnectedError(`${this.address}: connection closed`);
      }
      this.#fail(this.#closeError);
      this.#socket.destroy();
    }
    return this.#closed;
  }

  // ---- queue ----

  #refuse(name: string, kind: Kind, signal: AbortSignal | undefined): Error | undefined {
    // checked before anything is queued: an aborted call must not reach the wire
    if (signal?.aborted) return new AbortError(name, { cause: signal.reason });
    if (this.#state === 'closed') return this.#closedError();
    if (this.#state === 'running' && kind === 'request') return this.#runningError(name);
    if (this.#state === 'running') return this.#alreadyRunning(name);
    return undefined;
  }

  #enqueue(kind: Kind, payload: string | Buffer, name: string, opts: RequestOptions, timeout: number): { entry: Entry; promise: Promise<Buffer> } {
    let entry!: Entry;
    const promise = new Promise<Buffer>((resolve, reject) => {
      entry = {
        kind,
        group: opts.group,
        name,
        frame: encodePacket(payload),
        pipelined: kind === 'request' && opts.pipelined === true,
        expectStop: opts.expectStop === true,
        collect: opts.collect,
        resolve,
        reject,
        settled: false,
        cancelledAt: undefined,
        sends: 0,
        sentAlone: false,
        deadline: Number.isFinite(timeout) ? Date.now() + timeout : undefined,
        timeout,
      };
    });
    if (entry.deadline !== undefined) this.#addDeadline(entry);
    if (opts.group) {
      opts.group.entries.add(entry);
      opts.group.cancelWith ??= (e, err) => {
        this.#cancel(e);
        e.reject(err);
      };
    }
    this.#queue.push(entry);
    this.#pump();
    return { entry, promise };
  }

  #pump(): void {
    if (this.#suspect || this.#state === 'closed') return;
    while (this.#queue.length > 0) {
      const next = this.#queue[0];
      if (this.#state === 'running') {
        // Queued before a resume went out: the target runs now, so these cannot be answered.
        this.#queue.shift();
        this.#settle(next, next.kind === 'request' ? this.#runningError(next.name) : this.#alreadyRunning(next.name));
        continue;
      }
      // In flight is either one exclusive request or up to maxInFlight pipelined ones.
      if (this.#inFlight.length > 0) {
        if (!next.pipelined || !this.#inFlight[0].pipelined || this.#inFlight.length >= this.#maxInFlight) break;
      }
      this.#queue.shift();
      this.#send(next);
    }
  }

  #send(e: Entry): void {
    e.sentAlone = this.#inFlight.length === 0 && this.#unacked.length === 0;
    this.#write(e.frame);
    e.sends++;
    this.stats.packetsSent++;
    if (e.kind === 'request') this.#inFlight.push(e);
    else {
      this.#resume = e;
      this.#state = 'running';
      this.#currentStop = undefined;
    }
    if (this.#ackMode) this.#unacked.push(e);
    else this.#acked(e);
  }

  #acked(e: Entry): void {
    if (e.kind === 'resume') this.#settle(e, EMPTY);
  }

  /** Sends `e` again: it goes to the end of the stream, so its reply comes after those sent before. */
  #retransmit(e: Entry, why: string): void {
    if (e.sends > this.#maxRetransmits) {
      this.#drop(e, new ProtocolError(`${e.name}: gdbstub did not take the packet after ${e.sends} sends (${why})`));
      return;
    }
    this.stats.retransmits++;
    this.#write(e.frame);
    e.sends++;
    this.#unacked.push(e);
    const i = this.#inFlight.indexOf(e);
    if (i >= 0) {
      this.#inFlight.splice(i, 1);
      this.#inFlight.push(e);
    }
  }

  /** Forgets a packet the stub never took, failing its caller. */
  #drop(e: Entry, err: Error): void {
    const i = this.#inFlight.indexOf(e);
    if (i >= 0) this.#inFlight.splice(i, 1);
    if (this.#resume === e) {
      this.#resume = undefined;
      this.#state = 'stopped';
    }
    this.#settle(e, err);
    this.#pump();
  }

  #cancel(e: Entry): void {
    if (e.deadline !== undefined) this.#timed.delete(e);
    const q = this.#queue.indexOf(e);
    if (q >= 0) {
      this.#queue.splice(q, 1);
      e.settled = true;
      return;
    }
    e.settled = true;
    if (this.#inFlight.includes(e)) {
      e.cancelledAt = Date.now();
      this.#armStaleTimer();
    }
  }

  /**
   * Request timeouts share one timer, armed for the earliest deadline and left to fire even when
   * that request has been answered (it then finds nothing due and re-arms for the next): a timer
   * set and cleared per request measurably slowed each round trip with QEMU's stub, whose replies
   * take tens of microseconds.
   */
  #addDeadline(e: Entry): void {
    this.#timed.add(e);
    if (this.#deadlineTimer === undefined || e.deadline! < this.#deadlineAt) this.#armDeadline(e.deadline!);
  }

  #armDeadline(at: number): void {
    if (this.#deadlineTimer !== undefined) clearTimeout(this.#deadlineTimer);
    this.#deadlineAt = at;
    this.#deadlineTimer = setTimeout(this.#onDeadline, Math.max(0, at - Date.now()));
    this.#deadlineTimer.unref();
  }

  readonly #onDeadline = () => {
    this.#deadlineTimer = undefined;
    const now = Date.now();
    let next = Infinity;
    for (const e of [...this.#timed]) {
      if (e.deadline! <= now) {
        this.#timed.delete(e);
        if (e.settled) continue;
        this.#cancel(e);
        e.group?.entries.delete(e);
        e.reject(new TimeoutError(e.name, e.timeout));
      } else next = Math.min(next, e.deadline!);
    }
    if (next !== Infinity && this.#state !== 'closed') this.#armDeadline(next);
  };

  #timed = new Set<Entry>();
  #deadlineTimer: NodeJS.Timeout | undefined;
  #deadlineAt = Infinity;

  #armStaleTimer(): void {
    if (this.#staleTimer || !Number.isFinite(this.#staleTimeout)) return;
    const oldest = this.#inFlight.find((e) => e.cancelledAt !== undefined);
    if (!oldest) return;
    const wait = Math.max(0, oldest.cancelledAt! + this.#staleTimeout - Date.now());
    this.#staleTimer = setTimeout(() => {
      this.#staleTimer = undefined;
      const stale = this.#inFlight.find((e) => e.cancelledAt !== undefined && Date.now() - e.cancelledAt >= this.#staleTimeout);
      if (stale) {
        this.#closeError = new DisconnectedError(
          `${this.address}: gdbstub did not answer ${stale.name} within ${this.#staleTimeout} ms after it was cancelled; ` +
            'closed the connection so that later replies cannot be matched to the wrong request (reconnect to go on)',
        );
        void this.close();
      } else this.#armStaleTimer();
    }, wait);
    this.#staleTimer.unref();
  }

  #settle(e: Entry, result: Buffer | Error): void {
    if (e.settled) return;
    e.settled = true;
    if (e.deadline !== undefined) this.#timed.delete(e);
    e.group?.entries.delete(e);
    if (result instanceof Error) e.reject(result);
    else e.resolve(result);
  }

  // ---- input ----

  #onData(chunk: Buffer): void {
    this.stats.bytesReceived += chunk.length;
    try {
      this.#decoder.push(chunk);
    } catch (err) {
      this.stats.junkBytes = this.#decoder.junkBytes;
      this.#closeError = err instanceof VmiError ? err : new ProtocolError(String(err));
      void this.close();
      return;
    }
    this.stats.junkBytes = this.#decoder.junkBytes;
  }

  #onFrame(ev: FrameEvent): void {
    switch (ev.type) {
      case 'ack':
        this.#onAck();
        break;
      case 'nack':
        this.#onNack();
        break;
      case 'bad-checksum':
        this.stats.badChecksums++;
        if (this.#canNack()) {
          this.#write(NACK);
          break;
        }
        // Several requests in flight: a '-' would fetch the stub's latest packet, not this one.
        // Take it as the head request's reply, failed (reads ask for that piece again).
        this.stats.packetsReceived++;
        if (this.#ackMode) this.#write(ACK);
        this.#held(new GdbChecksumError(this.#inFlight[0]?.name ?? 'reply', ev.data.toString('latin1', 0, 64)));
        break;
      case 'notification':
        this.#emitSafe('notification', ev.data.toString('latin1'));
        break;
      case 'invalid':
        // Intact framing, unusable contents: it still answers the request at the head.
        this.stats.packetsReceived++;
        if (this.#ackMode) this.#write(ACK);
        this.#held(ev.error);
        break;
      case 'packet':
        this.stats.packetsReceived++;
        if (this.#ackMode) this.#write(ACK);
        this.#held(ev.data);
        break;
    }
  }

  /** Dispatches a reply (or a reply-shaped error), or holds it during a swallow grace period. */
  #held(item: Buffer | Error): void {
    if (this.#suspect) this.#suspect.held.push(item);
    else if (item instanceof Error) this.#failHead(item);
    else this.#dispatch(item);
  }

  /**
   * A '-' makes the stub resend its last packet, and any '+' makes it forget that packet (QEMU
   * keeps only one). So a '-' fetches the bad packet again only if the stub cannot have sent
   * anything after it, nor received a '+' meant for an earlier packet after sending it: the reply
   * to a request that was sent alone and is still alone, or a stop reply while the target runs.
   */
  #canNack(): boolean {
    if (!this.#ackMode || this.#unacked.length > 0) return false;
    if (this.#inFlight.length === 0) return this.#state === 'running';
    return this.#inFlight.length === 1 && this.#inFlight[0].sentAlone;
  }

  #onAck(): void {
    if (this.#suspect) {
      this.#suspect.acks++;
      if (this.#suspect.acks >= this.#suspect.unacked) this.#endSuspect(false);
      return;
    }
    const e = this.#unacked.shift();
    if (!e) {
      this.stats.strayAcks++;
      return;
    }
    this.#acked(e);
  }

  #onNack(): void {
    if (this.#suspect) this.#endSuspect(false);
    const e = this.#unacked.shift();
    if (!e) {
      this.stats.strayAcks++;
      return;
    }
    this.#retransmit(e, 'nacked');
  }

  #failHead(err: Error): void {
    const head = this.#inFlight.shift();
    if (head) {
      if (head.cancelledAt !== undefined) this.stats.staleReplies++;
      this.#settle(head, err);
      this.#pump();
    } else this.stats.strayPackets++;
  }

  #dispatch(data: Buffer): void {
    const head = this.#inFlight[0];
    const stop = isStopReply(data);
    if (head) {
      if (stop && !head.expectStop) {
        this.#onStop(data);
        return;
      }
      if (head.collect) {
        let done: boolean;
        try {
          done = head.cancelledAt !== undefined ? isFinalCollected(data) : head.collect(data);
        } catch (err) {
          this.#inFlight.shift();
          this.#settle(head, err as Error);
          this.#pump();
          return;
        }
        if (!done) return;
      }
      this.#inFlight.shift();
      if (head.cancelledAt !== undefined) this.stats.staleReplies++;
      this.#settle(head, data);
      this.#pump();
      return;
    }
    if (stop) {
      this.#onStop(data);
      return;
    }
    if (this.#state === 'running' && data[0] === 0x4f /* O */ && data.length > 1 && !(data.length === 2 && data[1] === 0x4b)) {
      const text = Buffer.from(data.subarray(1).toString('latin1'), 'hex').toString('utf8');
      this.#emitSafe('output', text);
      return;
    }
    if (this.#state === 'running' && this.#resume) {
      // The stub answered the resume itself with something other than a stop: it refused it.
      const resume = this.#resume;
      this.#resume = undefined;
      this.#state = 'stopped';
      const text = data.toString('latin1');
      const err = new ProtocolError(`${resume.name}: the gdbstub refused to resume`, text);
      for (const w of this.#stopWaiters) w.reject(err);
      this.#stopWaiters.clear();
      this.#pump();
      return;
    }
    this.stats.strayPackets++;
  }

  #onStop(data: Buffer): void {
    const text = data.toString('latin1');
    let reply: StopReply;
    try {
      reply = parseStopReply(text, this.registerLayout);
    } catch {
      // Keep going with what is certain (the kind); the raw text says the rest.
      reply = { kind: text[0] as StopReply['kind'], swbreak: false, hwbreak: false, registersByNumber: new Map(), registers: new Map(), fields: new Map(), raw: text };
    }
    this.#lastStop = reply;
    // A stop answers our resume only once the stub has acked the resume packet: before that it
    // cannot have acted on it (it was paused for another reason, or swallowed the packet).
    const resumeUnacked = this.#resume !== undefined && this.#unacked.includes(this.#resume);
    const solicited = this.#state === 'running' && this.#resume !== undefined && !resumeUnacked;
    if (solicited) {
      this.#resume = undefined;
      this.#state = 'stopped';
      this.#currentStop = reply;
      for (const w of this.#stopWaiters) w.resolve(reply);
      this.#stopWaiters.clear();
    } else {
      this.stats.unsolicitedStops++;
      if (this.#state === 'stopped') this.#currentStop = reply;
      if (this.#ackMode && this.#unacked.length > 0) this.#beginSuspect();
    }
    this.#emitSafe('stop', reply, solicited);
    if (solicited) this.#pump();
  }

  #beginSuspect(): void {
    if (this.#suspect) return;
    const timer = setTimeout(() => {
      const s = this.#suspect;
      if (s) this.#endSuspect(s.acks < s.unacked);
    }, this.#swallowGrace);
    timer.unref();
    this.#suspect = { unacked: this.#unacked.length, acks: 0, held: [], timer };
  }

  #endSuspect(swallowed: boolean): void {
    const s = this.#suspect;
    if (!s) return;
    this.#suspect = undefined;
    clearTimeout(s.timer);
    let lost: Entry | undefined;
    if (swallowed) {
      lost = this.#unacked.shift();
      this.stats.swallowedPackets++;
    }
    for (let i = 0; i < s.acks; i++) this.#onAck();
    if (lost) this.#retransmit(lost, 'swallowed by the stub while the VM was running');
    for (const item of s.held) {
      if (this.#state === 'closed') return;
      this.#held(item);
    }
    this.#pump();
  }

  /**
   * Emits from inside the protocol state machine: a listener that throws must not leave it half
   * way through a packet, so its error is rethrown on its own (an uncaught exception, as usual).
   */
  #emitSafe<K extends keyof ConnectionEvents & string>(event: K, ...args: ConnectionEvents[K]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  // ---- output and teardown ----

  /**
   * Queues bytes for the socket; everything queued goes out in one write, from a microtask, so
   * requests made by callers woken by the same read leave together. An ack therefore leaves as
   * soon as this read's replies are handled, ahead of the requests that those replies' callers
   * send next: measured against QEMU (bench/transport.ts), holding the ack back to share the next
   * request's write made a round trip about 1.5 times slower, though the same bytes go out; the
   * cost is in waking the stub's thread, not in what it is sent. Order is kept, so an ack never
   * follows a packet queued after it (QEMU would take an ack that arrives after `c` as a byte that
   * pauses the VM).
   */
  #write(buf: Buffer): void {
    this.#out.push(buf);
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(this.#flushFromMicrotask);
    }
  }

  #flushQueued = false;
  readonly #flushFromMicrotask = () => {
    this.#flushQueued = false;
    this.#flush();
  };

  #flush(): void {
    if (this.#out.length === 0 || this.#state === 'closed') return;
    const data = this.#out.length === 1 ? this.#out[0] : Buffer.concat(this.#out);
    this.#out = [];
    this.stats.bytesSent += data.length;
    this.#socket.write(data);
  }

  #fail(err: Error): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    if (this.#suspect) clearTimeout(this.#suspect.timer);
    this.#suspect = undefined;
    if (this.#staleTimer) clearTimeout(this.#staleTimer);
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
    this.#out = [];
    const pending = [...this.#queue, ...this.#inFlight, ...this.#unacked];
    if (this.#resume) pending.push(this.#resume);
    this.#queue = [];
    this.#inFlight = [];
    this.#unacked = [];
    this.#resume = undefined;
    for (const e of pending) this.#settle(e, err);
    for (const w of this.#stopWaiters) w.reject(err);
    this.#stopWaiters.clear();
    this.#emitSafe('close', this.#closedByUser ? undefined : err);
  }

  #closedError(): Error {
    const cause = this.#closeError;
    if (cause instanceof DisconnectedError) return cause;
    return new DisconnectedError(`${this.address}: not connected`, { cause });
  }

  #alreadyRunning(name: string): GdbStateError {
    return new GdbStateError('running', `${name}: the target is already running`);
  }

  #runningError(name: string): GdbStateError {
    return new GdbStateError(
      'running',
      `${name}: the target is running; only interrupt() is possible until it stops (waitForStop())`,
    );
  }
}

const CALL_SITE = Symbol('vmictl.callSite');

/**
 * Errors that reach a caller are created where the reply (or the timeout, or the close) was seen,
 * so their stack says nothing about who asked. This appends the caller's stack, captured when the
 * request was made (with V8's async frames, so the user's function shows). An error shared by
 * several calls (the one that closed the connection) keeps the first caller's.
 */
function keepCallSite<T>(promise: Promise<T>, above: Function): Promise<T> {
  const site: { stack?: string } = {};
  Error.captureStackTrace(site, above);
  return promise.catch((err: unknown) => {
    if (err instanceof Error && !(CALL_SITE in err) && site.stack) {
      Object.defineProperty(err, CALL_SITE, { value: true });
      const frames = site.stack.slice(site.stack.indexOf('\n') + 1);
      err.stack = `${err.stack ?? String(err)}\n    --- the request was made at:\n${frames}`;
    }
    throw err;
  });
}

/** While discarding a cancelled multi-packet reply: `O…` output packets are not the end. */
function isFinalCollected(data: Buffer): boolean {
  return !(data[0] === 0x4f && !(data.length === 2 && data[1] === 0x4b));
}

function describe(payload: string | Buffer): string {
  const text = typeof payload === 'string' ? payload : payload.subarray(0, 64).toString('latin1');
  return text.length > 64 ? `${text.slice(0, 61)}...` : text;
}
