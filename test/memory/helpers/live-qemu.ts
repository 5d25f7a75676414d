/**
 * A bare QEMU for live tests (no disk, no guest: the vCPU sits at the reset vector with -S) and a
 * minimal QMP client for it, so these tests do not depend on the transport layer.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { QmpPort } from '../../../lib/memory/procmem-backend';
import type { PhysicalMemory, PhysicalRange } from '../../../lib/memory/physical';

export const QEMU = 'qemu-system-x86_64';

/** Why live tests cannot run here, or undefined when they can. */
export function qemuMissing(): string | undefined {
  const r = spawnSync(QEMU, ['--version'], { encoding: 'utf8' });
  if (r.error) return `${QEMU} is not installed (${(r.error as NodeJS.ErrnoException).code})`;
  if (r.status !== 0) return `${QEMU} --version failed: ${r.stderr.trim()}`;
  return undefined;
}

export class MiniQmp implements QmpPort {
  #sock: net.Socket;
  #buf = '';
  #waiters: ((msg: Record<string, unknown>) => void)[] = [];

  private constructor(sock: net.Socket) {
    this.#sock = sock;
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.#buf += d;
      let nl;
      while ((nl = this.#buf.indexOf('\n')) >= 0) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('event' in msg) continue;
        this.#waiters.shift()?.(msg);
      }
    });
  }

  static async connect(path: string): Promise<MiniQmp> {
    const sock = net.connect(path);
    await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    const q = new MiniQmp(sock);
    await q.#next(); // greeting
    await q.execute('qmp_capabilities');
    return q;
  }

  #next(): Promise<Record<string, unknown>> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const reply = this.#next();
    this.#sock.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    const msg = await reply;
    if ('error' in msg) throw new Error(`${command}: ${JSON.stringify(msg.error)}`);
    return msg.return;
  }

  async hmp(command: string): Promise<string> {
    return (await this.execute('human-monitor-command', { 'command-line': command })) as string;
  }

  close(): void {
    this.#sock.destroy();
  }
}

export interface LiveQemu {
  dir: string;
  qmp: MiniQmp;
  stop(): void;
}

/** Starts `qemu-system-x86_64 -machine pc -accel tcg -m 128 -S` daemonized in a temp dir. */
export async function startQemu(): Promise<LiveQemu> {
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-qemu-'));
  const r = spawnSync(QEMU, [
    '-machine', 'pc', '-accel', 'tcg', '-m', '128', '-display', 'none', '-nodefaults', '-S',
    '-qmp', `unix:${dir}/qmp.sock,server=on,wait=off`, '-daemonize', '-pidfile', `${dir}/pid`,
  ], { encoding: 'utf8', timeout: 30000 });
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`QEMU did not start: ${r.stderr || r.error}`);
  }
  const pid = Number(readFileSync(`${dir}/pid`, 'utf8').trim());
  const stop = () => {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    return { dir, qmp: await MiniQmp.connect(`${dir}/qmp.sock`), stop };
  } catch (err) {
    stop();
    throw err;
  }
}

/** Parses HMP `xp /Nxb addr` output ("00000000000ffff0: 0xea 0x5b ...") into bytes. */
export function parseXpBytes(text: string): Buffer {
  const bytes: number[] = [];
  for (const line of text.split(/\r?\n/)) {
    const m = /^[0-9a-f]+:\s*(.*)$/i.exec(line.trim());
    if (m) for (const b of m[1].trim().split(/\s+/)) bytes.push(parseInt(b, 16));
  }
  return Buffer.from(bytes);
}

/** Slow but independent physical memory through HMP `xp`: the fallback to check procmem against. */
export class HmpXpMemory implements PhysicalMemory {
  readonly name = 'hmp-xp';
  constructor(readonly qmp: MiniQmp) {}

  async read(address: bigint, length: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let done = 0; done < length; done += 1024) {
      const n = Math.min(1024, length - done);
      parts.push(parseXpBytes(await this.qmp.hmp(`xp /${n}xb 0x${(address + BigInt(done)).toString(16)}`)));
    }
    return Buffer.concat(parts);
  }

  async readRanges(ranges: readonly PhysicalRange[]): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for (const r of ranges) out.push(await this.read(r.address, r.length));
    return out;
  }
}
