/**
 * The ftrace records, ftrace_ops list and kprobe table as the kernel keeps them, on the synthetic
 * guest: what is there is read, and a corrupt structure (a cycle, an absurd count, a pointer out of
 * the kernel) ends its walk with `complete: false`, never a hang or an invented entry.
 */
import t from 'tap';
import { SyntheticGuest } from '../helpers/synthetic-kernel';
import { forEachFtraceOps, forEachKprobe, ftraceRecordsIn } from '../../lib/kernel/helpers/ftrace';

const ENABLED = 1n << 31n;
const F = 0xffffffff81200000n;

/** ftrace pages holding `pages` (each a list of [ip, flags]), linked from ftrace_pages_start. */
function writeRecords(g: SyntheticGuest, pages: Array<Array<[bigint, bigint]>>): bigint[] {
  const at = pages.map(() => g.alloc('ftrace_page'));
  pages.forEach((recs, i) => {
    const records = g.alloc(recs.length * 16, 4096n);
    recs.forEach(([ip, flags], j) => { g.writeU64(records + BigInt(j * 16), ip); g.writeU64(records + BigInt(j * 16 + 8), flags); });
    g.set('ftrace_page', at[i], 'records', records);
    g.set('ftrace_page', at[i], 'index', recs.length);
    g.set('ftrace_page', at[i], 'order', 0);
    g.set('ftrace_page', at[i], 'next', at[i + 1] ?? 0n);
  });
  g.writeU64(g.symbol('ftrace_pages_start'), at[0] ?? 0n);
  return at;
}

t.test('ftrace records: the sites in the ranges asked for, with their state', async (t) => {
  const g = new SyntheticGuest();
  const pages = writeRecords(g, [
    [[F + 0x000n, 0n], [F + 0x100n, ENABLED | 1n], [F + 0x200n, 0n]],
    [[F + 0x10000n, 0n], [F + 0x10104n, ENABLED]],
  ]);
  const k = await g.open();
  const r = await ftraceRecordsIn(k, [{ start: F + 0x100n, end: F + 0x110n }, { start: F + 0x10100n, end: F + 0x10110n }]);
  t.same(r?.records.map((x) => [x.ip, x.enabled]), [[F + 0x100n, true], [F + 0x10104n, true]], 'one site in each page, both enabled');
  t.same([r?.pages, r?.complete], [2, true]);
  t.same((await ftraceRecordsIn(k, [{ start: F + 0x200n, end: F + 0x210n }]))?.records.map((x) => x.enabled), [false], 'a site left as the NOP');

  g.set('ftrace_page', pages[1], 'next', pages[0]);
  const cyclic = await ftraceRecordsIn(await g.open(), [{ start: F, end: F + 0x20000n }]);
  t.same([cyclic?.complete, cyclic?.records.length], [false, 5], 'a cycle in the page list: each page read once, the walk marked incomplete');
  g.set('ftrace_page', pages[1], 'next', 0n);
  g.set('ftrace_page', pages[0], 'index', 1_000_000);
  const absurd = await ftraceRecordsIn(await g.open(), [{ start: F, end: F + 0x20000n }]);
  t.same([absurd?.complete, absurd?.records.map((x) => x.ip)], [false, [F + 0x10000n, F + 0x10104n]], 'an index beyond its page\'s capacity: that page is not read');
});

t.test('ftrace_ops: the list to ftrace_list_end, each with its filter', async (t) => {
  const g = new SyntheticGuest();
  const end = g.symbol('ftrace_list_end');
  const ops = [g.alloc('ftrace_ops'), g.alloc('ftrace_ops')];
  const hashes = ops.map(() => g.alloc('ftrace_ops_hash'));
  // the first filters two functions, in two buckets of a 2-bit hash; the second has no filter
  const hash = g.alloc('ftrace_hash');
  const buckets = g.alloc(4 * 8);
  const entries = [g.alloc('ftrace_func_entry'), g.alloc('ftrace_func_entry')];
  g.set('ftrace_func_entry', entries[0], 'ip', F + 0x100n);
  g.set('ftrace_func_entry', entries[1], 'ip', F + 0x204n);
  g.writeU64(buckets + 8n, entries[0]);
  g.writeU64(buckets + 24n, entries[1]);
  g.set('ftrace_hash', hash, 'size_bits', 2);
  g.set('ftrace_hash', hash, 'buckets', buckets);
  g.set('ftrace_hash', hash, 'count', 2);
  g.set('ftrace_ops_hash', hashes[0], 'filter_hash', hash);
  ops.forEach((o, i) => {
    g.set('ftrace_ops', o, 'func', F + 0x9000n + BigInt(i));
    g.set('ftrace_ops', o, 'flags', 1);
    g.set('ftrace_ops', o, 'func_hash', hashes[i]);
    g.set('ftrace_ops', o, 'next', ops[i + 1] ?? end);
  });
  g.set('ftrace_ops', ops[0], 'trampoline', 0xffffffffc0800000n);
  g.set('ftrace_ops', ops[0], 'trampoline_size', 0x200);
  g.writeU64(g.symbol('ftrace_ops_list'), ops[0]);
  let r = await forEachFtraceOps(await g.open());
  t.same(r?.ops.map((o) => [o.address, o.func, o.filter, o.enabled, o.trampoline]), [
    [ops[0], F + 0x9000n, [F + 0x100n, F + 0x204n], true, 0xffffffffc0800000n],
    [ops[1], F + 0x9001n, [], true, 0n],
  ], 'both ops, the first filtering two functions, the second every function');
  t.equal(r?.complete, true);

  g.set('ftrace_hash', hash, 'count', 3);
  r = await forEachFtraceOps(await g.open());
  t.same([r?.ops[0].filter.length, r?.ops[0].filterTruncated], [2, true], 'a filter that says it holds more than its buckets do is marked as read in part');
  g.set('ftrace_hash', hash, 'count', 2);
  g.set('ftrace_func_entry', entries[1], 'hlist.next', entries[1]);
  r = await forEachFtraceOps(await g.open());
  t.same([r?.ops[0].filter.length, r?.ops[0].filterTruncated], [2, true], 'a bucket chained to itself ends at the count');
  g.set('ftrace_ops', ops[1], 'next', ops[0]);
  r = await forEachFtraceOps(await g.open());
  t.same([r?.ops.length, r?.complete], [2, false], 'a list that never reaches ftrace_list_end: each ops once, incomplete');
  g.set('ftrace_ops', ops[1], 'next', 0xdead000000000000n);
  r = await forEachFtraceOps(await g.open());
  t.same([r?.ops.length, r?.complete], [2, false], 'a pointer out of the kernel ends the walk');
});

t.test('kprobes: every bucket, aggregated probes by their members, kretprobes with their handler', async (t) => {
  const g = new SyntheticGuest();
  const table = g.symbol('kprobe_table');
  const aggr = g.symbol('aggr_pre_handler');
  const kret = g.symbol('pre_handler_kretprobe');
  const plain = g.alloc('kprobe');
  g.set('kprobe', plain, 'addr', F + 0x100n);
  g.set('kprobe', plain, 'pre_handler', 0xffffffffc0400010n);
  const rp = g.alloc('kretprobe');
  g.set('kprobe', rp, 'addr', F + 0x300n);
  g.set('kprobe', rp, 'pre_handler', kret);
  g.set('kretprobe', rp, 'handler', 0xffffffffc0400020n);
  // an aggregated probe at F+0x200 with two members on its list
  const ap = g.alloc('kprobe');
  const members = [g.alloc('kprobe'), g.alloc('kprobe')];
  g.set('kprobe', ap, 'addr', F + 0x200n);
  g.set('kprobe', ap, 'pre_handler', aggr);
  members.forEach((m, i) => { g.set('kprobe', m, 'addr', F + 0x200n); g.set('kprobe', m, 'pre_handler', F + 0x9100n + BigInt(i)); });
  g.linkList(ap + g.offset('kprobe', 'list'), members.map((m) => m + g.offset('kprobe', 'list')));
  // bucket 3: plain then the kretprobe; bucket 40: the aggregated probe
  g.writeU64(table + 3n * 8n, plain);
  g.set('kprobe', plain, 'hlist.next', rp);
  g.writeU64(table + 40n * 8n, ap);
  let r = await forEachKprobe(await g.open(), 64);
  t.same(r?.probes.map((p) => [p.address, p.addr, p.preHandler, p.retHandler, p.aggregated]), [
    [plain, F + 0x100n, 0xffffffffc0400010n, undefined, false],
    [rp, F + 0x300n, kret, 0xffffffffc0400020n, false],
    [members[0], F + 0x200n, F + 0x9100n, undefined, true],
    [members[1], F + 0x200n, F + 0x9101n, undefined, true],
  ], 'four probes, the aggregated one as its two members');
  t.equal(r?.complete, true);
  g.set('kprobe', rp, 'hlist.next', plain);
  r = await forEachKprobe(await g.open(), 64);
  t.same([r?.probes.length, r?.complete], [4, false], 'a bucket that loops: each probe once, incomplete');
  t.equal(await forEachKprobe(await g.open(), 1 << 20), undefined, 'a table length no kernel has is refused');
});
