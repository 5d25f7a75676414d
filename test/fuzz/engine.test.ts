// The fuzz engine itself: runs replay from a seed, a RangeError or plain Error from an input is a
// finding (a VmiError is not), slow inputs and retained memory are findings, findings are saved.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { ValidationError } from '../../lib/errors';
import { Rng, fuzz, mutate, replay, type Harness } from './engine';

t.test('the same seed gives the same inputs', async (t) => {
  const gen = (seed: number) => {
    const rng = new Rng(seed);
    return Array.from({ length: 200 }, () => mutate(rng, Buffer.from('{"a": 123, "b": [1, 2]}'), { dictionary: [Buffer.from('xyz')] }).toString('hex'));
  };
  t.same(gen(7), gen(7));
  t.not(gen(7).join(), gen(8).join());
  t.ok(new Set(gen(7)).size > 150, 'mostly distinct inputs');
});

t.test('outcomes: VmiError is fine, anything else is a finding, saved for replay', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-engine-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const h: Harness = {
    name: 'toy',
    seeds: () => [Buffer.from('ok'), Buffer.from('typed'), Buffer.from('range'), Buffer.from('slow'), Buffer.from('hog')],
    run(input) {
      const s = input.toString();
      if (s === 'typed') throw new ValidationError('corrupt');
      if (s === 'range') Buffer.alloc(4).readUInt32LE(8);
      if (s === 'slow') { const end = Date.now() + 60; while (Date.now() < end); }
      if (s === 'hog') (globalThis as Record<string, unknown>).fuzzHog = Buffer.alloc(8 << 20, 1);
    },
    slowMs: 30,
    maxRetainedBytes: 4 << 20,
  };
  const stats = await fuzz(h, { runs: 5, seed: 1, findingsDir: dir, hangMs: 0 });
  delete (globalThis as Record<string, unknown>).fuzzHog;
  t.same(stats.findings.map((f) => f.kind).sort(), ['memory', 'slow', 'untyped-error']);
  const untyped = stats.findings.find((f) => f.kind === 'untyped-error')!;
  t.match(untyped.message, /^RangeError/);
  t.equal(fs.readFileSync(untyped.file!).toString(), 'range', 'the input is saved');
  t.match(path.basename(untyped.file!), /^untyped-error-[0-9a-f]{16}$/);
  const again = await replay({ ...h, slowMs: 10_000, maxRetainedBytes: 1 << 30 }, [untyped.file!]);
  t.equal(again.length, 1, 'replaying the saved input finds it again');
});
