/**
 * Classifies a decoded QMP object as greeting, event or reply, and checks its shape. QEMU is a
 * trusted peer in principle, but whatever answers on the socket is not: a wrong socket, a newer
 * QEMU or a broken proxy must produce a clear ProtocolError here rather than an `undefined` deep
 * inside a caller.
 */
import { ProtocolError } from '../../errors';
import { QmpGreetingError, type QmpErrorBody } from './errors';
import type { QmpEvent, QmpGreeting } from './types';

export type QmpMessage =
  | { kind: 'greeting'; greeting: QmpGreeting }
  | { kind: 'event'; event: QmpEvent }
  | { kind: 'return'; id: unknown; value: unknown }
  | { kind: 'error'; id: unknown; error: QmpErrorBody };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

function text(msg: Record<string, unknown>): string {
  return JSON.stringify(msg);
}

/** Validates the body of `{"QMP": …}`. */
export function parseGreeting(msg: Record<string, unknown>): QmpGreeting {
  const body = msg.QMP;
  if (!isObject(body)) throw new QmpGreetingError('first message is not {"QMP": …}; is this a QMP socket?', text(msg));
  const version = body.version;
  const qemu = isObject(version) ? version.qemu : undefined;
  if (!isObject(version) || !isObject(qemu) || !isCount(qemu.major) || !isCount(qemu.minor) || !isCount(qemu.micro)) {
    throw new QmpGreetingError('no version.qemu {major, minor, micro}', text(msg));
  }
  // `package` is informational; an absent one is tolerated rather than refusing the connection.
  const pkg = typeof version.package === 'string' ? version.package : '';
  const caps = body.capabilities;
  if (!Array.isArray(caps) || !caps.every((c) => typeof c === 'string')) {
    throw new QmpGreetingError('capabilities is not a list of strings', text(msg));
  }
  return {
    version: { qemu: { major: qemu.major, minor: qemu.minor, micro: qemu.micro }, package: pkg },
    capabilities: [...caps],
  };
}

function parseEvent(msg: Record<string, unknown>): QmpEvent {
  const ts = msg.timestamp;
  if (typeof msg.event !== 'string' || !isObject(ts) || typeof ts.seconds !== 'number' || typeof ts.microseconds !== 'number') {
    throw new ProtocolError('QMP event without a name or timestamp', text(msg));
  }
  if (msg.data !== undefined && !isObject(msg.data)) throw new ProtocolError('QMP event data is not an object', text(msg));
  const ev: QmpEvent = { event: msg.event, timestamp: { seconds: ts.seconds, microseconds: ts.microseconds } };
  if (msg.data !== undefined) ev.data = msg.data;
  return ev;
}

/** Sorts one decoded object into the four kinds of QMP server message. */
export function classify(msg: Record<string, unknown>): QmpMessage {
  if ('QMP' in msg) return { kind: 'greeting', greeting: parseGreeting(msg) };
  if ('event' in msg) return { kind: 'event', event: parseEvent(msg) };
  if ('return' in msg || 'error' in msg) {
    // A reply without an id answers a request QEMU could not parse, so it belongs to no call.
    // Like QEMU's python client we do not guess which one; the stream is no longer trustworthy.
    if (!('id' in msg)) throw new ProtocolError('QMP reply without an id (QEMU could not parse a request)', text(msg));
    if ('return' in msg) return { kind: 'return', id: msg.id, value: msg.return };
    const e = msg.error;
    if (!isObject(e) || typeof e.class !== 'string' || typeof e.desc !== 'string') {
      throw new ProtocolError('QMP error reply without class and desc', text(msg));
    }
    return { kind: 'error', id: msg.id, error: { class: e.class, desc: e.desc } };
  }
  throw new ProtocolError('QMP message is neither greeting, event nor reply', text(msg));
}
