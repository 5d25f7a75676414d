/**
 * Stop replies: why the target stopped. `S05` (signal only), `T05thread:01;watch:1000;06:…;`
 * (signal plus `name:value` pairs, where a hex name is a register number with its value in target
 * byte order), `W00` (exited with a code) and `X09` (terminated by a signal).
 *
 * QEMU sends `T02thread:NN;` when the VM was paused (connect, Ctrl-C, QMP stop) and `T05…` for
 * breakpoints, single steps and watchpoints (with `watch:`/`rwatch:`/`awatch:` and the address).
 */
import { ProtocolError } from '../../errors';
import { parseHexBigInt, parseHexNumber, readUIntLE } from './hex';
import type { RegisterLayout } from './registers';

export type StopKind = 'T' | 'S' | 'W' | 'X';
export type WatchKind = 'watch' | 'rwatch' | 'awatch';

export interface StopReply {
  kind: StopKind;
  /** The signal (T, S, X): 2 = SIGINT (interrupted, paused), 5 = SIGTRAP (breakpoint, step, watchpoint). */
  signal?: number;
  /** The exit code (W). */
  exitCode?: number;
  /** The thread that stopped (T with `thread:`), as the stub spells it (`01`, `p1.2`). */
  thread?: string;
  /** The process (W/X with `;process:`). */
  process?: string;
  core?: number;
  /** A watchpoint triggered: which kind and the data address. */
  watch?: { kind: WatchKind; address: bigint };
  /** The stop was a software (`swbreak`) or hardware (`hwbreak`) breakpoint, when the stub says so. */
  swbreak: boolean;
  hwbreak: boolean;
  /** Registers sent in the reply, by number, as raw target bytes. */
  registersByNumber: Map<number, Buffer>;
  /** The same registers by name and value, for those the register layout knows. */
  registers: Map<string, bigint>;
  /** Every other `name:value` pair, as sent. */
  fields: Map<string, string>;
  /** The packet as received. */
  raw: string;
}

/** True when a packet is a stop reply (its first byte is T, S, W or X). */
export function isStopReply(data: Uint8Array): boolean {
  const c = data[0];
  return c === 0x54 || c === 0x53 || c === 0x57 || c === 0x58;
}

const MAX_PAIRS = 1024;

export function parseStopReply(raw: string, layout?: RegisterLayout): StopReply {
  const kind = raw[0] as StopKind;
  if (kind !== 'T' && kind !== 'S' && kind !== 'W' && kind !== 'X') throw new ProtocolError('not a stop reply', raw);
  const head = /^[TSWX]([0-9a-fA-F]{2})/.exec(raw);
  if (!head) throw new ProtocolError('stop reply without a signal or exit code', raw);
  const code = Number.parseInt(head[1], 16);
  const reply: StopReply = {
    kind,
    swbreak: false,
    hwbreak: false,
    registersByNumber: new Map(),
    registers: new Map(),
    fields: new Map(),
    raw,
  };
  if (kind === 'W') reply.exitCode = code;
  else reply.signal = code;

  let rest = raw.slice(3);
  if (kind === 'W' || kind === 'X') {
    // W00;process:1234
    if (rest.startsWith(';')) rest = rest.slice(1);
  }
  const pairs = rest.split(';').filter((p) => p !== '');
  if (pairs.length > MAX_PAIRS) throw new ProtocolError('stop reply with too many fields', raw.slice(0, 200));
  for (const pair of pairs) {
    const colon = pair.indexOf(':');
    const name = colon < 0 ? pair : pair.slice(0, colon);
    const value = colon < 0 ? '' : pair.slice(colon + 1);
    if (kind === 'T' && /^[0-9a-fA-F]+$/.test(name)) {
      const regnum = parseHexNumber(name, 'stop reply register number');
      // `xx…` marks an unavailable register
      if (/^[xX]+$/.test(value)) continue;
      if (value.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(value)) throw new ProtocolError(`stop reply: register ${name} is not hex`, raw);
      const bytes = Buffer.from(value, 'hex');
      reply.registersByNumber.set(regnum, bytes);
      const info = layout?.byNumber(regnum);
      if (info) reply.registers.set(info.name, readUIntLE(bytes));
      continue;
    }
    switch (name) {
      case 'thread':
        reply.thread = value;
        break;
      case 'process':
        reply.process = value;
        break;
      case 'core':
        reply.core = parseHexNumber(value, 'stop reply core');
        break;
      case 'watch':
      case 'rwatch':
      case 'awatch':
        reply.watch = { kind: name, address: parseHexBigInt(value, `stop reply ${name} address`) };
        break;
      case 'swbreak':
        reply.swbreak = true;
        break;
      case 'hwbreak':
        reply.hwbreak = true;
        break;
      default:
        reply.fields.set(name, value);
    }
  }
  return reply;
}

/** A short human-readable description, e.g. "T05 (SIGTRAP) thread 01, watch 0x1000". */
export function describeStop(r: StopReply): string {
  const sig = r.signal === 2 ? ' (SIGINT)' : r.signal === 5 ? ' (SIGTRAP)' : '';
  const parts: string[] = [`${r.raw.slice(0, 3)}${sig}`];
  if (r.kind === 'W') parts[0] = `exited with ${r.exitCode}`;
  if (r.thread) parts.push(`thread ${r.thread}`);
  if (r.watch) parts.push(`${r.watch.kind} 0x${r.watch.address.toString(16)}`);
  if (r.swbreak) parts.push('swbreak');
  if (r.hwbreak) parts.push('hwbreak');
  return parts.join(', ');
}
