/**
 * What every bench phase shares: statistics, a clock, QMP helpers (a fresh connection per call:
 * QEMU's -qmp socket serves one client at a time, and the code under test opens its own), and
 * closing a Vm with the backend it may hold.
 */
import * as fs from 'node:fs';
import { connect } from 'node:net';
import { QmpClient } from '../lib/transport/qmp';
import { ProcMemPhysicalMemory } from '../lib/memory';
import type { Vm } from '../lib/vm';

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

// ---- QMP helpers ----

/** Runs `f` with a fresh QMP connection, closed afterwards. */
export async function withQmp<T>(address: string, f: (qmp: QmpClient) => Promise<T>): Promise<T> {
  const qmp = await QmpClient.connect(address, { timeout: 15_000 });
  try {
    return await f(qmp);
  } finally {
    await qmp.close().catch(() => undefined);
  }
}

export async function vmRunning(qmpAddress: string): Promise<boolean> {
  return withQmp(qmpAddress, async (q) => ((await q.execute('query-status')) as { running: boolean }).running);
}

/** Stops or restarts the vCPUs (no-op when they already are so). */
export async function setRunning(qmpAddress: string, running: boolean): Promise<void> {
  await withQmp(qmpAddress, async (q) => {
    const st = (await q.execute('query-status')) as { running: boolean; status: string };
    if (st.running === running) return;
    if (!running) await q.execute('stop');
    else if (st.status === 'paused' || st.status === 'debug') await q.execute('cont');
    else throw new Error(`the VM is ${st.status}: cannot resume it`);
  });
}

/** Writes an ELF dump of guest memory (dump-guest-memory, paging off) to `file`, replacing it. */
export async function makeDump(qmpAddress: string, file: string): Promise<{ ms: number; bytes: number }> {
  fs.rmSync(file, { force: true });
  const t0 = nowMs();
  await withQmp(qmpAddress, (q) => q.execute('dump-guest-memory', { paging: false, protocol: `file:${file}` }, { timeout: 600_000 }));
  return { ms: nowMs() - t0, bytes: fs.statSync(file).size };
}

/**
 * Closes a Vm and the /proc/<tid>/mem backend it may hold: Vm.close() does not close that one
 * (its file handle would be closed by the garbage collector, with a warning).
 */
export async function closeVm(vm: Vm, memoryOpened: boolean): Promise<void> {
  try {
    // vm.memory() is cached once opened; it must not be called to open it here
    const mem = vm.live && memoryOpened ? (await vm.memory()).backend : undefined;
    if (mem instanceof ProcMemPhysicalMemory) await mem.close();
  } catch {
    // opening it had failed: nothing to close
  } finally {
    await vm.close();
  }
}

// ---- the guest's control shell ----

let seq = 0;

/** One shell command in the guest through the control serial port (the guest's own answer). */
export function control(address: string, command: string, timeoutMs = 300_000): Promise<string> {
  const id = `b${process.pid}x${++seq}`;
  return new Promise((resolve, reject) => {
    const sock = connect(address.replace(/^unix:/, ''));
    let buf = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`guest command timed out: ${command}`)); }, timeoutMs);
    sock.on('connect', () => sock.write(`${id} ${command}\n`));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const m = new RegExp(`(?:^|\\n)VMICTL-DONE ${id} (\\d+)\\r?\\n`).exec(buf);
      if (!m) return;
      clearTimeout(timer);
      sock.end();
      if (m[1] !== '0') reject(new Error(`guest command failed (${m[1]}): ${command}`));
      else resolve(buf.slice(0, m.index));
    });
    sock.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}
