/**
 * gdbstub transport benchmark: round-trip time per packet, and physical-memory read throughput
 * with and without pipelining, for GdbClient and for a minimal raw-socket loop that does the same
 * reads with no client code (the baseline: the best this stub can do). Goal: client ≥ 90% of the
 * baseline.
 *
 *   npx tsc && VMICTL_GDB=unix:/path/gdb.sock node dist/bench/transport.js
 *
 * Environment: VMICTL_GDB (required), VMICTL_BENCH_MIB (default 16), VMICTL_BENCH_RTT (requests
 * for the round-trip median, default 2000), VMICTL_BENCH_WINDOW (pipelined requests in flight,
 * default 32), VMICTL_BENCH_RUNS (rounds, each running the
 * client then the baseline; the best time of each is kept, default 5).
 *
 * QEMU's gdbstub takes one client at a time, and a client connecting pauses the VM: the phases
 * connect one after the other, and if the VM was running at the start it is resumed (detach) at
 * the end. Physical-memory mode is global to QEMU: it is put back as it was.
 */
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import { once } from 'node:events';
import { GdbClient } from '../lib/transport/gdb';
import { parseSocketAddress } from '../lib/util/address';

const address = process.env.VMICTL_GDB;
const MIB = Number(process.env.VMICTL_BENCH_MIB ?? 16);
const RTT_N = Number(process.env.VMICTL_BENCH_RTT ?? 2000);
const WINDOW = Number(process.env.VMICTL_BENCH_WINDOW ?? 32);
const RUNS = Number(process.env.VMICTL_BENCH_RUNS ?? 5);
const TOTAL = Math.floor(MIB * 1024 * 1024);
const PIECE = 2048;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const now = () => Number(process.hrtime.bigint()) / 1e6; // ms
const mbps = (bytes: number, ms: number) => bytes / (ms / 1000) / 1e6;

/** The baseline: one socket, '+' for every packet, `m` requests, hex decoded into one buffer. */
class Raw {
  readonly #sock: net.Socket;
  #buf: Buffer = Buffer.alloc(0);
  #waiting: ((p: Buffer) => void)[] = [];
  constructor(sock: net.Socket) {
    this.#sock = sock;
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => {
      this.#buf = this.#buf.length ? Buffer.concat([this.#buf, d]) : d;
      let i = 0;
      let acks = 0;
      for (;;) {
        const s = this.#buf.indexOf(0x24, i);
        const h = s < 0 ? -1 : this.#buf.indexOf(0x23, s);
        if (h < 0 || h + 2 >= this.#buf.length) {
          i = s < 0 ? this.#buf.length : s;
          break;
        }
        const pkt = this.#buf.subarray(s + 1, h);
        i = h + 3;
        acks++;
        if (pkt[0] === 0x54 && this.#waiting.length === 0) continue; // unsolicited T02
        this.#waiting.shift()!(pkt);
      }
      this.#buf = this.#buf.subarray(i);
      if (acks) sock.write('+'.repeat(acks));
    });
  }
  static async open(addr: string): Promise<Raw> {
    const a = parseSocketAddress(addr);
    const sock = a.kind === 'unix' ? net.connect(a.path) : net.connect(a.port, a.host);
    await once(sock, 'connect');
    return new Raw(sock);
  }
  send(payload: string): Promise<Buffer> {
    let sum = 0;
    for (let i = 0; i < payload.length; i++) sum += payload.charCodeAt(i);
    this.#sock.write(`$${payload}#${(sum & 0xff).toString(16).padStart(2, '0')}`);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
  /** Reads [0, total) in 2048-byte pieces with `window` requests in flight. */
  async read(total: number, window: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(total);
    let next = 0;
    const worker = async () => {
      while (next < total) {
        const at = next;
        next += PIECE;
        const len = Math.min(PIECE, total - at);
        const reply = await this.send(`m${at.toString(16)},${len.toString(16)}`);
        out.write(reply.toString('latin1'), at, len, 'hex');
      }
    };
    await Promise.all(Array.from({ length: window }, worker));
    return out;
  }
  close(): void {
    this.#sock.destroy();
  }
}

async function timed(fn: () => Promise<Buffer>): Promise<{ ms: number; digest: string }> {
  const t0 = now();
  const data = await fn();
  const ms = now() - t0;
  return { ms, digest: crypto.createHash('sha256').update(data).digest('hex').slice(0, 16) };
}

interface Side {
  rtts: number[];
  pipelined: number[];
  serial: number[];
  digests: Set<string>;
}

const side = (): Side => ({ rtts: [], pipelined: [], serial: [], digests: new Set() });

async function main(): Promise<void> {
  if (!address) throw new Error('set VMICTL_GDB to the gdbstub address (unix:/path or tcp:127.0.0.1:PORT)');
  console.log(
    `gdbstub ${address}: ${MIB} MiB physical reads (2048 bytes per m), window ${WINDOW}; ` +
      `${RUNS} rounds alternating client and baseline, best time kept; round trip = median of ${RTT_N} m-reads of 8 bytes`,
  );
  const client = side();
  const base = side();
  let wasRunning = false;
  let physBefore: boolean | undefined;
  let stats: object = {};
  const rttPerRound = Math.max(1, Math.ceil(RTT_N / RUNS));

  for (let round = 0; round < RUNS; round++) {
    // -- client --
    const c = await GdbClient.connect(address);
    await new Promise((r) => setImmediate(r)); // a T02 from connect, if the VM was running
    if (round === 0) {
      wasRunning = c.stats.unsolicitedStops > 0;
      physBefore = c.physicalMemoryMode;
    }
    await c.setPhysicalMemoryMode(true);
    for (let i = 0; i < rttPerRound; i++) {
      const t0 = now();
      await c.readMemory(0n, 8);
      client.rtts.push(now() - t0);
    }
    for (const [list, window] of [[client.pipelined, WINDOW], [client.serial, 1]] as const) {
      const r = await timed(() => c.readMemory(0n, TOTAL, { window }));
      list.push(r.ms);
      client.digests.add(r.digest);
    }
    stats = { ...c.stats };
    await c.close();

    // -- baseline --
    const raw = await Raw.open(address);
    await raw.send('Qqemu.PhyMemMode:1');
    for (let i = 0; i < rttPerRound; i++) {
      const t0 = now();
      await raw.send('m0,8');
      base.rtts.push(now() - t0);
    }
    for (const [list, window] of [[base.pipelined, WINDOW], [base.serial, 1]] as const) {
      const r = await timed(() => raw.read(TOTAL, window));
      list.push(r.ms);
      base.digests.add(r.digest);
    }
    if (round === RUNS - 1 && physBefore !== true) await raw.send('Qqemu.PhyMemMode:0');
    raw.close();
    process.stdout.write(`round ${round + 1}/${RUNS} done\n`);
  }

  const best = (xs: number[]) => Math.min(...xs);
  const result = {
    client: { rttUs: median(client.rtts) * 1000, pipelinedMBps: mbps(TOTAL, best(client.pipelined)), serialMBps: mbps(TOTAL, best(client.serial)) },
    baseline: { rttUs: median(base.rtts) * 1000, pipelinedMBps: mbps(TOTAL, best(base.pipelined)), serialMBps: mbps(TOTAL, best(base.serial)) },
  };
  const ratio = {
    rtt: result.baseline.rttUs / result.client.rttUs,
    pipelined: result.client.pipelinedMBps / result.baseline.pipelinedMBps,
    serial: result.client.serialMBps / result.baseline.serialMBps,
  };
  const same = client.digests.size === 1 && base.digests.size === 1 && [...client.digests][0] === [...base.digests][0];
  const line = (name: string, c: number, b: number, unit: string, r: number) =>
    console.log(`${name.padEnd(26)} client ${c.toFixed(1).padStart(7)} ${unit}   baseline ${b.toFixed(1).padStart(7)} ${unit}   client/baseline ${(r * 100).toFixed(1)}%`);
  line('round trip (median)', result.client.rttUs, result.baseline.rttUs, 'µs  ', ratio.rtt);
  line('read, pipelined (best)', result.client.pipelinedMBps, result.baseline.pipelinedMBps, 'MB/s', ratio.pipelined);
  line('read, one by one (best)', result.client.serialMBps, result.baseline.serialMBps, 'MB/s', ratio.serial);
  console.log(
    `pipelining speed-up: client ×${(result.client.pipelinedMBps / result.client.serialMBps).toFixed(2)}, ` +
      `baseline ×${(result.baseline.pipelinedMBps / result.baseline.serialMBps).toFixed(2)}; goal: client ≥ 90% of baseline`,
  );
  console.log(`data identical in every run and on both sides: ${same ? 'yes' : 'NO'}`);
  if (wasRunning) {
    const again = await GdbClient.connect(address);
    await again.detach();
    console.log('the VM was running before the benchmark: resumed it (detach)');
  }
  console.log(JSON.stringify({ address, bytes: TOTAL, window: WINDOW, rounds: RUNS, ...result, ratio, clientStats: stats, dataIdentical: same }));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack ?? err.message : err);
  process.exit(1);
});
