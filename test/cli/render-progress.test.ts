import t from 'tap';
import { progressBar, progressLine, REDRAW_MS, type ProgressClock, type ProgressStream } from '../../cli/render/progress';
import { displayWidth, loadDisplayWidth } from '../../cli/render/width';

t.before(loadDisplayWidth);

class FakeTerminal implements ProgressStream {
  readonly writes: string[] = [];
  constructor(readonly isTTY: boolean, readonly columns?: number) {}
  write(text: string): boolean {
    this.writes.push(text);
    return true;
  }
  /** The text of each redraw, without the '\r' before it and the erase-to-end-of-line after. */
  get lines(): string[] {
    return this.writes.filter((w) => w !== '\r\x1b[K').map((w) => w.replace(/^\r/, '').replace(/\x1b\[K$/, ''));
  }
}

/** A clock that moves only when told, and timers that fire only when told. */
class FakeClock implements ProgressClock {
  t = 0;
  pending: Array<{ fn: () => void; cancelled: boolean }> = [];
  now(): number {
    return this.t;
  }
  later(fn: () => void, _ms: number): () => void {
    const timer = { fn, cancelled: false };
    this.pending.push(timer);
    return () => { timer.cancelled = true; };
  }
  /** Fires the timers that were not cancelled. */
  fire(): void {
    const due = this.pending.filter((p) => !p.cancelled);
    this.pending = [];
    for (const p of due) p.fn();
  }
}

t.test('not a terminal: nothing is written', async (t) => {
  for (const isTTY of [false, undefined]) {
    const out = new FakeTerminal(false, 80);
    if (isTTY === undefined) delete (out as { isTTY?: boolean }).isTTY;
    const clock = new FakeClock();
    const bar = progressBar({ label: 'copying', unit: 'bytes', stream: out, clock });
    bar.update(10, 100);
    clock.t = 1000;
    bar.update(50, 100);
    clock.fire();
    bar.finish();
    t.same(out.writes, [], `isTTY ${isTTY}`);
  }
});

t.test('--json, -q/--quiet, --no-progress, or hidden: nothing on a terminal either', async (t) => {
  const cases = [{ flags: { json: true } }, { flags: { quiet: true } }, { flags: { progress: false } }, { hidden: true }];
  for (const c of cases) {
    const out = new FakeTerminal(true, 80);
    const bar = progressBar({ label: 'x', unit: 'steps', stream: out, clock: new FakeClock(), ...c });
    bar.update(1, 2, 'one');
    bar.finish();
    t.same(out.writes, [], JSON.stringify(c));
  }
  const out = new FakeTerminal(true, 80);
  const bar = progressBar({ label: 'x', unit: 'steps', stream: out, clock: new FakeClock(), flags: { json: false, quiet: false, progress: true } });
  bar.update(1, 2, 'one');
  t.equal(out.writes.length, 1, 'the same flags turned off draw the line');
});

t.test('a terminal: drawn in place, wiped by finish, and never written to after it', async (t) => {
  const out = new FakeTerminal(true, 80);
  const clock = new FakeClock();
  const bar = progressBar({ label: 'copying', unit: 'bytes', stream: out, clock });
  bar.update(0, 2 * 1048576);
  t.equal(out.writes.length, 1);
  t.match(out.writes[0], /^\rcopying \[\.+\] 0% 0\.0\/2\.0 MiB\x1b\[K$/, 'redrawn from the start of the line, the rest of it erased');
  clock.t = 1000;
  bar.update(1048576, 2 * 1048576);
  const m = /^copying \[(#+)(\.+)\] 50% 1\.0\/2\.0 MiB 1\.0 MiB\/s ETA 0:01$/.exec(out.lines[1]!);
  t.ok(m, `bar, percentage, amounts, rate and ETA: ${out.lines[1]}`);
  t.equal(m?.[1]!.length, m?.[2]!.length, 'the bar is half full');
  t.equal(displayWidth(out.lines[1]!), 79, 'a bar narrower than its most fills the line to the last column but one');
  clock.t = 1050;
  bar.update(1.5 * 1048576, 2 * 1048576);
  t.equal(clock.pending.length, 1, 'a redraw is pending');
  bar.finish();
  t.equal(out.writes.at(-1), '\r\x1b[K', 'finish wipes the line');
  const n = out.writes.length;
  clock.fire();
  bar.update(2 * 1048576, 2 * 1048576);
  clock.t = 5000;
  bar.update(2 * 1048576, 2 * 1048576);
  bar.finish();
  t.equal(out.writes.length, n, 'nothing after finish: not the pending redraw, not an update, not a second finish');
});

t.test('finish before anything was drawn writes nothing', async (t) => {
  const out = new FakeTerminal(true, 80);
  progressBar({ label: 'x', unit: 'bytes', stream: out, clock: new FakeClock() }).finish();
  t.same(out.writes, []);
});

t.test('an error in the middle: finish in a finally wipes the line before the message', async (t) => {
  const out = new FakeTerminal(true, 80);
  const bar = progressBar({ label: 'checking', unit: 'steps', stream: out, clock: new FakeClock() });
  const work = (): void => {
    bar.update(1, 5, 'IDT');
    throw new Error('guest went away');
  };
  t.throws(() => {
    try {
      work();
    } finally {
      bar.finish();
    }
  }, /guest went away/);
  t.same(out.writes.slice(-1), ['\r\x1b[K']);
});

t.test('throttled: at most one redraw per interval, and the latest state is shown', async (t) => {
  const out = new FakeTerminal(true, 80);
  const clock = new FakeClock();
  const bar = progressBar({ label: 'x', unit: 'steps', stream: out, clock });
  for (let i = 1; i <= 50; i++) bar.update(i, 1000);
  t.equal(out.writes.length, 1, '50 updates at one instant: one redraw');
  t.equal(clock.pending.filter((p) => !p.cancelled).length, 1, 'and one redraw pending, not 49');
  clock.fire();
  t.equal(out.writes.length, 2, 'the pending redraw happens');
  t.match(out.lines[1], /50\/1000 steps$/, 'with the last state');

  // a simulated second of updates every millisecond
  const before = out.writes.length;
  for (let ms = 1; ms <= 1000; ms++) {
    clock.t = ms;
    bar.update(50 + ms, 2000);
  }
  clock.fire();
  const redraws = out.writes.length - before;
  t.ok(redraws <= 1000 / REDRAW_MS + 1, `${redraws} redraws in a second of 1000 updates`);
  t.ok(redraws >= 1000 / REDRAW_MS - 1, 'but it keeps moving');
  t.match(out.lines.at(-1), /1050\/2000 steps$/, 'ends on the latest state');
});

t.test('a step reported just after a redraw is shown later, even when no update follows', async (t) => {
  const out = new FakeTerminal(true, 80);
  const clock = new FakeClock();
  const bar = progressBar({ label: 'profile', unit: 'steps', stream: out, clock });
  bar.update(0, 3, 'finding kallsyms');
  clock.t = 10;
  bar.update(1, 3, 'reading BTF');
  t.equal(out.lines.length, 1);
  clock.fire();
  t.equal(out.lines.at(-1), `profile [${'#'.repeat(13)}${'.'.repeat(27)}] 33% 1/3 steps: reading BTF`);
});

t.test('the line fits the terminal, whatever the label and the width', async (t) => {
  const labels = ['copying', 'web:/var/www/漢字/🚀/' + 'x'.repeat(200), 'evil\u009b2J\u202ename'];
  for (const columns of [200, 80, 40, 20, 8, 2, 1, 0, undefined]) {
    for (const label of labels) {
      const out = new FakeTerminal(true, columns);
      const clock = new FakeClock();
      const bar = progressBar({ label, unit: 'bytes', stream: out, clock });
      bar.update(123456789, 987654321);
      clock.t = 2000;
      bar.update(223456789, 987654321);
      const room = (columns || 80) - 1;
      for (const l of out.lines) t.ok(displayWidth(l) <= Math.max(1, room), `${JSON.stringify(l)} fits in ${columns} columns`);
      t.notOk(/[\u0080-\u009f\u202a-\u202e]/.test(out.writes.join('').replace(/\r|\x1b\[K/g, '')), 'guest-controlled text is escaped');
    }
  }
  const wide = progressLine('x', 'bytes', { done: 1, total: 2 }, 0, 300);
  t.match(wide, new RegExp(`\\[[#.]{40}\\]`), 'the bar is at most 40 wide on a wide terminal');
  const narrow = progressLine('copying', 'bytes', { done: 1, total: 2 }, 0, 30);
  t.notMatch(narrow, /\[/, 'no bar when fewer than 10 columns are left for it');
  t.match(narrow, /^copying 50% 1\/2 B$/);
});

t.test('units: bytes scale together, steps are counted, no total is no bar', async (t) => {
  t.equal(progressLine('c', 'bytes', { done: 512 }, 0, 80), 'c 512 B');
  t.equal(progressLine('c', 'bytes', { done: 3 * 1048576 }, 2000, 80), 'c 3.0 MiB 1.5 MiB/s', 'no total: amount and rate, no ETA');
  t.equal(progressLine('c', 'bytes', { done: 512, total: 3 * 1073741824 }, 0, 20), 'c 0% 0.0/3.0 GiB', 'done in the unit of the total');
  t.equal(progressLine('check', 'steps', { done: 2, total: 5, step: 'IDT' }, 5000, 30), 'check 40% 2/5 steps: IDT', 'no rate or ETA for steps');
  t.equal(progressLine('check', 'steps', { done: 7 }, 5000, 80), 'check 7 steps');
});
