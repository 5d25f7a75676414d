/** The host terminal for exec -it: raw mode restored on every way out; the window size read from a terminal. */
import t from 'tap';
import { EventEmitter } from 'node:events';
import { hostWindowSize, withRawMode } from '../../cli/terminal';

function fakeInput() {
  const modes: boolean[] = [];
  return { modes, isTTY: true, setRawMode: (m: boolean) => modes.push(m) };
}

t.test('raw while the work runs, restored when it ends', async (t) => {
  const input = fakeInput();
  const proc = new EventEmitter();
  let during: boolean[] = [];
  t.equal(await withRawMode(input, async () => { during = [...input.modes]; return 7; }, proc), 7);
  t.same(during, [true], 'raw during the work');
  t.same(input.modes, [true, false], 'restored after');
  t.equal(proc.listenerCount('SIGINT') + proc.listenerCount('SIGTERM') + proc.listenerCount('SIGHUP') + proc.listenerCount('exit'), 0, 'its listeners are gone');
});

t.test('restored when the work fails', async (t) => {
  const input = fakeInput();
  const proc = new EventEmitter();
  await t.rejects(withRawMode(input, async () => { throw new Error('boom'); }, proc), /boom/);
  t.same(input.modes, [true, false]);
});

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'exit']) {
  t.test(`restored at once on ${sig}, and only once`, async (t) => {
    const input = fakeInput();
    const proc = new EventEmitter();
    await withRawMode(input, async () => {
      proc.emit(sig);
      t.same(input.modes, [true, false], `${sig} restores before the work has ended`);
      t.equal(proc.listenerCount(sig), 0, 'a second one is left to the other handlers (or the default)');
    }, proc);
    t.same(input.modes, [true, false], 'not set again at the end');
  });
}

t.test('not restored if raw mode could not be set', async (t) => {
  const proc = new EventEmitter();
  const calls: boolean[] = [];
  const input = { setRawMode: (m: boolean) => { calls.push(m); if (m) throw new Error('EBADF'); } };
  await t.rejects(withRawMode(input, async () => 1, proc), /EBADF/);
  t.same(calls, [true]);
});

t.test('the window size of the first stream that is a terminal', async (t) => {
  t.same(hostWindowSize([{ isTTY: false }, { isTTY: true, getWindowSize: () => [132, 50] }]), { rows: 50, cols: 132 });
  t.same(hostWindowSize([{ isTTY: false }]), { rows: 24, cols: 80 }, 'none: 24x80');
  t.same(hostWindowSize([{ isTTY: true, getWindowSize: () => [0, 0] }]), { rows: 24, cols: 80 }, 'a terminal that says 0x0: 24x80');
});
