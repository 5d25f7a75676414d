// The CI run of every fuzz harness (make fuzz runs them longer): FUZZ_CI_RUNS inputs each (at least
// 10,000), with a fixed seed so a failure replays. A finding fails the test and its input is saved
// under test/fuzz/findings/<harness>/ (copy it to test/fuzz/corpus/<harness>/ once fixed).
// The time bound per input is generous here (the machine may be loaded): hangs are what it catches.
import * as path from 'node:path';
import t from 'tap';
import { fuzz } from './engine';
import { HARNESSES } from './harnesses';

const RUNS = Math.max(10_000, Number(process.env.FUZZ_CI_RUNS ?? 10_000));
const SEED = Number(process.env.FUZZ_SEED ?? 20261128);

for (const h of HARNESSES) {
  t.test(h.name, async (t) => {
    const stats = await fuzz({ ...h, slowMs: Math.max(h.slowMs ?? 0, 10_000) }, {
      runs: RUNS,
      seed: SEED,
      hangMs: 60_000,
      findingsDir: path.join(__dirname, 'findings'),
    });
    t.comment(`${h.name}: ${stats.execs} inputs, ${stats.execsPerSecond.toFixed(0)}/s, slowest ${stats.slowestMs.toFixed(0)} ms`);
    t.equal(stats.execs, RUNS, `${RUNS} inputs run`);
    for (const f of stats.findings) t.fail(`${f.kind}: ${f.message}\n  input saved to ${f.file ?? '(not saved)'}`);
    t.equal(stats.findings.length, 0, 'no findings');
    await h.close?.();
  });
}
