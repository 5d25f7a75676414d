/**
 * Injection benchmark, against the floor measured on the same VM in the same run.
 *
 *   chain    a chain of VMICTL_BENCH_INJECT_CALLS (1000) injected getpid in one session into the
 *            ticker container (after 20 warm-up calls): median and p95 per call, throughput.
 *   acquire  openInjection() into ticker (its processes make a syscall every 50 ms) repeated
 *            VMICTL_BENCH_INJECT_ACQUIRES (5) times: the median time to catch a thread (from the
 *            first resume), and the median open() including the container lookup.
 *   floor    with the same session's thread parked on the breakpoint at its return address: one
 *            register write (G), a continue of that vCPU (vCont;c), and the stop it makes at once
 *            (a breakpoint at the pc stops again with no progress): the least one injected call
 *            can cost over the gdbstub. Median of as many rounds as the chain has calls.
 *            Goal: chain median / floor median <= 1.5.
 *
 *   VMICTL_QMP=… VMICTL_GDB=… node dist/bench/inject.js
 */
import { Vm } from '../lib/vm';
import { openInjection, type InjectionSession } from '../lib/inject';
import { closeVm, median, nowMs } from './common';
import type { Figure, Log } from './run';

const GOAL_RATIO = 1.5;

export interface InjectBenchOptions {
  qmp: string;
  gdb: string;
  log: Log;
  /** Container to inject into (default ticker). */
  container?: string;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** G + vCont;c:<vcpu> + stop, `rounds` times, with the session's thread parked on its breakpoint. */
async function floor(vm: Vm, s: InjectionSession, rounds: number): Promise<number[]> {
  const gdb = await vm.gdb();
  const thread = s.vcpu;
  const regs = await gdb.readRegisters({ thread, timeout: 10_000 });
  if (regs.get('rip') !== s.returnAddress) throw new Error(`the session's thread is not parked at its return address (rip 0x${regs.get('rip')?.toString(16)})`);
  const layout = gdb.registerLayout;
  const block = Buffer.alloc(layout.size);
  for (const r of layout.registers) block.set(layout.encodeValue(r, regs.get(r.name) ?? 0n), r.offset);
  const packet = `G${block.toString('hex')}`;
  const ms: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = nowMs();
    await gdb.selectThread(thread, 'g', { timeout: 10_000 });
    const reply = await gdb.command(packet, { timeout: 10_000 });
    if (reply !== 'OK') throw new Error(`G: ${reply}`);
    await gdb.vCont([{ action: 'c', thread }], { timeout: 10_000 });
    const stop = await gdb.waitForStop({ timeout: 10_000 });
    ms.push(nowMs() - t0);
    if (stop.thread && stop.thread !== thread) throw new Error(`the floor loop stopped on another vCPU (${stop.raw})`);
  }
  const after = await gdb.readRegisters({ thread, timeout: 10_000 });
  if (after.get('rip') !== s.returnAddress) throw new Error('the floor loop moved the thread');
  return ms;
}

export async function runInjectBench(opts: InjectBenchOptions): Promise<Figure[]> {
  const { log } = opts;
  const container = opts.container ?? 'ticker';
  const calls = Number(process.env.VMICTL_BENCH_INJECT_CALLS ?? 1000);
  const acquires = Number(process.env.VMICTL_BENCH_INJECT_ACQUIRES ?? 5);
  const vm = await Vm.connect({ qmp: opts.qmp, gdb: opts.gdb, memory: 'auto' });
  let memoryOpened = false;
  try {
    await vm.kernel();
    memoryOpened = true;
    const acquireMs: number[] = [];
    const openMs: number[] = [];
    for (let i = 0; i < acquires; i++) {
      const t0 = nowMs();
      const s = await openInjection(vm, { container }, { timeout: 30_000, journal: false });
      openMs.push(nowMs() - t0);
      acquireMs.push(s.stats.acquireMs);
      await s.close();
      // let the guest run a moment, as between two commands
      await new Promise((r) => setTimeout(r, 200));
    }
    log(`  acquire in ${container}: median ${median(acquireMs).toFixed(0)} ms to catch a thread (${acquireMs.map((x) => x.toFixed(0)).join(', ')}), open() ${median(openMs).toFixed(0)} ms`);

    const s = await openInjection(vm, { container }, { timeout: 30_000, journal: false });
    const per: number[] = [];
    let floorMs: number[] = [];
    let total = 0;
    let stepOvers = 0;
    try {
      for (let i = 0; i < 20; i++) await s.syscall('getpid');
      const before = s.stats.stepOvers;
      const t0 = nowMs();
      for (let i = 0; i < calls; i++) {
        const c0 = nowMs();
        await s.syscall('getpid');
        per.push(nowMs() - c0);
      }
      total = nowMs() - t0;
      stepOvers = s.stats.stepOvers - before;
      floorMs = await floor(vm, s, calls);
    } finally {
      await s.close();
    }
    const med = median(per);
    const fl = median(floorMs);
    const ratio = med / fl;
    log(`  chain of ${calls} getpid in ${container} (pid ${s.target.pid}): median ${med.toFixed(2)} ms, p95 ${percentile(per, 95).toFixed(2)} ms, ${(calls / (total / 1000)).toFixed(0)} calls/s, ${stepOvers} step-overs of other processes`);
    log(`  floor (G + vCont;c + stop at once): median ${fl.toFixed(2)} ms, p95 ${percentile(floorMs, 95).toFixed(2)} ms; injected getpid / floor = ${ratio.toFixed(2)}x (goal <= ${GOAL_RATIO}x)`);
    return [
      { name: 'inject.getpid.median', value: med, unit: 'ms', baseline: { value: fl, what: 'floor (register write + continue + breakpoint hit)' }, ratio: fl / med, goal: { text: `<= ${GOAL_RATIO}x floor`, met: ratio <= GOAL_RATIO } },
      { name: 'inject.getpid.p95', value: percentile(per, 95), unit: 'ms', baseline: { value: percentile(floorMs, 95), what: 'floor p95' } },
      { name: 'inject.getpid.throughput', value: calls / (total / 1000), unit: 'calls/s' },
      { name: 'inject.acquire.median', value: median(acquireMs), unit: 'ms', note: `${container} makes a syscall every 50 ms` },
      { name: 'inject.floor.median', value: fl, unit: 'ms' },
    ];
  } finally {
    await closeVm(vm, memoryOpened);
  }
}

if (require.main === module) {
  const qmp = process.env.VMICTL_QMP;
  const gdb = process.env.VMICTL_GDB;
  if (!qmp || !gdb) {
    console.error('set VMICTL_QMP and VMICTL_GDB');
    process.exitCode = 2;
  } else {
    runInjectBench({ qmp, gdb, log: (l) => console.log(l) }).then(
      (figures) => { for (const f of figures) console.log(JSON.stringify(f)); },
      (err: unknown) => { console.error(err); process.exitCode = 1; },
    );
  }
}
