/**
 * ps benchmark: how long listing the containers takes, per memory backend, against gdb doing the
 * minimum a person would do by hand over the same gdbstub.
 *
 *   list       vm.listContainers({ brief: true }) — what `vmictl ps` reads (no command lines,
 *              executables or roots: ps shows none) — with the kernel already found (profile
 *              loaded, KASLR known) and every cache dropped before each run (the VM is resumed and
 *              stopped again, as between two `vmictl ps`); one warm-up, then the median of
 *              VMICTL_BENCH_PS_RUNS (5). Goals: < 0.5 s over the gdbstub, < 100 ms on the local fast path.
 *   full       the same with everything read (what `top` and `inspect` read): median of
 *              VMICTL_BENCH_PS_FULL_RUNS (3); no goal, shown for comparison.
 *   cli        `vmictl ps` as a child process, start to exit (node start-up, profile load, KASLR
 *              search, listing, rendering); median of VMICTL_BENCH_PS_CLI_RUNS (3).
 *   gdb        bench/gdb-baseline.py in `gdb -batch` with the DWARF vmlinux, symbols slid by the
 *              KASLR offset vmictl found: VMICTL_BENCH_GDB_RUNS (1) gdb processes, each resolving
 *              the types once and then walking the task list VMICTL_BENCH_GDB_WALKS times (default:
 *              as many as `list` runs, or 1 on a guest of more than 300 processes). The median
 *              walk (types already resolved) is the baseline for `list`; the whole gdb process
 *              (median) the baseline for `cli`. VMICTL_BENCH_GDB_RUNS=0 skips it (minutes on
 *              the bench VM): the figures then come without ratios.
 *              Goal: gdb walk / vmictl list >= 100x.
 *
 *   VMICTL_QMP=… VMICTL_GDB=… node dist/bench/ps.js [vmlinux]
 *   (standalone, the dump backend is measured only with VMICTL_BENCH_PS_DUMP=<file to write it to>)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Vm } from '../lib/vm';
import { parseSocketAddress } from '../lib/util/address';
import { tasksOf } from '../lib/containers/model';
import type { ContainerList } from '../lib/containers/list';
import { closeVm, makeDump, median, nowMs, setRunning, vmRunning } from './common';
import { runChild } from './profile';
import type { Figure, Log } from './run';

const GOAL_GDBSTUB_MS = 500;
const GOAL_FAST_MS = 100;
const GOAL_SPEEDUP = 100;

export interface PsBenchOptions {
  qmp: string;
  gdb: string;
  /** An ELF dump of the VM, for the dump backend; skipped when absent. */
  dump?: string;
  vmlinux: string;
  /** The KASLR virtual slide vmictl found: gdb loads the symbols with it. */
  slide: bigint;
  log: Log;
}

type Backend = 'gdbstub' | 'procmem' | 'dump';

function counts(l: ContainerList): { containers: number; processes: number; tasks: number } {
  const all = [l.host, ...l.containers];
  const processes = all.reduce((n, c) => n + c.processes.length, 0);
  const tasks = all.reduce((n, c) => n + c.processes.reduce((m, p) => m + tasksOf(p).length, 0), 0);
  return { containers: l.containers.length, processes, tasks };
}

interface ListResult {
  /** brief listings (as ps) */
  ms: number[];
  /** full listings (as top, inspect) */
  fullMs: number[];
  /** init pids of the containers found */
  initPids: number[];
  containers: number;
  processes: number;
  tasks: number;
  warnings: number;
}

async function timeList(opts: PsBenchOptions, backend: Backend, runs: number, fullRuns: number): Promise<ListResult> {
  const vm = backend === 'dump' ? await Vm.connect({ dump: opts.dump }) : await Vm.connect({ qmp: opts.qmp, gdb: opts.gdb, memory: backend });
  try {
    const warm = await vm.listContainers(); // finds the kernel, loads the profile, warms the JIT
    const timed = async (brief: boolean, n: number) => {
      const ms: number[] = [];
      let last = warm;
      for (let i = 0; i < n; i++) {
        // drop the page cache and the kernel's derived tables; a live VM runs a moment in between
        await vm.resume();
        await vm.pause();
        const t0 = nowMs();
        last = await vm.listContainers({ brief });
        ms.push(nowMs() - t0);
      }
      return { ms, last };
    };
    const { ms, last } = await timed(true, runs);
    const full = await timed(false, fullRuns);
    return { ms, fullMs: full.ms, ...counts(last), initPids: last.containers.map((c) => c.initPid), warnings: last.warnings.length };
  } finally {
    await closeVm(vm, true);
  }
}

interface GdbRun {
  wallMs: number;
  lookupMs: number;
  walkMs: number[];
  tasks: number;
  nodenames: string[];
}

/** The target argument gdb takes for a vmictl socket address. */
function gdbTarget(address: string): string {
  const a = parseSocketAddress(address);
  return a.kind === 'unix' ? a.path : `${a.host}:${a.port}`;
}

async function runGdb(opts: PsBenchOptions, walks: number): Promise<GdbRun> {
  const script = path.resolve(__dirname, '../../bench/gdb-baseline.py');
  if (!fs.existsSync(script)) throw new Error(`no gdb script at ${script}`);
  const args = [
    '-nx', '-batch',
    '-ex', 'set pagination off',
    '-ex', 'set confirm off',
    '-ex', `symbol-file -o 0x${opts.slide.toString(16)} ${opts.vmlinux}`,
    '-ex', `target remote ${gdbTarget(opts.gdb)}`,
    '-ex', `python WALKS=${walks}`,
    '-x', script,
  ];
  const r = await runChild('gdb', args, { timeoutMs: 900_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('GDB-BASELINE '));
  if (r.code !== 0 || !line) throw new Error(`gdb exited ${r.code ?? r.signal} without a result: ${(r.stderr || r.stdout).trim().split('\n').slice(-4).join(' / ')}`);
  const res = JSON.parse(line.slice('GDB-BASELINE '.length)) as { error?: string; lookupSeconds: number; walkSeconds: number[]; tasks: number; nodenames: string[] };
  if (res.error) throw new Error(`gdb script failed: ${res.error}`);
  return { wallMs: r.ms, lookupMs: res.lookupSeconds * 1000, walkMs: res.walkSeconds.map((x) => x * 1000), tasks: res.tasks, nodenames: res.nodenames };
}

async function timeCli(opts: PsBenchOptions, backend: Backend, runs: number): Promise<number[]> {
  const cli = path.resolve(__dirname, '../cli/main.js');
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const args = backend === 'dump' ? [cli, 'ps', '--dump', opts.dump!] : [cli, 'ps', '--memory', backend];
    const env = backend === 'dump' ? { ...process.env, VMICTL_QMP: '', VMICTL_GDB: '' } : { ...process.env, VMICTL_QMP: opts.qmp, VMICTL_GDB: opts.gdb };
    const r = await runChild(process.execPath, args, { env, timeoutMs: 300_000 });
    if (r.code !== 0) throw new Error(`vmictl ps (${backend}) exited ${r.code ?? r.signal}: ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`);
    ms.push(r.ms);
  }
  return ms;
}

/** Compares the listing with what the guest wrote at boot (VMICTL_GROUND_TRUTH), as a sanity check. */
function checkGroundTruth(lists: Map<Backend, ListResult>, log: Log): void {
  const file = process.env.VMICTL_GROUND_TRUTH;
  if (!file || !fs.existsSync(file)) return;
  try {
    const truth = JSON.parse(fs.readFileSync(file, 'utf8')) as { containers?: Array<{ initPid: number }>; tasks?: Array<{ pid: number; tgid: number }> };
    const procs = truth.tasks?.filter((t) => t.pid === t.tgid).length;
    const inits = (truth.containers ?? []).map((c) => c.initPid);
    log(`  ground truth (written by the guest at boot): ${procs ?? '?'} processes, ${inits.length} runtime containers`);
    for (const [b, l] of lists) {
      const missing = inits.filter((p) => !l.initPids.includes(p));
      if (missing.length) log(`  WARNING: ${b}: no container with init pid ${missing.join(', ')} (from the ground truth)`);
      if (procs !== undefined && Math.abs(l.processes - procs) > Math.max(5, procs * 0.05)) log(`  WARNING: ${b}: ${l.processes} processes listed, ${procs} at boot`);
    }
  } catch (err) {
    log(`  cannot read the ground truth ${file}: ${(err as Error).message}`);
  }
}

function goalMs(b: Backend): number | undefined {
  return b === 'gdbstub' ? GOAL_GDBSTUB_MS : b === 'procmem' ? GOAL_FAST_MS : undefined;
}

/** The figures without a gdb baseline: times and the ms goals only. */
function listFigures(lists: Map<Backend, ListResult>, clis: Map<Backend, number[]>): Figure[] {
  const figures: Figure[] = [];
  for (const [b, l] of lists) {
    const ms = median(l.ms);
    const goal = goalMs(b);
    figures.push({ name: `ps.list.${b}`, value: ms, unit: 'ms', goal: goal === undefined ? undefined : { text: `< ${goal} ms`, met: ms < goal } });
    figures.push({ name: `ps.full.${b}`, value: median(l.fullMs), unit: 'ms' });
    const c = clis.get(b);
    if (c) figures.push({ name: `ps.cli.${b}`, value: median(c), unit: 'ms' });
  }
  return figures;
}

export async function runPsBench(opts: PsBenchOptions): Promise<Figure[]> {
  const runs = Math.max(1, Number(process.env.VMICTL_BENCH_PS_RUNS ?? 5));
  const fullRuns = Math.max(1, Number(process.env.VMICTL_BENCH_PS_FULL_RUNS ?? 3));
  const cliRuns = Math.max(1, Number(process.env.VMICTL_BENCH_PS_CLI_RUNS ?? 3));
  const gdbRuns = Math.max(0, Number(process.env.VMICTL_BENCH_GDB_RUNS ?? 1));

  const { log } = opts;
  const backends: Backend[] = opts.dump ? ['gdbstub', 'procmem', 'dump'] : ['gdbstub', 'procmem'];

  const lists = new Map<Backend, ListResult>();
  const clis = new Map<Backend, number[]>();
  for (const b of backends) {
    try {
      const l = await timeList(opts, b, runs, fullRuns);
      lists.set(b, l);
      log(
        `  vmictl listContainers (as ps), ${b.padEnd(7)}: median ${median(l.ms).toFixed(1)} ms of ${runs} (${l.ms.map((x) => x.toFixed(0)).join(', ')} ms); ` +
          `${l.containers} containers, ${l.processes} processes, ${l.tasks} tasks${l.warnings ? `, ${l.warnings} warnings` : ''}`,
      );
      log(`  vmictl listContainers (full, as top/inspect), ${b.padEnd(7)}: median ${median(l.fullMs).toFixed(1)} ms of ${fullRuns} (${l.fullMs.map((x) => x.toFixed(0)).join(', ')} ms)`);
      const c = await timeCli(opts, b, cliRuns);
      clis.set(b, c);
      log(`  vmictl ps (whole process), ${b.padEnd(7)}: median ${median(c).toFixed(0)} ms of ${cliRuns} (${c.map((x) => x.toFixed(0)).join(', ')} ms)`);
    } catch (err) {
      // the fast path may be unavailable here; the others still count
      log(`  ${b}: ${(err as Error).message}`);
      if (b !== 'procmem') throw err;
    }
  }

  // a walk of a big guest is long enough to average itself out (and takes minutes under gdb)
  const processes = Math.max(0, ...[...lists.values()].map((l) => l.processes));
  const gdbWalks = Math.max(1, Number(process.env.VMICTL_BENCH_GDB_WALKS ?? (processes > 300 ? 1 : runs)));
  const gdbs: GdbRun[] = [];
  for (let i = 0; i < gdbRuns; i++) {
    const g = await runGdb(opts, gdbWalks);
    gdbs.push(g);
    log(
      `  gdb run ${i + 1}/${gdbRuns}: whole process ${(g.wallMs / 1000).toFixed(1)} s, type lookups ${(g.lookupMs / 1000).toFixed(1)} s, ` +
        `walks ${g.walkMs.map((x) => (x / 1000).toFixed(2)).join(', ')} s, ${g.tasks} processes, ${g.nodenames.length} nodenames (${g.nodenames.slice(0, 6).join(' ')}${g.nodenames.length > 6 ? ' …' : ''})`,
    );
  }
  checkGroundTruth(lists, log);
  if (gdbs.length === 0) {
    log('  gdb baseline skipped (VMICTL_BENCH_GDB_RUNS=0)');
    return listFigures(lists, clis);
  }
  const gWalk = median(gdbs.flatMap((g) => g.walkMs));
  const gWall = median(gdbs.map((g) => g.wallMs));
  const gLookup = median(gdbs.map((g) => g.lookupMs));
  log(
    `  gdb baseline: ${(gWall / 1000).toFixed(1)} s for the whole gdb process (median of ${gdbRuns}), of which ${(gLookup / 1000).toFixed(1)} s resolving the types; ` +
      `one walk of ${gdbs[0].tasks} processes ${(gWalk / 1000).toFixed(2)} s (median of ${gdbRuns * gdbWalks}, ${(gWalk / gdbs[0].tasks).toFixed(1)} ms each)`,
  );
  const gl = lists.get('gdbstub');
  if (gl && gl.processes !== gdbs[0].tasks) log(`  note: gdb walked ${gdbs[0].tasks} processes, vmictl found ${gl.processes} (the VM ran in between)`);

  const figures: Figure[] = [];
  for (const [b, l] of lists) {
    const ms = median(l.ms);
    const goal = goalMs(b);
    const speedup = gWalk / ms;
    figures.push({
      name: `ps.list.${b}`,
      value: ms,
      unit: 'ms',
      baseline: { value: gWalk, what: 'gdb walk' },
      ratio: speedup,
      goal: goal === undefined ? undefined : { text: `< ${goal} ms`, met: ms < goal },
    });
    if (b !== 'dump') {
      figures.push({
        name: `ps.speedup.${b}`,
        value: speedup,
        unit: 'x',
        baseline: { value: gWalk, unit: 'ms', what: 'gdb walk' },
        ratio: speedup,
        goal: { text: `>= ${GOAL_SPEEDUP}x`, met: speedup >= GOAL_SPEEDUP },
      });
    }
    figures.push({ name: `ps.full.${b}`, value: median(l.fullMs), unit: 'ms', baseline: { value: gWalk, what: 'gdb walk' }, ratio: gWalk / median(l.fullMs) });
    const c = clis.get(b);
    if (c) figures.push({ name: `ps.cli.${b}`, value: median(c), unit: 'ms', baseline: { value: gWall, what: 'whole gdb process' }, ratio: gWall / median(c) });
  }
  figures.push({ name: 'ps.gdb.walk', value: gWalk, unit: 'ms', note: `whole gdb process ${(gWall / 1000).toFixed(1)} s, type lookups ${(gLookup / 1000).toFixed(1)} s` });
  return figures;
}

if (require.main === module) {
  (async () => {
    const qmp = process.env.VMICTL_QMP;
    const gdb = process.env.VMICTL_GDB;
    if (!qmp || !gdb) throw new Error('set VMICTL_QMP and VMICTL_GDB');
    const vmlinux = process.argv[2] ?? path.resolve(__dirname, '../../test-vms/build/vmlinux');
    const vm = await Vm.connect({ qmp, gdb, memory: 'auto' });
    let slide: bigint;
    try {
      slide = (await vm.kernel()).kaslr.virtualSlide;
    } finally {
      await closeVm(vm, true);
    }
    const dump = process.env.VMICTL_BENCH_PS_DUMP || undefined;
    if (dump) {
      // a dump of the VM as it stands, stopped while it is written
      const wasRunning = await vmRunning(qmp);
      await setRunning(qmp, false);
      await makeDump(qmp, dump);
      if (wasRunning) await setRunning(qmp, true);
    }
    try {
      for (const f of await runPsBench({ qmp, gdb, dump, vmlinux, slide, log: (l) => console.log(l) })) console.log(`${f.name} ${f.value.toFixed(2)} ${f.unit}`);
    } finally {
      if (dump) fs.rmSync(dump, { force: true });
    }
  })().catch((err: unknown) => {
    console.error(err instanceof Error ? err.stack ?? err.message : err);
    process.exitCode = 1;
  });
}
