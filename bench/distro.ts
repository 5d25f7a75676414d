/**
 * The operations benchmark on the distro VM (Debian 12, systemd, containers made by docker and
 * podman; test-vms/distro/): `ps`, `exec web -- /bin/true`, `cp` of a 10 MB file out of web and
 * pause + unpause of web, each beside the same operation done by the engine inside the guest
 * (`docker ps`, `docker exec`, `docker cp`, `docker pause` + `docker unpause`), that one timed by
 * the guest's own clock so that the serial transfer of the command is not counted. web's only
 * process is httpd blocked in accept and every root-namespace thread sleeps: this is the quiet
 * guest of issue 16, where catching a thread is hardest. The median of VMICTL_BENCH_OPS_RUNS (3)
 * runs each.
 *
 *   VMICTL_QMP=… VMICTL_GDB=… VMICTL_CONTROL=unix:… node dist/bench/distro.js
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../lib/vm';
import { resolveContainer } from '../lib/containers/resolve';
import { copyFromContainer, execInContainer, pauseContainer, unpauseContainer } from '../lib/ops';
import { control, median, nowMs } from './common';
import type { Figure, Log } from './run';

const SIZE = 10_000_000;
const FILE = '/tmp/vmictl-bench10';
const CONTAINER = 'web';

export interface DistroBenchOptions {
  qmp: string;
  gdb: string;
  control: string;
  log: Log;
}

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = nowMs();
  await f();
  return nowMs() - t0;
}

/** `command` run in the guest, timed there: its own clock, from before to after it (ms). */
async function inGuest(address: string, command: string): Promise<number> {
  const out = await control(address, `s=$(date +%s%N); ${command} >/dev/null 2>&1 || exit 1; e=$(date +%s%N); echo "ms $(( (e - s) / 1000 ))"`);
  const m = /^ms (\d+)$/m.exec(out);
  if (!m) throw new Error(`no time from the guest for ${command}: ${JSON.stringify(out.slice(-200))}`);
  return Number(m[1]) / 1000;
}

export async function runDistroBench(opts: DistroBenchOptions): Promise<Figure[]> {
  const runs = Math.max(1, Number(process.env.VMICTL_BENCH_OPS_RUNS ?? 3));
  const { log } = opts;
  // vmictl knows docker containers by id (names are the engine's, in its own files)
  const id = (await control(opts.control, `docker inspect -f '{{.Id}}' ${CONTAINER}`)).trim();
  if (!/^[0-9a-f]{64}$/.test(id)) throw new Error(`docker inspect gave no id for ${CONTAINER}: ${JSON.stringify(id)}`);
  await control(opts.control, `docker exec ${CONTAINER} sh -c 'head -c ${SIZE} /dev/urandom > ${FILE}'`);
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-bench-distro-'));
  const vm = await Vm.connect({ qmp: opts.qmp, gdb: opts.gdb });
  const series: Record<'ps' | 'psBase' | 'ex' | 'exBase' | 'cp' | 'cpBase' | 'pu' | 'puBase', number[]> = { ps: [], psBase: [], ex: [], exBase: [], cp: [], cpBase: [], pu: [], puBase: [] };
  try {
    for (let i = 0; i < runs; i++) {
      series.ps.push(await timed(async () => {
        // as `vmictl ps` does: the VM stopped for the listing, running again after it
        await vm.pause();
        const list = await vm.listContainers();
        await vm.resume();
        resolveContainer(list.containers, id);
      }));
      series.psBase.push(await inGuest(opts.control, 'docker ps'));
      series.ex.push(await timed(async () => {
        const r = await execInContainer(vm, { container: id, command: ['/bin/true'], journal: false, timeout: 120_000 });
        if (r.exitCode !== 0) throw new Error(`exec /bin/true exited ${r.exitCode}`);
      }));
      series.exBase.push(await inGuest(opts.control, `docker exec ${CONTAINER} /bin/true`));
      const out = join(dir, `copy${i}`);
      series.cp.push(await timed(() => copyFromContainer(vm, id, FILE, out, { journal: false, timeout: 120_000 })));
      if (statSync(out).size !== SIZE) throw new Error(`cp wrote ${statSync(out).size} bytes, not ${SIZE}`);
      series.cpBase.push(await inGuest(opts.control, `docker cp ${CONTAINER}:${FILE} /tmp/vmictl-bench-out && rm -f /tmp/vmictl-bench-out`));
      series.pu.push(await timed(async () => {
        await pauseContainer(vm, id, { journal: false });
        await unpauseContainer(vm, id, { journal: false });
      }));
      series.puBase.push(await inGuest(opts.control, `docker pause ${CONTAINER} && docker unpause ${CONTAINER}`));
      const ms = (k: keyof typeof series) => series[k][i].toFixed(0);
      log(`  run ${i + 1}: ps ${ms('ps')} ms (docker ps ${ms('psBase')}), exec /bin/true ${ms('ex')} ms (docker exec ${ms('exBase')}), cp ${ms('cp')} ms (docker cp ${ms('cpBase')}), pause+unpause ${ms('pu')} ms (docker ${ms('puBase')})`);
    }
  } finally {
    await vm.close();
    rmSync(dir, { recursive: true, force: true });
    await control(opts.control, `docker exec ${CONTAINER} rm -f ${FILE}`).catch(() => undefined);
  }
  const m = (k: keyof typeof series) => median(series[k]);
  const mbps = (ms: number) => SIZE / (ms / 1000) / 1e6;
  return [
    { name: 'distro.ps', value: m('ps'), unit: 'ms', baseline: { value: m('psBase'), what: 'docker ps in the guest' }, ratio: m('psBase') / m('ps') },
    { name: 'distro.exec.true', value: m('ex'), unit: 'ms', baseline: { value: m('exBase'), what: 'docker exec /bin/true in the guest' }, ratio: m('exBase') / m('ex'), goal: { text: 'within 2x docker exec', met: m('ex') <= 2 * m('exBase') } },
    { name: 'distro.cp.read10MB', value: mbps(m('cp')), unit: 'MB/s', baseline: { value: mbps(m('cpBase')), what: 'docker cp in the guest' }, ratio: m('cpBase') / m('cp'), goal: { text: '>= 5 MB/s', met: mbps(m('cp')) >= 5 } },
    { name: 'distro.pause+unpause', value: m('pu'), unit: 'ms', baseline: { value: m('puBase'), what: 'docker pause + unpause in the guest' }, ratio: m('puBase') / m('pu') },
  ];
}

if (require.main === module) {
  const { VMICTL_QMP: qmp, VMICTL_GDB: gdb, VMICTL_CONTROL: ctl } = process.env;
  if (!qmp || !gdb || !ctl) {
    console.error('bench distro: set VMICTL_QMP, VMICTL_GDB and VMICTL_CONTROL of the distro VM');
    process.exitCode = 2;
  } else {
    runDistroBench({ qmp, gdb, control: ctl, log: (l) => console.log(l) }).then(
      (figs) => { for (const f of figs) console.log(JSON.stringify(f)); },
      (err: unknown) => { console.error(err); process.exitCode = 1; },
    );
  }
}
