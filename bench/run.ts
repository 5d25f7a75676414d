/**
 * The bench driver behind `make bench`: runs every benchmark against one test VM and prints a
 * summary line per figure, `bench: <name> <value> <unit> (baseline …, ratio …, goal …: ok|below goal)`.
 *
 *   VMICTL_QMP=unix:… VMICTL_GDB=unix:… node dist/bench/run.js
 *
 * Phases, in order (each needs the gdbstub or QEMU on its own, so none overlap):
 *   transport  bench/transport.ts as a child process (gdbstub round trip and read throughput)
 *   profile    `vmictl profile build` as a child process (time, peak RSS), and loading the profile
 *   memory     physical reads and KASLR search per backend (gdbstub, /proc/<tid>/mem, ELF dump)
 *   ps         vm.listContainers() per backend, `vmictl ps` end to end, and gdb walking the task list
 *   inject     injected getpid chain, thread acquisition, against the gdbstub floor (bench/inject.ts)
 *   integrity  protectFor() before one operation and a full `vmictl check`, per backend (bench/integrity.ts)
 *   auto-profile  building the profile from guest memory (kallsyms + BTF), and ps with it vs DWARF
 *   ops        cp of a 10 MB file and pause+unpause, against runc doing the same inside the guest
 *
 * `make bench` boots the test VM in its bench mode (kernel argument vmictl.bench=N, N container-like
 * groups of 20 tasks each; VMICTL_BENCH_GROUPS, default 50) so that ps is measured on ~1100 tasks.
 *
 * Environment: VMICTL_QMP and VMICTL_GDB (required), VMICTL_BENCH_ONLY (comma-separated phases),
 * VMICTL_BENCH_VMLINUX (debug vmlinux, default test-vms/build/vmlinux), and the knobs each phase
 * documents. Exits 0 when every phase ran, whether or not its goals were met; 1 if a phase failed.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Vm } from '../lib/vm';
import type { Profile } from '../lib/kernel/profile';
import { runMemoryBench } from './memory';
import { closeVm, makeDump, setRunning, vmRunning } from './common';
import { runChild, runProfileBench } from './profile';
import { runPsBench } from './ps';
import { runInjectBench } from './inject';
import { runIntegrityBench } from './integrity';
import { runAutoProfileBench } from './auto-profile';
import { runOpsBench } from './ops';
import { runDistroBench } from './distro';

/** One measured figure, as the summary prints it. */
export interface Figure {
  name: string;
  value: number;
  unit: string;
  /** What the value is compared with, in the same unit unless `unit` says otherwise. */
  baseline?: { value: number; unit?: string; what: string };
  /** The figure's own ratio to the baseline, oriented so that higher is better. */
  ratio?: number;
  goal?: { text: string; met: boolean };
  /** A remark for the human-readable part (not the summary). */
  note?: string;
}

/** Where each phase writes its human-readable lines. */
export type Log = (line: string) => void;

const PHASES = ['transport', 'profile', 'memory', 'ps', 'integrity', 'inject', 'ops', 'auto-profile', 'distro'] as const;
/** Phases for another guest, run only when VMICTL_BENCH_ONLY names them (make bench does, on that guest). */
const ON_REQUEST: readonly Phase[] = ['distro'];
type Phase = (typeof PHASES)[number];

const ROOT = path.resolve(__dirname, '../..');

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

/** The summary line of one figure. */
export function summaryLine(f: Figure): string {
  const base = f.baseline ? `${fmt(f.baseline.value)} ${f.baseline.unit ?? f.unit} ${f.baseline.what}` : 'none';
  const ratio = f.ratio === undefined ? '-' : `${fmt(f.ratio)}x`;
  const goal = f.goal ? `${f.goal.text}: ${f.goal.met ? 'ok' : 'below goal'}` : 'none';
  return `bench: ${f.name} ${fmt(f.value)} ${f.unit} (baseline ${base}, ratio ${ratio}, goal ${goal})`;
}

interface TransportResult {
  client: { rttUs: number; pipelinedMBps: number; serialMBps: number };
  baseline: { rttUs: number; pipelinedMBps: number; serialMBps: number };
}

/** bench/transport.ts against the VM's gdbstub; the VM is paused around it and restarted after. */
async function transportPhase(qmp: string, gdb: string, log: Log): Promise<{ figures: Figure[]; result: TransportResult }> {
  // transport.ts resumes a VM it found running with a final detach(), which QEMU 7.2 answered with
  // E22 here, before the result line was printed: keep it out of that path, restart the VM ourselves.
  const wasRunning = await vmRunning(qmp);
  await setRunning(qmp, false);
  let r;
  try {
    r = await runChild(process.execPath, [path.join(__dirname, 'transport.js')], { env: { ...process.env, VMICTL_GDB: gdb }, log, timeoutMs: 600_000 });
  } finally {
    if (wasRunning) await setRunning(qmp, true);
  }
  const json = r.stdout.split('\n').reverse().find((l) => l.startsWith('{') && l.includes('"baseline"'));
  if (!json) throw new Error(`transport bench printed no result (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`);
  if (r.code !== 0) log(`  transport bench exited ${r.code} after its result: ${r.stderr.trim().split('\n')[0]}`);
  const res = JSON.parse(json) as TransportResult & { dataIdentical?: boolean };
  if (res.dataIdentical === false) log('  WARNING: transport bench says the data differed between runs or sides');
  const goal = (ratio: number) => ({ text: '>= 0.90x baseline', met: ratio >= 0.9 });
  const rttRatio = res.baseline.rttUs / res.client.rttUs;
  const pipe = res.client.pipelinedMBps / res.baseline.pipelinedMBps;
  const serial = res.client.serialMBps / res.baseline.serialMBps;
  return {
    result: res,
    figures: [
      { name: 'transport.rtt', value: res.client.rttUs, unit: 'us', baseline: { value: res.baseline.rttUs, what: 'raw socket' }, ratio: rttRatio, goal: goal(rttRatio) },
      { name: 'transport.read.pipelined', value: res.client.pipelinedMBps, unit: 'MB/s', baseline: { value: res.baseline.pipelinedMBps, what: 'raw socket' }, ratio: pipe, goal: goal(pipe) },
      { name: 'transport.read.serial', value: res.client.serialMBps, unit: 'MB/s', baseline: { value: res.baseline.serialMBps, what: 'raw socket' }, ratio: serial, goal: goal(serial) },
    ],
  };
}

/** What the other phases need to know about the guest: its profile and KASLR slides. */
interface Guest {
  profile: Profile;
  virtualSlide: bigint;
  physicalSlide: bigint;
  banner: string;
}

async function discover(qmp: string, gdb: string): Promise<Guest> {
  const vm = await Vm.connect({ qmp, gdb, memory: 'auto' });
  try {
    const k = await vm.kernel();
    return { profile: k.profile, virtualSlide: k.kaslr.virtualSlide, physicalSlide: k.kaslr.physicalSlide, banner: k.kaslr.banner };
  } finally {
    await closeVm(vm, true);
  }
}

async function main(): Promise<number> {
  const qmp = process.env.VMICTL_QMP;
  const gdb = process.env.VMICTL_GDB;
  if (!qmp || !gdb) {
    console.error('bench: set VMICTL_QMP and VMICTL_GDB (make bench boots a VM and sets them)');
    return 2;
  }
  const only = (process.env.VMICTL_BENCH_ONLY ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const p of only) if (!(PHASES as readonly string[]).includes(p)) { console.error(`bench: unknown phase ${p} (${PHASES.join(', ')})`); return 2; }
  const wanted = (p: Phase) => only.includes(p) || (only.length === 0 && !ON_REQUEST.includes(p));
  const vmlinux = process.env.VMICTL_BENCH_VMLINUX ?? path.join(ROOT, 'test-vms/build/vmlinux');
  const log: Log = (line) => console.log(line);

  const dumpPath = path.join(os.tmpdir(), `vmictl-bench-${process.pid}.elf`);
  const removeDump = () => fs.rmSync(dumpPath, { force: true });
  process.on('exit', removeDump);
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    process.on(sig, () => { removeDump(); process.exit(code); });
  }

  const figures: Figure[] = [];
  const failed: string[] = [];
  const phase = async (name: Phase, f: () => Promise<Figure[]>) => {
    if (!wanted(name)) return;
    log(`\n== ${name}`);
    const t0 = Date.now();
    // a phase must leave the guest as it found it: one that leaves it stopped would also make the
    // next phase's guest commands hang, and be blamed on that phase
    const runningBefore = await vmRunning(qmp).catch(() => undefined);
    try {
      const got = await f();
      for (const fig of got) if (fig.note) log(`  note: ${fig.name}: ${fig.note}`);
      figures.push(...got);
    } catch (err) {
      failed.push(name);
      log(`  FAILED: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    }
    if (runningBefore && (await vmRunning(qmp).catch(() => true)) === false) {
      if (!failed.includes(name)) failed.push(name);
      log(`  FAILED: ${name} left the VM stopped (resumed now)`);
      await setRunning(qmp, true).catch((e: unknown) => log(`  cannot resume the VM: ${String(e)}`));
    }
    log(`  (${name} took ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  };

  log(`vmictl bench on ${os.hostname()}: node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), QMP ${qmp}, gdbstub ${gdb}`);
  let guest: Guest | undefined;
  try {
    guest = await discover(qmp, gdb);
    log(`guest: ${guest.banner}`);
    log(`profile ${guest.profile.source}; virtual slide 0x${guest.virtualSlide.toString(16)}, physical slide 0x${guest.physicalSlide.toString(16)}`);
  } catch (err) {
    log(`cannot open the guest kernel: ${err instanceof Error ? err.message : String(err)}`);
    failed.push('discover');
  }

  let transport: TransportResult | undefined;
  await phase('transport', async () => {
    const t = await transportPhase(qmp, gdb, log);
    transport = t.result;
    return t.figures;
  });

  await phase('profile', () => runProfileBench({ vmlinux, profilePath: guest?.profile.source, log }));

  let haveDump = false;
  const needDump = wanted('memory') || wanted('ps');
  if (guest && needDump) {
    // One snapshot for both phases, taken with the VM stopped; it stays stopped through the memory
    // phase so that every backend reads the very same bytes.
    const wasRunning = await vmRunning(qmp);
    try {
      await setRunning(qmp, false);
      const d = await makeDump(qmp, dumpPath);
      haveDump = true;
      log(`\ndump: ${(d.bytes / 1048576).toFixed(0)} MiB written by dump-guest-memory in ${(d.ms / 1000).toFixed(1)} s (${dumpPath}, removed at the end)`);
      figures.push({ name: 'dump.write', value: d.bytes / (d.ms / 1000) / 1e6, unit: 'MB/s' });
      const g = guest;
      await phase('memory', () => runMemoryBench({ qmp, gdb, dump: dumpPath, profile: g.profile, rawGdbMBps: transport?.baseline.pipelinedMBps, log }));
    } catch (err) {
      failed.push('dump');
      log(`cannot make the dump: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      if (wasRunning) await setRunning(qmp, true);
    }
  }

  if (guest) {
    const g = guest;
    await phase('ps', () => runPsBench({ qmp, gdb, dump: haveDump ? dumpPath : undefined, vmlinux, slide: g.virtualSlide, log }));
  }
  removeDump();
  await phase('integrity', () => runIntegrityBench({ qmp, gdb, vmlinux, log }));

  if (guest) await phase('inject', () => runInjectBench({ qmp, gdb, log }));

  // container operations (bench/ops.ts): needs the guest's control channel
  const control = process.env.VMICTL_CONTROL;
  if (control) await phase('ops', () => runOpsBench({ qmp, gdb, control, log }));

  await phase('auto-profile', () => runAutoProfileBench({ qmp, gdb, profileDirs: [path.join(ROOT, 'profiles')], log }));

  // the distro VM's operations against the engines' own (bench/distro.ts): its control channel too
  if (wanted('distro')) {
    if (!control) failed.push('distro (no VMICTL_CONTROL)');
    else await phase('distro', () => runDistroBench({ qmp, gdb, control, log }));
  }

  log('\n== summary');
  for (const f of figures) log(summaryLine(f));
  const below = figures.filter((f) => f.goal && !f.goal.met).length;
  const met = figures.filter((f) => f.goal?.met).length;
  log(`bench: ${figures.length} figures, ${met} goals met, ${below} below goal${failed.length ? `; FAILED: ${failed.join(', ')}` : ''}`);
  return failed.length ? 1 : 0;
}

if (require.main === module) {
  main().then(
    (code) => { process.exitCode = code; },
    (err: unknown) => {
      console.error(err instanceof Error ? err.stack ?? err.message : err);
      process.exitCode = 1;
    },
  );
}
