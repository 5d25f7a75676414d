/**
 * Injection benchmark, against floors measured on the same VM in the same run.
 *
 *   chain    a chain of VMICTL_BENCH_INJECT_CALLS (1000) injected getpid in one session into the
 *            ticker container (after 20 warm-up calls): median and p95 per call, throughput, and
 *            gdbstub packets, step-overs and (TCG) translation-cache flushes per call.
 *   acquire  openInjection() into ticker (its processes make a syscall at least every 100 ms)
 *            repeated VMICTL_BENCH_INJECT_ACQUIRES (5) times: the median time to catch a thread (from
 *            the first resume), and the median open() including the container lookup.
 *   floors   alternating with injected getpid, block by block (the machine's load hits them
 *            alike), VMICTL_BENCH_INJECT_ROUNDS (300) of each, in blocks of VMICTL_BENCH_INJECT_BLOCK (10):
 *            - injected: getpid as the session makes it (under TCG caught by a read watchpoint, see
 *              lib/inject/session.ts), a block of calls in a row, as a chain makes them;
 *            - floor (the goal's): one breakpoint hit plus one register write and a continue, the
 *              guest really running to the breakpoint: the thread's rip is set to a `ret` (a 0xc3 byte
 *              of its own code) and rsp to a stack slot holding R, so it goes straight back to the
 *              breakpoint at R without a syscall; resumed and caught exactly as an injected call is
 *              (same continue, same check of the thread, same step-overs of others).
 *            - stub floor: G + continue with the breakpoint at the thread's pc, which stops it again
 *              at once: the thread does not run; the gdbstub's round trips and QEMU's resume/stop.
 *            - injected by breakpoint: getpid caught by the breakpoint at R (the engine's way under
 *              KVM, or where the target has no `syscall; ret`), interleaved with the floors.
 *            The floors' block has the breakpoint at R inserted, the injected block not (a
 *            watchpoint session has none there between calls); each switch costs QEMU a
 *            translation-cache flush, which the first call of the next block pays.
 *            Goal: injected getpid median / floor median <= 1.5.
 *
 * Where the time goes (TCG, QEMU 7.2, traced packet by packet through a logging proxy): an injected
 * getpid is G, continue, the stop, g: 3 packets (there were 5: an Hg before G and before g, which
 * the stop reply makes needless). Of the wall time, the round trips are well under a millisecond;
 * the rest is QEMU resuming and stopping every vCPU (vm_start, the stop, pause_all_vcpus) and, on
 * every breakpoint stop, a tb_flush of the whole translation cache (gdb_vm_state_change, until
 * QEMU 10.2), after which the guest translates again all the code it runs: for a syscall, the
 * kernel's whole entry and exit path. A watchpoint stop does not flush, which is why the engine
 * catches calls by watchpoint under TCG. Resuming the thread's vCPU alone is no way out: the other
 * one may be stopped holding a lock the thread then spins on (tried: getpid did not come back in
 * 10 s). `TB flush count` (HMP `info jit`) is printed per call.
 *
 *   VMICTL_QMP=… VMICTL_GDB=… node dist/bench/inject.js
 */
import { Vm } from '../lib/vm';
import { openInjection, type InjectionSession } from '../lib/inject';
import { isThreadAt, writeRegistersOver, type Registers } from '../lib/inject/cpu';
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

/** QEMU's count of translation-cache flushes (HMP `info jit`; TCG only, undefined otherwise). */
async function tbFlushes(vm: Vm): Promise<number | undefined> {
  if (!vm.qmp) return undefined;
  const text = (await vm.qmp.execute('human-monitor-command', { 'command-line': 'info jit' })) as string;
  const m = /^TB flush count\s+(\d+)/m.exec(text);
  return m ? Number(m[1]) : undefined;
}

/**
 * The two floors, on the session's thread parked at its return address R (the session's own next
 * call writes every register again from what it read, so these rounds leave nothing behind).
 */
export class Floors {
  readonly #vm: Vm;
  readonly #s: InjectionSession;
  #regs: Registers;
  readonly #ret: bigint;
  readonly #slot: bigint;

  private constructor(vm: Vm, s: InjectionSession, regs: Registers, ret: bigint, slot: bigint) {
    this.#vm = vm;
    this.#s = s;
    this.#regs = regs;
    this.#ret = ret;
    this.#slot = slot;
  }

  static async open(vm: Vm, s: InjectionSession): Promise<Floors> {
    const { gdb, space } = s.engine;
    const regs = await gdb.readRegisters({ thread: s.vcpu, timeout: 10_000 });
    if (regs.get('rip') !== s.returnAddress) throw new Error(`the session's thread is not parked at its return address (rip 0x${regs.get('rip')?.toString(16)})`);
    // the slot lies in the session's stack scratch area (saved, and written back at the end)
    const redZoneTop = (s.savedRegister('rsp') - 128n) & ~15n;
    if (s.callSp >= redZoneTop) throw new Error('the session has no stack scratch area for the floor');
    const slot = s.callSp + 64n;
    const r = Buffer.alloc(8);
    r.writeBigUInt64LE(s.returnAddress);
    await space.write(slot, r);
    // any 0xc3 byte of the code page holding R decodes as `ret` when jumped to
    const page = s.returnAddress & ~0xfffn;
    const code = await space.read(page, 4096);
    const at = code.indexOf(0xc3);
    if (at < 0) throw new Error('no 0xc3 byte in the code page of the return address');
    return new Floors(vm, s, regs, page + BigInt(at), slot);
  }

  /**
   * Takes the registers of the thread where the session's last call left it (it may have come back
   * on another vCPU, whose per-CPU registers must not be overwritten with the old one's). Untimed.
   */
  async sync(): Promise<void> {
    this.#regs = await this.#s.engine.gdb.readRegisters({ thread: this.#s.vcpu, timeout: 10_000 });
    if (this.#regs.get('rip') !== this.#s.returnAddress) throw new Error('the session left its thread elsewhere than at its return address');
  }

  /** rip ← a `ret`, rsp ← the slot holding R; resumed and caught as an injected call is. */
  async run(): Promise<void> {
    const s = this.#s;
    const { gdb, runner, kernel } = s.engine;
    this.#regs = await writeRegistersOver(gdb, s.vcpu, this.#regs, new Map([['rip', this.#ret], ['rsp', this.#slot]]));
    const sp = this.#slot + 8n;
    const hit = await runner.runUntil((h) => isThreadAt(kernel, h, s.target, s.returnAddress, sp), { timeout: 10_000, what: 'floor round' });
    // back on another vCPU maybe: the session goes on from there
    s.adoptParked(hit);
    this.#regs = hit.regs;
  }

  /**
   * G + continue + the stop the thread makes at once (breakpoint at its pc). Every vCPU is resumed,
   * as for an injected call: one vCPU alone may spin on a lock the stopped one holds.
   */
  async stub(): Promise<void> {
    const s = this.#s;
    const { gdb, runner, kernel } = s.engine;
    this.#regs = await writeRegistersOver(gdb, s.vcpu, this.#regs, new Map([['rip', s.returnAddress]]));
    const sp = this.#regs.get('rsp')!;
    const hit = await runner.runUntil((h) => isThreadAt(kernel, h, s.target, s.returnAddress, sp), { timeout: 10_000, what: 'stub floor round' });
    s.adoptParked(hit);
    this.#regs = hit.regs;
  }

  /** After stub(): the thread is still the one parked at R on the session's vCPU. Untimed. */
  async check(): Promise<void> {
    const s = this.#s;
    const { gdb, kernel } = s.engine;
    const regs = await gdb.readRegisters({ thread: s.vcpu, timeout: 10_000 });
    if (!(await isThreadAt(kernel, { rip: regs.get('rip') ?? 0n, regs }, s.target, s.returnAddress, this.#slot + 8n))) {
      throw new Error('after the stub floor the thread is not where it was: the session cannot go on');
    }
  }
}

export async function runInjectBench(opts: InjectBenchOptions): Promise<Figure[]> {
  const { log } = opts;
  const container = opts.container ?? 'ticker';
  const calls = Number(process.env.VMICTL_BENCH_INJECT_CALLS ?? 1000);
  const acquires = Number(process.env.VMICTL_BENCH_INJECT_ACQUIRES ?? 5);
  const rounds = Number(process.env.VMICTL_BENCH_INJECT_ROUNDS ?? 300);
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
    const gdb = await vm.gdb();
    const block = Math.max(1, Number(process.env.VMICTL_BENCH_INJECT_BLOCK ?? 10));
    const per: number[] = [];
    const inj: number[] = [];
    const injBp: number[] = [];
    const run: number[] = [];
    const stub: number[] = [];
    let total = 0;
    let stepOvers = 0;
    let packets = 0;
    let flushes: number | undefined;
    try {
      for (let i = 0; i < 20; i++) await s.syscall('getpid');
      const before = { stepOvers: s.stats.stepOvers, packets: gdb.stats.packetsSent, flushes: await tbFlushes(vm) };
      const t0 = nowMs();
      for (let i = 0; i < calls; i++) {
        const c0 = nowMs();
        await s.syscall('getpid');
        per.push(nowMs() - c0);
      }
      total = nowMs() - t0;
      stepOvers = s.stats.stepOvers - before.stepOvers;
      packets = gdb.stats.packetsSent - before.packets;
      const after = await tbFlushes(vm);
      if (before.flushes !== undefined && after !== undefined) flushes = after - before.flushes;

      const floors = await Floors.open(vm, s);
      for (let done = 0; done < rounds; done += block) {
        const n = Math.min(block, rounds - done);
        for (let i = 0; i < n; i++) {
          const t = nowMs();
          await s.syscall('getpid');
          inj.push(nowMs() - t);
        }
        await s.withReturnBreakpoint(async () => {
          for (let i = 0; i < n; i++) {
            let t = nowMs();
            await s.syscall('getpid');
            injBp.push(nowMs() - t);
            await floors.sync();
            t = nowMs();
            await floors.run();
            run.push(nowMs() - t);
            t = nowMs();
            await floors.stub();
            stub.push(nowMs() - t);
            await floors.check();
          }
        });
      }
    } catch (err) {
      await s.close().catch((e: unknown) => log(`  (closing the session after a failure: ${(e as Error).message})`));
      throw err;
    }
    await s.close();
    const med = median(per);
    const ratio = median(inj) / median(run);
    log(`  caught by ${s.returnBy}${s.gadget === undefined ? '' : ` (syscall; ret at 0x${s.gadget.toString(16)})`}`);
    log(`  chain of ${calls} getpid in ${container} (pid ${s.target.pid}): median ${med.toFixed(2)} ms, p95 ${percentile(per, 95).toFixed(2)} ms, ${(calls / (total / 1000)).toFixed(0)} calls/s; per call ${(packets / calls).toFixed(2)} packets sent, ${(stepOvers / calls).toFixed(3)} step-overs of other processes${flushes === undefined ? '' : `, ${(flushes / calls).toFixed(2)} translation-cache flushes`}`);
    log(`  alternating blocks of ${block}, ${rounds} of each: injected getpid median ${median(inj).toFixed(2)} ms (p95 ${percentile(inj, 95).toFixed(2)}); floor (register write + continue + the guest running to the breakpoint) median ${median(run).toFixed(2)} ms (p95 ${percentile(run, 95).toFixed(2)}); stub floor (G + continue + stop at once, the thread not running) median ${median(stub).toFixed(2)} ms; injected getpid caught by the breakpoint median ${median(injBp).toFixed(2)} ms`);
    log(`  injected getpid / floor = ${ratio.toFixed(2)}x (goal <= ${GOAL_RATIO}x); / stub floor = ${(median(inj) / median(stub)).toFixed(2)}x; caught by the breakpoint / floor = ${(median(injBp) / median(run)).toFixed(2)}x`);
    return [
      { name: 'inject.getpid.median', value: median(inj), unit: 'ms', note: `caught by ${s.returnBy}`, baseline: { value: median(run), what: 'floor (register write + continue + breakpoint hit, guest running)' }, ratio: median(run) / median(inj), goal: { text: `<= ${GOAL_RATIO}x floor`, met: ratio <= GOAL_RATIO } },
      { name: 'inject.chain.median', value: med, unit: 'ms', note: `${calls} getpid in a row` },
      { name: 'inject.chain.p95', value: percentile(per, 95), unit: 'ms' },
      { name: 'inject.getpid.throughput', value: calls / (total / 1000), unit: 'calls/s' },
      { name: 'inject.acquire.median', value: median(acquireMs), unit: 'ms', note: `${container} makes a syscall at least every 100 ms` },
      { name: 'inject.floor.median', value: median(run), unit: 'ms' },
      { name: 'inject.getpid-by-breakpoint.median', value: median(injBp), unit: 'ms', note: 'caught by the breakpoint at R, interleaved with the floors' },
      { name: 'inject.stub-floor.median', value: median(stub), unit: 'ms' },
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
