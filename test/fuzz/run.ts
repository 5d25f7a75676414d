/**
 * `make fuzz`: runs each harness (or those named on the command line) for FUZZ_TIME seconds or
 * FUZZ_RUNS inputs, prints executions per second and findings, and saves each finding's input
 * under test/fuzz/findings/<harness>/ for replay (copy it to test/fuzz/corpus/<harness>/ to make it
 * a regression test). Exits 1 when anything was found.
 */
import { fuzz, sourcePath } from './engine';
import { HARNESSES } from './harnesses';

async function main(): Promise<number> {
  const names = process.argv.slice(2);
  const selected = names.length > 0 ? HARNESSES.filter((h) => names.includes(h.name)) : HARNESSES;
  if (selected.length === 0) {
    process.stderr.write(`fuzz: no harness named ${names.join(', ')}; there are ${HARNESSES.map((h) => h.name).join(', ')}\n`);
    return 2;
  }
  const runs = process.env.FUZZ_RUNS ? Number(process.env.FUZZ_RUNS) : undefined;
  const seconds = Number(process.env.FUZZ_TIME ?? 60);
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 0x7fffffff);
  // findings go next to the sources, not into dist/ (this file also runs compiled)
  const findingsDir = process.env.FUZZ_FINDINGS ?? sourcePath('test', 'fuzz', 'findings');
  process.stdout.write(`fuzz: seed ${seed} (FUZZ_SEED=${seed} replays this run), ${runs !== undefined ? `${runs} inputs` : `${seconds} s`} per harness\n`);
  let total = 0;
  for (const h of selected) {
    const stats = await fuzz(h, { seed, runs, timeMs: runs !== undefined ? undefined : seconds * 1000, findingsDir });
    total += stats.findings.length;
    process.stdout.write(`${h.name.padEnd(20)} ${String(stats.execs).padStart(9)} execs  ${stats.execsPerSecond.toFixed(0).padStart(7)} exec/s  ` +
      `slowest ${stats.slowestMs.toFixed(1)} ms  heap ${(stats.heapGrowth / 2 ** 20).toFixed(1)} MiB  findings ${stats.findings.length}\n`);
    for (const f of stats.findings) {
      process.stdout.write(`  ${f.kind}: ${f.message.split('\n').join('\n    ')}\n  input: ${f.file ?? '(not saved)'}\n`);
    }
    await h.close?.();
  }
  process.stdout.write(`fuzz: ${total} finding(s)\n`);
  return total > 0 ? 1 : 0;
}

main().then((code) => { process.exitCode = code; }, (err) => { process.stderr.write(`fuzz: ${(err as Error).stack}\n`); process.exitCode = 2; });
