/**
 * A small scriptable gdbstub on a real unix socket, for transport tests. It behaves like QEMU 7.2
 * by default (PacketSize=1000, acks every packet, no QStartNoAckMode, E14 for unmapped memory,
 * E22 for reads over 2048 bytes, T02 on interrupt) and can misbehave on request: nack packets,
 * send bad checksums, tear or coalesce its writes, run-length encode, hang, close mid-reply,
 * send unsolicited stops, or swallow the first packet while "running" as QEMU does when the VM was
 * resumed behind its back.
 *
 * Its wire code is written separately from lib/transport/gdb/packet.ts on purpose, so that the
 * client is not only tested against itself.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Test } from 'tap';
import { GdbClient, type GdbConnectOptions } from '../../lib/transport/gdb';

export interface FakeRegister {
  name: string;
  size: number;
  regnum: number;
  value: bigint;
}

export type Reply = string | string[] | null;
export type Handler = (packet: string, stub: FakeGdb) => Reply | undefined;

export interface FakeGdbOptions {
  /** Advertise QStartNoAckMode (QEMU 7.2 does not). */
  offerNoAck?: boolean;
  /** PacketSize in qSupported (default 0x1000). */
  packetSize?: number;
  /** Target description files by name; default: a three-file description with an include. */
  files?: Record<string, string>;
  /** Registers served by g/p (default: matches the default description). */
  registers?: FakeRegister[];
  /** Size of guest-physical memory (default 1 MiB, filled with a pattern). */
  physicalSize?: number;
  /** Max hardware breakpoints (like KVM's 4 debug registers); default unlimited. */
  hwBreakpointLimit?: number;
}

/** The default target description: target.xml includes core.xml and sys.xml (with a regnum jump). */
export const DEFAULT_FILES: Record<string, string> = {
  'target.xml':
    '<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "gdb-target.dtd">\n' +
    '<target version="1.0"><architecture>i386:x86-64</architecture>' +
    '<xi:include href="core.xml"/><xi:include href="sys.xml"/></target>',
  'core.xml':
    '<?xml version="1.0"?>\n<!-- core registers -->\n<feature name="test.core">\n' +
    '  <flags id="fl" size="4"><field name="CF" start="0" end="0"/></flags>\n' +
    '  <reg name="rax" bitsize="64" type="int64" regnum="0"/>\n' +
    '  <reg name="rbx" bitsize="64" type="int64"/>\n' +
    '  <!--reg name="ghost" bitsize="64"/-->\n' +
    '  <reg name="rip" bitsize="64" type="code_ptr"/>\n' +
    '  <reg name="eflags" bitsize="32" type="fl"/>\n' +
    '  <reg name="cs" bitsize="32" type="int32"/>\n' +
    '  <reg name="st0" bitsize="80" type="i387_ext"/>\n' +
    '</feature>\n',
  'sys.xml':
    '<feature name="test.sys">\n' +
    '  <reg name="fs_base" bitsize="64" type="int64" regnum="8"/>\n' +
    '  <reg name="gs_base" bitsize="64" type="int64"/>\n' +
    '  <reg name="cr3" bitsize="64" type="int64"/>\n' +
    '  <reg name="xmm0" bitsize="128" type="vec128"/>\n' +
    '</feature>\n',
};

/** Registers matching DEFAULT_FILES: numbers 0-5 then 8-11 (6 and 7 do not exist). */
export function defaultRegisters(): FakeRegister[] {
  return [
    { name: 'rax', size: 8, regnum: 0, value: 0x1122334455667788n },
    { name: 'rbx', size: 8, regnum: 1, value: 0x2n },
    { name: 'rip', size: 8, regnum: 2, value: 0xffffffff81000000n },
    { name: 'eflags', size: 4, regnum: 3, value: 0x246n },
    { name: 'cs', size: 4, regnum: 4, value: 0x10n },
    { name: 'st0', size: 10, regnum: 5, value: 0x4000c90fdaa22168c000n },
    { name: 'fs_base', size: 8, regnum: 8, value: 0x7f0000001000n },
    { name: 'gs_base', size: 8, regnum: 9, value: 0xffff888007c00000n },
    { name: 'cr3', size: 8, regnum: 10, value: 0x1234000n },
    { name: 'xmm0', size: 16, regnum: 11, value: 0x0102030405060708090a0b0c0d0e0f10n },
  ];
}

export function sum8(text: string): string {
  let s = 0;
  for (let i = 0; i < text.length; i++) s = (s + text.charCodeAt(i)) % 256;
  return s.toString(16).padStart(2, '0');
}

export function frame(payload: string): string {
  return `$${payload}#${sum8(payload)}`;
}

function le(value: bigint, size: number): string {
  let hex = '';
  let v = BigInt.asUintN(size * 8, value);
  for (let i = 0; i < size; i++) {
    hex += Number(v & 0xffn).toString(16).padStart(2, '0');
    v >>= 8n;
  }
  return hex;
}

function fromLe(hex: string): bigint {
  let v = 0n;
  for (let i = hex.length - 2; i >= 0; i -= 2) v = (v << 8n) | BigInt(Number.parseInt(hex.slice(i, i + 2), 16));
  return v;
}

/** A byte of the physical memory pattern: distinct per 2 KiB piece, so misordered replies show. */
export function patternByte(address: number): number {
  return (address * 7 + (address >> 11) * 13) & 0xff;
}

export class FakeGdb {
  readonly path: string;
  readonly address: string;
  readonly server: net.Server;
  readonly opts: FakeGdbOptions;

  /** Every packet received (payloads), acks, nacks and interrupt bytes. */
  received: string[] = [];
  acks = 0;
  nacks = 0;
  interrupts = 0;
  badChecksumsFromClient = 0;
  connections = 0;
  /** Most packets received while earlier ones were unanswered (observed pipelining depth). */
  maxOutstanding = 0;

  // -- behaviour knobs --
  /** Custom handler, consulted first; return undefined for the default behaviour. */
  handler: Handler | undefined;
  /** Ack received packets with '+' (turned off after QStartNoAckMode). */
  ackMode = true;
  /** Nack (and ignore) the next N packets matching `nackMatch`. */
  nackNext = 0;
  nackMatch: RegExp = /.*/;
  /** Send the next N replies with a wrong checksum (resent correctly on '-'). */
  badChecksumNext = 0;
  /** How replies are written: whole, one byte at a time, or gathered into one write per tick. */
  writeMode: 'whole' | 'torn' | 'coalesced' = 'whole';
  /** Run-length encode replies (as a stub may). */
  rle = false;
  /** Answer `m` with at most this many bytes (a stub may send fewer than asked). */
  shortReads: number | undefined;
  /** Do not answer packets matching this (they are still acked). */
  hangMatch: RegExp | undefined;
  hung: string[] = [];
  /** Send this stop reply just before answering the next packet. */
  stopBeforeNextReply: string | undefined;
  /** Answer packets only after this many are outstanding (to observe pipelining), or after a tick. */
  batchReplies = 0;
  /** VM state: running means the next byte pauses it, is swallowed, and T02 is sent (QEMU 7.2). */
  running = false;
  swallowWhenRunning = true;
  /**
   * The stop reply an interrupt gets while running (default `T02thread:<current>;`): a stop the VM
   * made by itself at the same moment (a watchpoint hit) is what the interrupt then reads.
   */
  interruptStop: string | undefined;

  // -- target state --
  physical: Buffer;
  phys = false;
  /** Virtual pages (4 KiB) that exist, by page number. */
  pages = new Map<bigint, Buffer>();
  registers: FakeRegister[];
  files: Record<string, string>;
  breakpoints = new Set<string>();
  threadList = ['01', '02'];
  currentThread = '01';

  socket: net.Socket | undefined;
  #inbuf = '';
  #lastSent: string | undefined;
  #outstanding: { packet: string; reply: Reply }[] = [];
  #coalesce: string[] = [];
  #swallowing = false;
  #torn: string[] = [];
  #threadCursor = 0;
  /** Packets sent (not counting resends after '-'). */
  packetsSent = 0;
  /** Number of socket writes made in torn mode. */
  writes = 0;

  private constructor(server: net.Server, p: string, opts: FakeGdbOptions) {
    this.server = server;
    this.path = p;
    this.address = `unix:${p}`;
    this.opts = opts;
    this.files = opts.files ?? DEFAULT_FILES;
    this.registers = opts.registers ?? defaultRegisters();
    this.physical = Buffer.alloc(opts.physicalSize ?? 1 << 20);
    for (let i = 0; i < this.physical.length; i++) this.physical[i] = patternByte(i);
  }

  static async start(opts: FakeGdbOptions = {}): Promise<FakeGdb> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-gdb-'));
    const p = path.join(dir, 'gdb.sock');
    const server = net.createServer();
    const fake = new FakeGdb(server, p, opts);
    server.on('connection', (s) => fake.#accept(s));
    await new Promise<void>((resolve) => server.listen(p, resolve));
    return fake;
  }

  async stop(): Promise<void> {
    this.socket?.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    fs.rmSync(path.dirname(this.path), { recursive: true, force: true });
  }

  /** Maps a virtual page (4 KiB aligned) with given or patterned contents. */
  mapPage(address: bigint, data?: Buffer): void {
    const page = address >> 12n;
    const buf = data ?? Buffer.alloc(4096, Number(page & 0xffn));
    this.pages.set(page, buf);
  }

  /** Writes a packet now (outside the request/reply flow), e.g. an unsolicited stop. */
  sendPacket(payload: string): void {
    this.#stopSelects(payload);
    this.packetsSent++;
    this.#write(this.#encode(payload));
    this.#lastSent = payload;
  }

  /** As QEMU (gdb_set_stop_cpu): the thread a stop reply names becomes the general thread. */
  #stopSelects(payload: string): void {
    const m = /^T[0-9a-f]{2}thread:([^;]+);/.exec(payload);
    if (m) this.currentThread = m[1];
  }

  sendRaw(data: string | Buffer): void {
    this.socket?.write(data);
  }

  /**
   * Waits until the client has acked every packet sent so far (so that setting `running` next
   * cannot be undone by a late '+', which a QEMU-like stub would take as the byte that pauses).
   */
  async settled(): Promise<void> {
    for (let i = 0; i < 1000 && this.acks < this.packetsSent; i++) await new Promise((r) => setTimeout(r, 2));
    await new Promise((r) => setTimeout(r, 5));
  }

  /** Answers the hung packets now, in order, with what the default handler would say. */
  releaseHung(): void {
    const hung = this.hung;
    this.hung = [];
    this.hangMatch = undefined;
    for (const p of hung) this.#reply(this.#answer(p));
  }

  register(name: string): FakeRegister {
    const r = this.registers.find((x) => x.name === name);
    if (!r) throw new Error(`fake: no register ${name}`);
    return r;
  }

  // ---- wire ----

  #accept(s: net.Socket): void {
    this.connections++;
    this.socket = s;
    this.#inbuf = '';
    s.setEncoding('latin1');
    s.on('data', (chunk: string) => this.#onData(chunk));
    s.on('error', () => undefined);
  }

  #onData(chunk: string): void {
    this.#inbuf += chunk;
    for (;;) {
      const buf = this.#inbuf;
      if (buf.length === 0) return;
      const c = buf[0];
      if (this.#swallowing) {
        // Like QEMU: after the byte that paused the VM, the rest of that packet is garbage.
        const end = buf.indexOf('#');
        if (end < 0 || end + 2 >= buf.length) {
          if (end < 0) this.#inbuf = '';
          return;
        }
        this.#inbuf = buf.slice(end + 3);
        this.#swallowing = false;
        continue;
      }
      if (this.running && this.swallowWhenRunning) {
        this.running = false;
        this.#inbuf = buf.slice(1);
        if (c === '\x03') this.interrupts++;
        else if (c === '$') this.#swallowing = true;
        this.sendPacket(this.interruptStop ?? `T02thread:${this.currentThread};`);
        continue;
      }
      if (c === '+') {
        this.acks++;
        this.#lastSent = undefined;
        this.#inbuf = buf.slice(1);
        continue;
      }
      if (c === '-') {
        this.nacks++;
        this.#inbuf = buf.slice(1);
        if (this.#lastSent !== undefined) this.#write(this.#encode(this.#lastSent));
        continue;
      }
      if (c === '\x03') {
        this.interrupts++;
        this.#inbuf = buf.slice(1);
        continue;
      }
      if (c !== '$') {
        this.#inbuf = buf.slice(1);
        continue;
      }
      const hash = buf.indexOf('#');
      if (hash < 0 || hash + 2 >= buf.length) return;
      const raw = buf.slice(1, hash);
      const cs = buf.slice(hash + 1, hash + 3);
      this.#inbuf = buf.slice(hash + 3);
      if (sum8(raw) !== cs.toLowerCase()) {
        this.badChecksumsFromClient++;
        this.#write('-');
        continue;
      }
      const payload = raw.replace(/\}(.)/gs, (_, ch: string) => String.fromCharCode(ch.charCodeAt(0) ^ 0x20));
      if (this.nackNext > 0 && this.nackMatch.test(payload)) {
        this.nackNext--;
        this.#write('-');
        continue;
      }
      if (this.ackMode) this.#write('+');
      this.received.push(payload);
      this.#onPacket(payload);
    }
  }

  #onPacket(packet: string): void {
    if (this.hangMatch?.test(packet)) {
      this.hung.push(packet);
      return;
    }
    const reply = this.#answer(packet);
    if (this.batchReplies > 0) {
      this.#outstanding.push({ packet, reply });
      this.maxOutstanding = Math.max(this.maxOutstanding, this.#outstanding.length);
      if (this.#outstanding.length === 1) setImmediate(() => this.#flushBatch());
      if (this.#outstanding.length >= this.batchReplies) this.#flushBatch();
      return;
    }
    this.#reply(reply);
  }

  #flushBatch(): void {
    const pending = this.#outstanding;
    this.#outstanding = [];
    for (const p of pending) this.#reply(p.reply);
  }

  #reply(reply: Reply): void {
    if (reply === null) return;
    if (this.stopBeforeNextReply) {
      const stop = this.stopBeforeNextReply;
      this.stopBeforeNextReply = undefined;
      this.packetsSent++;
      this.#write(this.#encode(stop));
    }
    for (const r of Array.isArray(reply) ? reply : [reply]) {
      if (this.badChecksumNext > 0) {
        this.badChecksumNext--;
        const good = this.#encode(r);
        const wrong = ((Number.parseInt(good.slice(-2), 16) + 1) & 0xff).toString(16).padStart(2, '0');
        this.#write(good.slice(0, -2) + wrong);
      } else this.#write(this.#encode(r));
      this.packetsSent++;
      this.#lastSent = r;
    }
  }

  #encode(payload: string): string {
    let body = payload.replace(/[#$}*]/g, (ch) => `}${String.fromCharCode(ch.charCodeAt(0) ^ 0x20)}`);
    if (this.rle) {
      body = body.replace(/(.)\1{3,}/g, (run: string, ch: string) => {
        let out = '';
        let left = run.length;
        while (left >= 4) {
          let n = Math.min(left, 98);
          if (n - 1 + 29 === 35 || n - 1 + 29 === 36) n = 6;
          out += `${ch}*${String.fromCharCode(n - 1 + 29)}`;
          left -= n;
        }
        return out + ch.repeat(left);
      });
    }
    return `$${body}#${sum8(body)}`;
  }

  #write(data: string): void {
    const s = this.socket;
    if (!s || s.destroyed) return;
    if (this.writeMode === 'torn') {
      // one byte per event-loop turn, so the client's reads see packets torn anywhere
      const start = this.#torn.length === 0;
      this.#torn.push(...data);
      if (start) this.#drainTorn();
    } else if (this.writeMode === 'coalesced') {
      if (this.#coalesce.length === 0) setImmediate(() => this.flushCoalesced());
      this.#coalesce.push(data);
    } else s.write(data, 'latin1');
  }

  #drainTorn(): void {
    const ch = this.#torn.shift();
    if (ch === undefined) return;
    this.writes++;
    this.socket?.write(ch, 'latin1');
    setImmediate(() => this.#drainTorn());
  }

  flushCoalesced(): void {
    const data = this.#coalesce.join('');
    this.#coalesce = [];
    if (data) this.socket?.write(data, 'latin1');
  }

  // ---- default target ----

  #answer(packet: string): Reply {
    const custom = this.handler?.(packet, this);
    if (custom !== undefined) return custom;
    const size = this.opts.packetSize ?? 0x1000;
    if (packet.startsWith('qSupported')) {
      return `PacketSize=${size.toString(16)};qXfer:features:read+;vContSupported+${this.opts.offerNoAck ? ';QStartNoAckMode+' : ''}`;
    }
    if (packet === 'QStartNoAckMode') {
      if (!this.opts.offerNoAck) return '';
      setImmediate(() => (this.ackMode = false));
      return 'OK';
    }
    let m: RegExpExecArray | null;
    if ((m = /^qXfer:features:read:([^:]+):([0-9a-f]+),([0-9a-f]+)$/.exec(packet))) {
      const file = this.files[m[1]];
      if (file === undefined) return 'E00';
      const off = Number.parseInt(m[2], 16);
      const len = Math.min(Number.parseInt(m[3], 16), 100); // small chunks: several round trips
      if (off > file.length) return 'E00';
      const chunk = file.slice(off, off + len);
      return (off + len < file.length ? 'm' : 'l') + chunk;
    }
    if (packet === 'qqemu.PhyMemMode') return this.phys ? '1' : '0';
    if ((m = /^Qqemu\.PhyMemMode:([01])$/.exec(packet))) {
      this.phys = m[1] === '1';
      return 'OK';
    }
    if ((m = /^m([0-9a-f]+),([0-9a-f]+)$/.exec(packet))) {
      const addr = BigInt(`0x${m[1]}`);
      const len = Number.parseInt(m[2], 16);
      if (len > size / 2) return 'E22';
      const data = this.#read(addr, len);
      if (!data) return 'E14';
      return (this.shortReads !== undefined ? data.subarray(0, this.shortReads) : data).toString('hex');
    }
    if ((m = /^M([0-9a-f]+),([0-9a-f]+):([0-9a-f]*)$/.exec(packet))) {
      const addr = BigInt(`0x${m[1]}`);
      const data = Buffer.from(m[3], 'hex');
      if (data.length !== Number.parseInt(m[2], 16)) return 'E22';
      return this.#writeMem(addr, data) ? 'OK' : 'E14';
    }
    if (packet === 'g') return this.registers.map((r) => le(r.value, r.size)).join('');
    if (packet.startsWith('G')) {
      let hex = packet.slice(1);
      for (const r of this.registers) {
        r.value = fromLe(hex.slice(0, r.size * 2));
        hex = hex.slice(r.size * 2);
      }
      return 'OK';
    }
    if ((m = /^p([0-9a-f]+)$/.exec(packet))) {
      const r = this.registers.find((x) => x.regnum === Number.parseInt(m![1], 16));
      return r ? le(r.value, r.size) : 'E14';
    }
    if ((m = /^P([0-9a-f]+)=([0-9a-f]+)$/.exec(packet))) {
      const r = this.registers.find((x) => x.regnum === Number.parseInt(m![1], 16));
      if (!r || m[2].length !== r.size * 2) return 'E14';
      r.value = fromLe(m[2]);
      return 'OK';
    }
    if ((m = /^H([gc])(.+)$/.exec(packet))) {
      if (m[2] !== '-1' && m[2] !== '0' && !this.threadList.includes(m[2])) return 'E22';
      if (m[1] === 'g' && m[2] !== '-1' && m[2] !== '0') this.currentThread = m[2];
      return 'OK';
    }
    // first thread alone, then the rest in one reply, then 'l'
    if (packet === 'qfThreadInfo') {
      this.#threadCursor = 1;
      return `m${this.threadList[0]}`;
    }
    if (packet === 'qsThreadInfo') {
      const rest = this.threadList.slice(this.#threadCursor);
      this.#threadCursor = this.threadList.length;
      return rest.length ? `m${rest.join(',')}` : 'l';
    }
    if (packet === 'qC') return `QC${this.currentThread}`;
    if ((m = /^([Zz])([0-4]),([0-9a-f]+),([0-9a-f]+)$/.exec(packet))) {
      const key = `${m[2]}:${m[3]}`;
      if (m[1] === 'z') return this.breakpoints.delete(key) ? 'OK' : 'E22';
      const hw = [...this.breakpoints].filter((b) => b[0] !== '0').length;
      if (m[2] !== '0' && this.opts.hwBreakpointLimit !== undefined && hw >= this.opts.hwBreakpointLimit) return 'E22'; // what QEMU answers when KVM refuses
      this.breakpoints.add(key);
      return 'OK';
    }
    if (packet === 'vCont?') return 'vCont;c;C;s;S';
    if (packet === 'c' || packet.startsWith('vCont;c')) {
      this.running = true;
      return null;
    }
    if (packet === 's' || packet.startsWith('vCont;s')) {
      // QEMU reports the vCPU that was stepped, which becomes the general thread
      const stepped = /^vCont;s:([^;]+)$/.exec(packet);
      if (stepped) this.currentThread = stepped[1];
      return `T05thread:${this.currentThread};`;
    }
    if (packet === '?') return `T05thread:${this.currentThread};`;
    if (packet.startsWith('qRcmd,')) {
      const cmd = Buffer.from(packet.slice(6), 'hex').toString();
      if (cmd === 'fail') return 'E01';
      return [`O${Buffer.from(`you said: ${cmd}\r\n`).toString('hex')}`, `O${Buffer.from('done\r\n').toString('hex')}`, 'OK'];
    }
    if (packet === 'D') return 'OK';
    return '';
  }

  #read(addr: bigint, len: number): Buffer | undefined {
    if (this.phys) {
      if (addr + BigInt(len) > BigInt(this.physical.length)) return undefined;
      return this.physical.subarray(Number(addr), Number(addr) + len);
    }
    const out = Buffer.alloc(len);
    for (let i = 0; i < len; ) {
      const a = addr + BigInt(i);
      const page = this.pages.get(a >> 12n);
      if (!page) return undefined;
      const off = Number(a & 0xfffn);
      const n = Math.min(4096 - off, len - i);
      page.copy(out, i, off, off + n);
      i += n;
    }
    return out;
  }

  #writeMem(addr: bigint, data: Buffer): boolean {
    if (this.phys) {
      if (addr + BigInt(data.length) > BigInt(this.physical.length)) return false;
      data.copy(this.physical, Number(addr));
      return true;
    }
    for (let i = 0; i < data.length; i++) {
      const a = addr + BigInt(i);
      const page = this.pages.get(a >> 12n);
      if (!page) return false;
      page[Number(a & 0xfffn)] = data[i];
    }
    return true;
  }
}

/** A fake stub and a client connected to it, both closed when the test ends. */
export async function connectToFake(t: Test, fakeOpts: FakeGdbOptions = {}, clientOpts: GdbConnectOptions = {}) {
  const fake = await FakeGdb.start(fakeOpts);
  const client = await GdbClient.connect(fake.address, { timeout: 5000, ...clientOpts });
  t.teardown(async () => {
    await client.close();
    await fake.stop();
  });
  return { fake, client };
}

/** The bytes the fake's memory holds at [address, address + length). */
export function expectedPattern(address: number, length: number): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => patternByte(address + i)));
}
