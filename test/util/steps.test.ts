import t from 'tap';
import { stepper } from '../../lib/util/steps';

t.test('each call announces the next step, with how many are over', async (t) => {
  const seen: Array<[number, number, string]> = [];
  const next = stepper(['tables', 'IDT', 'modules'], (done, total, step) => seen.push([done, total, step]));
  next();
  next();
  next();
  t.same(seen, [[0, 3, 'tables'], [1, 3, 'IDT'], [2, 3, 'modules']]);
  next();
  t.equal(seen.length, 3, 'a call past the last step announces nothing');
});

t.test('no listener: the calls do nothing', async (t) => {
  const next = stepper(['a']);
  t.doesNotThrow(() => { next(); next(); });
});
