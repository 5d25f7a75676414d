import t from 'tap';
import { MemoryReadError } from '../../lib/errors';
import { PageCache } from '../../lib/memory/page-cache';
import { SparseMemory } from '../helpers/sparse-memory';
import { expectError } from './helpers/expect';

function pattern(mem: SparseMemory, address: bigint, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (Number(address) + i * 7) & 0xff;
  mem.writeSync(address, b);
  return b;
}

t.test('a read of several missing pages is one backend call with one run', async (t) => {
  const mem = new SparseMemory(1n << 24n);
  const data = pattern(mem, 0x10000n, 5 * 4096);
  const cache = new PageCache(mem);
  const got = await cache.read(0x10100n, 4 * 4096);
  t.same(got, data.subarray(0x100, 0x100 + 4 * 4096));
  t.equal(mem.callCount, 1);
  t.same(mem.calls[0], [{ address: 0x10000n, length: 5 * 4096 }]);
  // now everything is cached
  t.same(await cache.read(0x10000n, 5 * 4096), data);
  t.equal(mem.callCount, 1);
  t.match(cache.stats(), { misses: 5, backendCalls: 1, pages: 5 });
});

t.test('only the missing pages are fetched, as separate runs in one call', async (t) => {
  const mem = new SparseMemory(1n << 24n);
  const data = pattern(mem, 0x0n, 10 * 4096);
  const cache = new PageCache(mem);
  await cache.read(0x2000n, 1);
  await cache.read(0x5000n, 2 * 4096);
  t.equal(mem.callCount, 2);
  t.same(await cache.read(0n, 10 * 4096), data);
  t.equal(mem.callCount, 3);
  t.same(mem.calls[2], [
    { address: 0x0n, length: 2 * 4096 },
    { address: 0x3000n, length: 2 * 4096 },
    { address: 0x7000n, length: 3 * 4096 },
  ]);
});

t.test('runs are capped in length', async (t) => {
  const mem = new SparseMemory(1n << 24n);
  const cache = new PageCache(mem, { maxRunPages: 4 });
  await cache.read(0n, 10 * 4096);
  t.equal(mem.callCount, 1);
  t.same(mem.calls[0].map((r) => r.length), [4 * 4096, 4 * 4096, 2 * 4096]);
});

t.test('readRanges gathers the misses of every range into one call', async (t) => {
  const mem = new SparseMemory(1n << 24n);
  const a = pattern(mem, 0x1000n, 16);
  const b = pattern(mem, 0x9ff8n, 16);
  const cache = new PageCache(mem);
  const [ga, gb, empty] = await cache.readRanges([{ address: 0x1000n, length: 16 }, { address: 0x9ff8n, length: 16 }, { address: 0x5000n, length: 0 }]);
  t.same(ga, a);
  t.same(gb, b);
  t.equal(empty.length, 0);
  t.equal(mem.callCount, 1);
  t.same(mem.calls[0], [{ address: 0x1000n, length: 4096 }, { address: 0x9000n, length: 2 * 4096 }]);
});

t.test('invalidate() drops everything and bumps the generation', async (t) => {
  const mem = new SparseMemory(1n << 24n);
  pattern(mem, 0x3000n, 4096);
  const cache = new PageCache(mem);
  const before = await cache.read(0x3000n, 8);
  mem.writeSync(0x3000n, Buffer.from('changed!'));
  t.same(await cache.read(0x3000n, 8), before, 'stale while the VM is stopped, by design');
  const g = cache.generation;
  cache.invalidate();
  t.equal(cache.generation, g + 1);
  t.equal((await cache.read(0x3000n, 8)).toString(), 'changed!');
  t.equal(mem.callCount, 2);
  t.match(cache.stats(), { invalidations: 1 });
});

t.test('concurrent reads of the same missing page share one fetch', async (t) => {
  const mem = new SparseMemory(1n << 24n);
  mem.delayMs = 20;
  pattern(mem, 0x4000n, 4096);
  const cache = new PageCache(mem);
  const [x, y] = await Promise.all([cache.read(0x4000n, 8), cache.read(0x4010n, 8)]);
  t.same(x, mem.readSync(0x4000n, 8));
  t.same(y, mem.readSync(0x4010n, 8));
  t.equal(mem.callCount, 1);
});

t.test('a fetch that finishes after invalidate() is not stored', async (t) => {
  const mem = new SparseMemory(1n << 24n);
  mem.delayMs = 20;
  const cache = new PageCache(mem);
  const p = cache.read(0x4000n, 8);
  cache.invalidate();
  await p;
  t.equal(cache.stats().pages, 0);
});

t.test('bounded: LRU evicts the oldest page, clear drops all', async (t) => {
  const mem = new SparseMemory(1n << 24n);
  const lru = new PageCache(mem, { maxBytes: 3 * 4096 });
  await lru.read(0x0000n, 1);
  await lru.read(0x1000n, 1);
  await lru.read(0x2000n, 1);
  await lru.read(0x0000n, 1); // touch page 0
  await lru.read(0x3000n, 1); // evicts page 1
  t.equal(lru.stats().pages, 3);
  const calls = mem.callCount;
  await lru.read(0x0000n, 1);
  t.equal(mem.callCount, calls, 'page 0 kept');
  await lru.read(0x1000n, 1);
  t.equal(mem.callCount, calls + 1, 'page 1 was evicted');

  const clear = new PageCache(mem, { maxBytes: 2 * 4096, policy: 'clear' });
  await clear.read(0n, 2 * 4096);
  t.equal(clear.stats().pages, 2);
  await clear.read(0x5000n, 1);
  t.equal(clear.stats().pages, 1);
  // A read bigger than the whole cache still returns every byte.
  const big = pattern(mem, 0x10000n, 8 * 4096);
  t.same(await clear.read(0x10000n, 8 * 4096), big);
});

t.test('write goes through and drops the written pages', async (t) => {
  const mem = new SparseMemory(1n << 24n);
  const cache = new PageCache(mem);
  await cache.read(0x6000n, 2 * 4096);
  await cache.write(0x6ffen, Buffer.from('abcd'));
  t.same(mem.writes, [{ address: 0x6ffen, length: 4 }]);
  t.equal((await cache.read(0x6ffen, 4)).toString(), 'abcd');
  const noWrite = new PageCache({ name: 'ro', read: mem.read.bind(mem), readRanges: mem.readRanges.bind(mem) });
  const err = await expectError(noWrite.write(0n, Buffer.from('x')));
  t.match(err.message, /cannot write/);
});

t.test('backend failures surface, and the failed pages are not cached', async (t) => {
  const mem = new SparseMemory(1n << 24n);
  mem.failPages.add(0x8n);
  const cache = new PageCache(mem);
  const err = await expectError(cache.read(0x7000n, 3 * 4096));
  t.type(err, MemoryReadError);
  mem.failPages.clear();
  await cache.read(0x7000n, 3 * 4096);
  t.equal(mem.callCount, 2);
  const past = await expectError(cache.read(1n << 24n, 1));
  t.type(past, MemoryReadError);
  const bad = await expectError(cache.read(0n, -1));
  t.match(bad.message, /invalid length/);
});

t.test('results are copies: callers cannot corrupt the cache', async (t) => {
  const mem = new SparseMemory(1n << 24n);
  const cache = new PageCache(mem);
  const a = await cache.read(0x1000n, 16);
  a.fill(0xff);
  t.same(await cache.read(0x1000n, 16), Buffer.alloc(16));
});

t.test('a backend that answers short is refused, not cached', async (t) => {
  const mem = new SparseMemory(1n << 24n);
  const short = { name: 'short', read: mem.read.bind(mem), readRanges: async () => [Buffer.alloc(10)] };
  const cache = new PageCache(short);
  const err = await expectError(cache.read(0n, 16));
  t.type(err, MemoryReadError);
  t.match(err.message, /short returned 10 bytes/);
  t.equal(cache.stats().pages, 0);
});

t.test('prefetch fetches only the sectors its ranges touch, and a read wanting more fetches the page', async (t) => {
  const mem = new SparseMemory(1n << 24n);
  const data = pattern(mem, 0x40000n, 3 * 4096);
  const cache = new PageCache(mem);
  // 16 bytes in sector 2 of page 0x40, 100 bytes straddling sectors 15 of 0x41 and 0 of 0x42
  await cache.prefetch([{ address: 0x40210n, length: 16 }, { address: 0x41fd0n, length: 100 }]);
  t.equal(mem.callCount, 1);
  t.same(mem.calls[0], [{ address: 0x40200n, length: 256 }, { address: 0x41f00n, length: 512 }], 'sectors, adjacent ones as one run');
  t.same(cache.peek(0x40210n, 16), data.subarray(0x210, 0x220));
  t.same(cache.peek(0x41fd0n, 100), data.subarray(0x1fd0, 0x1fd0 + 100), 'across the page boundary');
  t.equal(cache.peek(0x40300n, 8), undefined, 'a sector not fetched is not there');
  t.match(cache.stats(), { pages: 0, partialPages: 3 });
  // covered by the partial page: no backend call
  t.same(await cache.read(0x40200n, 256), data.subarray(0x200, 0x300));
  t.equal(mem.callCount, 1);
  // wants more of page 0x40: the whole page comes, and replaces the partial one
  t.same(await cache.read(0x40000n, 4096), data.subarray(0, 4096));
  t.equal(mem.callCount, 2);
  t.same(mem.calls[1], [{ address: 0x40000n, length: 4096 }]);
  t.match(cache.stats(), { pages: 1, partialPages: 2 });
  // the rest of page 0x42 (it holds sector 0): only what is missing, and then the page is whole
  await cache.prefetch([{ address: 0x42000n, length: 4096 }]);
  t.same(mem.calls[2], [{ address: 0x42100n, length: 3840 }]);
  t.match(cache.stats(), { pages: 2, partialPages: 1 });
  t.same(cache.peek(0x42000n, 4096), data.subarray(0x2000, 0x3000));
  // all 16 sectors of a page wanted: fetched as a whole page
  pattern(mem, 0x43000n, 4096);
  await cache.prefetch([{ address: 0x43000n, length: 4096 }]);
  t.same(mem.calls[3], [{ address: 0x43000n, length: 4096 }]);
  t.match(cache.stats(), { pages: 3, partialPages: 1 });
  cache.invalidate();
  t.equal(cache.peek(0x41fd0n, 8), undefined, 'partial pages go with invalidate()');
});

t.test('a write drops the partial page it touches', async (t) => {
  const mem = new SparseMemory(1n << 24n);
  pattern(mem, 0x50000n, 4096);
  const cache = new PageCache(mem);
  await cache.prefetch([{ address: 0x50100n, length: 8 }]);
  t.ok(cache.peek(0x50100n, 8));
  await cache.write(0x50104n, Buffer.from([1, 2]));
  t.equal(cache.peek(0x50100n, 8), undefined);
  t.same((await cache.read(0x50104n, 2)), Buffer.from([1, 2]));
});
