// cp and check draw the one progress line on a terminal stderr, wipe it before what they print
// next (the summary, or the error), and draw nothing with --json or when stderr is not a terminal.
// The real CLI runs; the operations below it are replaced by ones that report progress.
import t from 'tap';
import * as errors from '../../lib/errors';
import type { CopyReport } from '../../lib/ops';
import type { CheckOptions, CheckReport } from '../../lib/integrity/check';
import { captureMain, type Main } from '../helpers/run-cli';

const QMP = ['--qmp', 'unix:/nonexistent/qmp.sock'];
const MiB = 1048576;

const report: CopyReport = { files: 1, directories: 0, symlinks: 0, bytes: 4 * MiB, skipped: [], errors: [], dropped: { skipped: 0, errors: 0 } } as unknown as CopyReport;
let checkFails = false;

const { main } = t.mockRequire<{ main: Main }>('../../cli/main', {
  '../../lib/errors': errors,
  '../../cli/session': { withVm: (_flags: unknown, fn: (vm: unknown, signal: AbortSignal) => unknown) => fn({}, new AbortController().signal) },
  '../../lib/ops': t.createMock(require('../../lib/ops') as Record<string, unknown>, {
    async copyFromContainer(_vm: unknown, _c: string, _p: string, _d: string, opts: { onProgress?: (bytes: number, total?: number) => void }) {
      for (let i = 0; i <= 4; i++) opts.onProgress?.(i * MiB, 4 * MiB);
      return report;
    },
  }),
  '../../lib/integrity/check': t.createMock(require('../../lib/integrity/check') as Record<string, unknown>, {
    async checkKernel(_vm: unknown, opts: CheckOptions): Promise<CheckReport> {
      opts.onProgress?.(0, 2, 'sys_call_table');
      await new Promise((r) => setImmediate(r));
      opts.onProgress?.(1, 2, 'IDT');
      if (checkFails) throw new errors.VmiError('EIO', 'the guest went away');
      return { findings: [], checked: { functions: 1, syscallTableEntries: 2, textBytes: 3, patchSites: 4, idtGates: 256, tracingAttachments: 0 }, mode: 'vmlinux', ms: 1 };
    },
  }),
});

/** Runs the CLI with stderr a terminal of `columns` columns (or not a terminal). */
async function run(tty: boolean, args: string[]) {
  const saved = { isTTY: process.stderr.isTTY, columns: process.stderr.columns };
  Object.assign(process.stderr, { isTTY: tty, columns: 60 });
  try {
    return await captureMain(main, args);
  } finally {
    Object.assign(process.stderr, saved);
  }
}

const WIPE = '\r\x1b[K';

t.test('cp on a terminal: a bytes line, wiped before the summary', async (t) => {
  const r = await run(true, ['cp', ...QMP, 'web:/big', '/tmp/nonexistent-dir/big']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /^\rcopying \[[#.]+\] 0% 0\.0\/4\.0 MiB/, 'the first update is drawn at once');
  const wiped = r.stderr.lastIndexOf(WIPE);
  t.ok(wiped > 0, 'the line is wiped');
  t.equal(r.stderr.indexOf('vmictl: copied'), wiped + WIPE.length, 'the summary starts on the wiped line');
  t.notOk(/\r[^\n]*\n/.test(r.stderr.slice(0, wiped)), 'no line break while the bar is up');
});

t.test('cp --json, --no-progress, or stderr not a terminal: no progress line', async (t) => {
  for (const [tty, extra] of [[true, ['--json']], [true, ['--no-progress']], [false, []]] as const) {
    const r = await run(tty, ['cp', ...QMP, ...extra, 'web:/big', '/tmp/nonexistent-dir/big']);
    t.equal(r.code, 0);
    t.notOk(r.stderr.includes('\r'), `${extra.join(' ') || 'not a terminal'}: no \\r on stderr`);
  }
});

t.test('check on a terminal: steps, wiped before the result and before an error', async (t) => {
  checkFails = false;
  const ok = await run(true, ['check', ...QMP]);
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stderr, /^\rchecking \[\.+\] 0% 0\/2 steps: sys_call_table/, 'the step is named');
  t.ok(ok.stderr.endsWith(WIPE), 'wiped when done');
  t.match(ok.stdout, /0 finding\(s\)/);

  checkFails = true;
  const failed = await run(true, ['check', ...QMP]);
  t.not(failed.code, 0);
  const wiped = failed.stderr.lastIndexOf(WIPE);
  t.ok(wiped > 0);
  t.match(failed.stderr.slice(wiped + WIPE.length), /^vmictl: the guest went away \[EIO\]\n$/, 'the error starts on a clean line');

  checkFails = false;
  const json = await run(true, ['check', ...QMP, '--json']);
  t.notOk(json.stderr.includes('\r'), '--json: no progress line');
});
