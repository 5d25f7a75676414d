/**
 * Profile build benchmark: `vmictl profile build --vmlinux … -o …` as a child process, as a user
 * runs it. Its summary line gives the build time and the peak RSS it measured itself
 * (getrusage); the wall time seen from outside (node start-up included) is reported with it.
 *
 *   node dist/bench/profile.js [vmlinux]
 *
 * Environment: VMICTL_BENCH_PROFILE_RUNS (default 1; the median is kept).
 * Also holds runChild(), the child-process helper the other benchmarks share.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { median } from './common';
import type { Figure, Log } from './run';

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit. */
  ms: number;
}

/** Runs a child process, echoing its stdout lines indented through `log`; resolves with all of it. */
export function runChild(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; log?: Log; timeoutMs?: number } = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let pending = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (!opts.log) return;
      pending += d;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) opts.log(`  | ${l}`);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGTERM'), opts.timeoutMs) : undefined;
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (opts.log && pending) opts.log(`  | ${pending}`);
      resolve({ code, signal, stdout, stderr, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
    });
  });
}

/** `… in 9.2 s, peak RSS 375 MiB` at the end of the build's summary line. */
const SUMMARY = /in ([\d.]+) s, peak RSS (\d+) MiB/;

export interface ProfileBenchOptions {
  vmlinux: string;
  /** A profile to time loading, as every command does first (fresh process each time, median of 3). */
  profilePath?: string;
  runs?: number;
  log: Log;
}

export async function runProfileBench(opts: ProfileBenchOptions): Promise<Figure[]> {
  const runs = Math.max(1, opts.runs ?? Number(process.env.VMICTL_BENCH_PROFILE_RUNS ?? 1));
  if (!fs.existsSync(opts.vmlinux)) throw new Error(`no debug vmlinux at ${opts.vmlinux}`);
  const size = fs.statSync(opts.vmlinux).size;
  const cli = path.resolve(__dirname, '../cli/main.js');
  const out = path.join(os.tmpdir(), `vmictl-bench-profile-${process.pid}.json`);
  const seconds: number[] = [];
  const walls: number[] = [];
  const peaks: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const r = await runChild(process.execPath, [cli, 'profile', 'build', '--vmlinux', opts.vmlinux, '-o', out], { log: opts.log, timeoutMs: 900_000 });
      if (r.code !== 0) throw new Error(`profile build exited ${r.code ?? r.signal}: ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`);
      const m = SUMMARY.exec(r.stdout);
      if (!m) throw new Error(`profile build printed no summary line: ${r.stdout.trim()}`);
      seconds.push(Number(m[1]));
      peaks.push(Number(m[2]));
      walls.push(r.ms / 1000);
      fs.rmSync(out, { force: true });
    }
  } finally {
    fs.rmSync(out, { force: true });
  }
  const s = median(seconds);
  const wall = median(walls);
  const peak = median(peaks);
  opts.log(`profile build of ${(size / 1048576).toFixed(0)} MiB vmlinux, median of ${runs}: ${s.toFixed(1)} s as it reports itself, ${wall.toFixed(1)} s wall (process start to exit), peak RSS ${peak} MiB`);
  const figures: Figure[] = [
    { name: 'profile.build', value: s, unit: 's', note: `wall time with node start-up and exit: ${wall.toFixed(1)} s` },
    { name: 'profile.build.peak-rss', value: peak, unit: 'MiB' },
  ];
  if (opts.profilePath) figures.push(await timeLoad(opts.profilePath, opts.log));
  return figures;
}

/** Profile.load() in a fresh node process (cold, as in a CLI command), timed inside it. */
async function timeLoad(file: string, log: Log): Promise<Figure> {
  const lib = path.resolve(__dirname, '../lib/kernel/profile');
  const code =
    `const t0 = process.hrtime.bigint(); const { Profile } = require(${JSON.stringify(lib)}); ` +
    `const p = Profile.load(${JSON.stringify(file)}); ` +
    `console.log('LOAD', Number(process.hrtime.bigint() - t0) / 1e6, p.counts.userTypes, process.resourceUsage().maxRSS)`;
  const ms: number[] = [];
  let rssKiB = 0;
  for (let i = 0; i < 3; i++) {
    const r = await runChild(process.execPath, ['-e', code], { timeoutMs: 120_000 });
    const m = /^LOAD ([\d.]+) (\d+) (\d+)/m.exec(r.stdout);
    if (r.code !== 0 || !m) throw new Error(`loading ${file} failed: ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`);
    ms.push(Number(m[1]));
    rssKiB = Math.max(rssKiB, Number(m[3]));
  }
  const size = fs.statSync(file).size;
  log(`profile load of ${path.basename(file)} (${(size / 1048576).toFixed(0)} MiB) in a fresh process: median ${median(ms).toFixed(0)} ms of 3 (${ms.map((x) => x.toFixed(0)).join(', ')} ms), peak RSS ${(rssKiB / 1024).toFixed(0)} MiB`);
  return { name: 'profile.load', value: median(ms), unit: 'ms' };
}

if (require.main === module) {
  const vmlinux = process.argv[2] ?? path.resolve(__dirname, '../../test-vms/build/vmlinux');
  runProfileBench({ vmlinux, log: (l) => console.log(l) }).then(
    (figs) => { for (const f of figs) console.log(`${f.name} ${f.value} ${f.unit}`); },
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exitCode = 1;
    },
  );
}
