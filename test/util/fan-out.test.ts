/**
 * fanOutSignal: the caller's signal keeps one listener whatever the number of readers of the inner
 * one (no MaxListenersExceededWarning), an abort goes through with its reason, and release() lets
 * go of the caller's signal.
 */
import t from 'tap';
import { fanOutSignal } from '../../lib/util/fan-out';

t.test('many listeners on the inner signal, one on the outer, no warning', async (t) => {
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  t.teardown(() => { process.off('warning', onWarning); });
  const outer = new AbortController();
  const { signal, release } = fanOutSignal(outer.signal);
  let woken = 0;
  for (let i = 0; i < 100; i++) signal.addEventListener('abort', () => woken++, { once: true });
  const reason = new Error('stop');
  outer.abort(reason);
  await new Promise((r) => setImmediate(r));
  t.equal(woken, 100, 'every reader sees the abort');
  t.equal(signal.reason, reason, "with the caller's reason");
  t.same(warnings.filter((w) => w.name === 'MaxListenersExceededWarning'), [], 'no listener-leak warning');
  release();
});

t.test('an already aborted signal, none, and release', async (t) => {
  const done = new AbortController();
  done.abort('early');
  t.ok(fanOutSignal(done.signal).signal.aborted, 'aborted at once');
  t.notOk(fanOutSignal(undefined).signal.aborted, 'no signal: never aborted');
  const outer = new AbortController();
  const f = fanOutSignal(outer.signal);
  f.release();
  outer.abort();
  t.notOk(f.signal.aborted, "after release the caller's abort no longer reaches it");
});
