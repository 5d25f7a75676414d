/**
 * Container operations benchmark: end-to-end time of `exec ticker -- /bin/true`, of reading a 10 MB
 * file out of the ticker container with cp (library call, one injection session) and of
 * pause+unpause, against the same operations done inside the guest over its serial control channel
 * (`runc exec ticker /bin/true`, `runc exec ticker cat FILE`, `runc pause` + `runc resume`, timed
 * from the host, serial transfer included). The median of VMICTL_BENCH_OPS_RUNS (3) runs each.
 * Goals (issue 7): exec within 2 times the in-guest `runc exec`, cp at least 5 MB/s on the gdbstub.
 *
 *   VMICTL_QMP=… VMICTL_GDB=… VMICTL_CONTROL=unix:… node dist/bench/ops.js
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../lib/vm';
import { copyFromContainer, execInContainer, pauseContainer, unpauseContainer } from '../lib/ops';
import { control, median, nowMs } from './common';
import type { Figure, Log } from './run';

const SIZE = 10_000_000;
const GOAL_MBPS = 5;
const GOAL_EXEC_RATIO = 2;

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = nowMs();
  await f();
  return nowMs() - t0;
}

export interface OpsBenchOptions {
  qmp: string;
  gdb: string;
  control: string;
  log: Log;
}

export async function runOpsBench(opts: OpsBenchOptions): Promise<Figure[]> {
  const runs = Math.max(1, Number(process.env.VMICTL_BENCH_OPS_RUNS ?? 3));
  const { log } = opts;
  const pid = Number(/"pid":\s*(\d+)/.exec(await control(opts.control, 'runc state ticker; echo'))![1]);
  const file = `/proc/${pid}/root/tmp/vmictl-bench10`;
  await control(opts.control, `head -c ${SIZE} /dev/urandom > ${file}`);
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-bench-ops-'));
  const vm = await Vm.connect({ qmp: opts.qmp, gdb: opts.gdb });
  try {
    const cp: number[] = [];
    const cpBase: number[] = [];
    const pu: number[] = [];
    const puBase: number[] = [];
    const ex: number[] = [];
    const exBase: number[] = [];
    for (let i = 0; i < runs; i++) {
      ex.push(await timed(async () => {
        const r = await execInContainer(vm, { container: 'ticker', command: ['/bin/true'], journal: false });
        if (r.exitCode !== 0) throw new Error(`exec /bin/true exited ${r.exitCode}`);
      }));
      exBase.push(await timed(() => control(opts.control, 'runc exec ticker /bin/true')));
      cp.push(await timed(() => copyFromContainer(vm, 'ticker', '/tmp/vmictl-bench10', join(dir, `copy${i}`), { journal: false })));
      cpBase.push(await timed(() => control(opts.control, 'runc exec ticker cat /tmp/vmictl-bench10 > /dev/null')));
      pu.push(await timed(async () => {
        await pauseContainer(vm, 'ticker', { journal: false });
        await unpauseContainer(vm, 'ticker', { journal: false });
      }));
      puBase.push(await timed(() => control(opts.control, 'runc pause ticker && runc resume ticker')));
      log(`  run ${i + 1}: exec /bin/true ${ex[i].toFixed(0)} ms (runc exec in guest ${exBase[i].toFixed(0)} ms)`);
      log(`  run ${i + 1}: cp ${cp[i].toFixed(0)} ms (in guest ${cpBase[i].toFixed(0)} ms), pause+unpause ${pu[i].toFixed(0)} ms (in guest ${puBase[i].toFixed(0)} ms)`);
    }
    const cpMBps = SIZE / (median(cp) / 1000) / 1e6;
    const baseMBps = SIZE / (median(cpBase) / 1000) / 1e6;
    const exRatio = median(ex) / median(exBase);
    return [
      { name: 'ops.exec.true', value: median(ex), unit: 'ms', baseline: { value: median(exBase), what: 'runc exec /bin/true in the guest' }, ratio: 1 / exRatio, goal: { text: `within ${GOAL_EXEC_RATIO}x runc exec`, met: exRatio <= GOAL_EXEC_RATIO } },
      { name: 'ops.cp.read10MB', value: cpMBps, unit: 'MB/s', baseline: { value: baseMBps, what: 'runc exec cat in the guest' }, ratio: cpMBps / baseMBps, goal: { text: `>= ${GOAL_MBPS} MB/s`, met: cpMBps >= GOAL_MBPS } },
      { name: 'ops.pause+unpause', value: median(pu), unit: 'ms', baseline: { value: median(puBase), what: 'runc pause + resume in the guest' }, ratio: median(puBase) / median(pu) },
    ];
  } finally {
    await vm.close();
    rmSync(dir, { recursive: true, force: true });
    await control(opts.control, `rm -f ${file}`).catch(() => undefined);
  }
}

if (require.main === module) {
  const { VMICTL_QMP: qmp, VMICTL_GDB: gdb, VMICTL_CONTROL: ctl } = process.env;
  if (!qmp || !gdb || !ctl) {
    console.error('bench ops: set VMICTL_QMP, VMICTL_GDB and VMICTL_CONTROL');
    process.exitCode = 2;
  } else {
    runOpsBench({ qmp, gdb, control: ctl, log: (l) => console.log(l) }).then(
      (figs) => { for (const f of figs) console.log(JSON.stringify(f)); },
      (err: unknown) => { console.error(err); process.exitCode = 1; },
    );
  }
}
