/**
 * What the kernel itself records of its function tracing (kernel/trace/ftrace.c) and of its
 * kprobes (kernel/kprobes.c), read from its own structures:
 *   ftrace_pages_start → ftrace_page.records[index]: one dyn_ftrace { ip, flags } per patchable
 *     site (`call __fentry__`), with FTRACE_FL_ENABLED set while the site calls a trampoline;
 *   ftrace_ops_list → ftrace_ops.next … ftrace_list_end: every registered ftrace_ops, with its
 *     callback, its own trampoline and the functions its filter hash names (none: every function);
 *   kprobe_table[]: hlist buckets of struct kprobe, an aggregated probe's members on its `list`.
 * Every walk is bounded and cycle-checked; the guest may have written any of it.
 */
import type { CallOptions } from '../../util/deadline';
import type { Kernel } from '../kernel';
import { isFatalReadError, nullUnlessFatal } from '../../errors';
import { PAGE_SIZE } from '../../memory/pages';

/** One patchable ftrace site. */
export interface FtraceRecord {
  ip: bigint;
  flags: bigint;
  /** FTRACE_FL_ENABLED: the site calls a trampoline instead of being the NOP. */
  enabled: boolean;
}

export interface FtraceOps {
  address: bigint;
  /** The callback every traced call reaches. */
  func: bigint;
  flags: bigint;
  /** Its own trampoline, when ftrace built one (0 otherwise), and that trampoline's size. */
  trampoline: bigint;
  trampolineSize: bigint;
  /** The functions (ftrace site ips) its filter hash names; empty: every traceable function. */
  filter: bigint[];
  /** The filter hash held more entries than were read. */
  filterTruncated: boolean;
  /** FTRACE_OPS_FL_ENABLED, where the profile names it. */
  enabled?: boolean;
}

export interface Kprobe {
  address: bigint;
  /** Where it is planted. */
  addr: bigint;
  preHandler: bigint;
  postHandler: bigint;
  /** For a kretprobe, its return handler (and entry handler, when set). */
  retHandler?: bigint;
  entryHandler?: bigint;
  flags: number;
  /** A member of an aggregated probe (several kprobes on one address). */
  aggregated: boolean;
}

/** Most ftrace_page structs: a kernel with every module loaded has a few hundred. */
const MAX_PAGES = 100_000;
/** Most records read in one walk (16 bytes each): 4 M records, far over any kernel's count. */
const MAX_RECORDS = 4_000_000;
const MAX_OPS = 10_000;
/** Records read after a search's hit: more sites than this in one range are not a function's. */
const WINDOW = 4;
const MAX_HASH_ENTRIES = 1_000_000;
const MAX_HASH_BITS = 24n;
const MAX_KPROBES = 100_000;

/** Whether the running kernel's profile and symbols describe its ftrace records. */
export function hasFtraceRecords(kernel: Kernel): boolean {
  const p = kernel.profile;
  return kernel.hasSymbol('ftrace_pages_start') && p.hasType('ftrace_page') && p.hasType('dyn_ftrace') &&
    ['next', 'records', 'index'].every((f) => p.hasField('ftrace_page', f)) && ['ip', 'flags'].every((f) => p.hasField('dyn_ftrace', f));
}

/**
 * The ftrace records whose ip lies in one of `ranges` ([start, end), run-time addresses).
 * Undefined when the kernel keeps no records vmictl can read (no dynamic ftrace, or a profile
 * without its structs); a record page that cannot be read is skipped, and `complete` says so.
 */
export async function ftraceRecordsIn(kernel: Kernel, ranges: ReadonlyArray<{ start: bigint; end: bigint }>, opts: CallOptions = {}): Promise<{ records: FtraceRecord[]; pages: number; complete: boolean } | undefined> {
  if (!hasFtraceRecords(kernel)) return undefined;
  const p = kernel.profile;
  const recSize = p.typeSize('dyn_ftrace');
  const ipAt = p.fieldOffset('dyn_ftrace', 'ip');
  const flagsAt = p.fieldOffset('dyn_ftrace', 'flags');
  const enabledBit = enumOrUndefined(kernel, 'FTRACE_FL_ENABLED');
  if (recSize < 16 || enabledBit === undefined) return undefined;
  const hasOrder = p.hasField('ftrace_page', 'order');
  // the page headers, in list order
  const pages: Array<{ records: bigint; count: number }> = [];
  const seen = new Set<bigint>();
  let complete = true;
  let total = 0;
  for (let pg = await kernel.readU64(kernel.symbol('ftrace_pages_start'), opts); pg !== 0n; ) {
    if (seen.has(pg) || pages.length >= MAX_PAGES || !kernel.isKernelPointer(pg)) { complete = false; break; }
    seen.add(pg);
    const o = await nullUnlessFatal(kernel.read('ftrace_page', pg, opts));
    if (!o) { complete = false; break; }
    const index = o.i32('index');
    const capacity = hasOrder ? Math.floor((PAGE_SIZE * 2 ** Math.min(Math.max(o.i32('order'), 0), 20)) / recSize) : MAX_RECORDS;
    const records = o.ptr('records');
    if (index < 0 || index > capacity || total + index > MAX_RECORDS || !kernel.isKernelPointer(records)) complete = false;
    else if (index > 0) { pages.push({ records, count: index }); total += index; }
    pg = o.ptr('next');
  }
  // each page's records are sorted by ip (ftrace_process_locs sorts them): a binary search per
  // range, all ranges a round trip at a time, reads a few dozen records instead of whole pages
  const readIps = async (at: bigint[]): Promise<Array<bigint | null>> => {
    if (at.length === 0) return [];
    const got = await nullUnlessFatal(kernel.space.readMany(at.map((a) => ({ address: a + BigInt(ipAt), length: 8 })), opts));
    return at.map((_, i) => got?.[i]?.readBigUInt64LE(0) ?? null);
  };
  const searches = pages.flatMap((pg) => ranges.map((r) => ({ pg, r, lo: 0, hi: pg.count })));
  for (let round = 0; round < 40 && searches.some((x) => x.lo < x.hi); round++) {
    const active = searches.filter((x) => x.lo < x.hi);
    const mids = active.map((x) => (x.lo + x.hi) >> 1);
    const ips = await readIps(active.map((x, i) => x.pg.records + BigInt(mids[i] * recSize)));
    active.forEach((x, i) => {
      const ip = ips[i];
      if (ip === null) { complete = false; x.lo = x.hi = x.pg.count; return; }
      if (ip < x.r.start) x.lo = mids[i] + 1;
      else x.hi = mids[i];
    });
  }
  const out: FtraceRecord[] = [];
  const seenIp = new Set<bigint>();
  const hits = searches.filter((x) => x.lo < x.pg.count);
  const windows = await kernel.space.readMany(hits.map((x) => ({ address: x.pg.records + BigInt(x.lo * recSize), length: Math.min(WINDOW, x.pg.count - x.lo) * recSize })), opts)
    .catch((e: unknown) => { if (isFatalReadError(e)) throw e; complete = false; return [] as Buffer[]; });
  windows.forEach((bytes, i) => {
    const { r } = hits[i];
    for (let o = 0; o + recSize <= bytes.length; o += recSize) {
      const ip = bytes.readBigUInt64LE(o + ipAt);
      if (ip < r.start || ip >= r.end) break;
      if (seenIp.has(ip)) continue;
      seenIp.add(ip);
      const flags = bytes.readBigUInt64LE(o + flagsAt);
      out.push({ ip, flags, enabled: (flags & enabledBit) !== 0n });
    }
  });
  return { records: out, pages: pages.length, complete };
}

function enumOrUndefined(kernel: Kernel, constant: string): bigint | undefined {
  try {
    return kernel.profile.enumConstant(undefined, constant);
  } catch {
    return undefined;
  }
}

/** Whether the kernel's profile and symbols describe its list of ftrace_ops. */
export function hasFtraceOps(kernel: Kernel): boolean {
  const p = kernel.profile;
  return kernel.hasSymbol('ftrace_ops_list') && kernel.hasSymbol('ftrace_list_end') && p.hasType('ftrace_ops') &&
    ['func', 'next', 'flags', 'func_hash'].every((f) => p.hasField('ftrace_ops', f));
}

/** Every registered ftrace_ops (the list ends at ftrace_list_end); undefined when it cannot be read. */
export async function forEachFtraceOps(kernel: Kernel, opts: CallOptions = {}): Promise<{ ops: FtraceOps[]; complete: boolean } | undefined> {
  if (!hasFtraceOps(kernel)) return undefined;
  const p = kernel.profile;
  const end = kernel.symbol('ftrace_list_end');
  const enabledBit = enumOrUndefined(kernel, 'FTRACE_OPS_FL_ENABLED');
  const out: FtraceOps[] = [];
  const seen = new Set<bigint>();
  let complete = true;
  for (let at = await kernel.readU64(kernel.symbol('ftrace_ops_list'), opts); at !== end; ) {
    if (at === 0n || seen.has(at) || out.length >= MAX_OPS || !kernel.isKernelPointer(at)) { complete = false; break; }
    seen.add(at);
    const o = await nullUnlessFatal(kernel.read('ftrace_ops', at, opts));
    if (!o) { complete = false; break; }
    const flags = o.uint('flags');
    const hashes = o.ptr('func_hash');
    const filterHash = kernel.isKernelPointer(hashes) && p.hasField('ftrace_ops_hash', 'filter_hash')
      ? await nullUnlessFatal(kernel.readU64(hashes + BigInt(p.fieldOffset('ftrace_ops_hash', 'filter_hash')), opts)) : null;
    const filter = filterHash ? await ftraceHashIps(kernel, filterHash, opts) : { ips: [], truncated: false };
    out.push({
      address: at,
      func: o.ptr('func'),
      flags,
      trampoline: p.hasField('ftrace_ops', 'trampoline') ? o.ptr('trampoline') : 0n,
      trampolineSize: p.hasField('ftrace_ops', 'trampoline_size') ? o.uint('trampoline_size') : 0n,
      filter: filter.ips,
      filterTruncated: filter.truncated,
      enabled: enabledBit === undefined ? undefined : (flags & enabledBit) !== 0n,
    });
    at = o.ptr('next');
  }
  return { ops: out, complete };
}

/** The ips of a struct ftrace_hash (size_bits buckets of ftrace_func_entry hlists). */
async function ftraceHashIps(kernel: Kernel, hash: bigint, opts: CallOptions): Promise<{ ips: bigint[]; truncated: boolean }> {
  if (!kernel.isKernelPointer(hash)) return { ips: [], truncated: false };
  const p = kernel.profile;
  const h = await nullUnlessFatal(kernel.read('ftrace_hash', hash, opts));
  if (!h) return { ips: [], truncated: true };
  const bits = h.uint('size_bits');
  const count = h.uint('count');
  const buckets = h.ptr('buckets');
  if (count === 0n) return { ips: [], truncated: false };
  if (bits > MAX_HASH_BITS || !kernel.isKernelPointer(buckets)) return { ips: [], truncated: true };
  const heads = await nullUnlessFatal(kernel.space.read(buckets, 8 * (1 << Number(bits)), opts));
  if (!heads) return { ips: [], truncated: true };
  const ipAt = BigInt(p.fieldOffset('ftrace_func_entry', 'ip'));
  const nodeAt = BigInt(p.fieldOffset('ftrace_func_entry', 'hlist'));
  const ips: bigint[] = [];
  const limit = Math.min(Number(count), MAX_HASH_ENTRIES);
  let truncated = false;
  for (let b = 0; b < heads.length / 8 && ips.length < limit; b++) {
    for await (const node of hlistForEach(kernel, heads.readBigUInt64LE(b * 8), { ...opts, max: limit - ips.length, onCorruption: () => { truncated = true; } })) {
      const ip = await nullUnlessFatal(kernel.readU64(node - nodeAt + ipAt, opts));
      if (ip === null) { truncated = true; break; }
      ips.push(ip);
    }
  }
  return { ips, truncated: truncated || ips.length < Number(count) };
}

/**
 * `hlist_for_each(pos, head)` from a head's first node: yields every node address. A cycle, an
 * address that is not the kernel's, or more than `max` nodes ends the walk through `onCorruption`.
 */
export async function* hlistForEach(kernel: Kernel, first: bigint, opts: CallOptions & { max: number; onCorruption: (why: string) => void }): AsyncGenerator<bigint> {
  const seen = new Set<bigint>();
  for (let node = first; node !== 0n; ) {
    if (seen.size >= opts.max) return opts.onCorruption(`more than ${opts.max} entries`);
    if (seen.has(node) || !kernel.isKernelPointer(node)) return opts.onCorruption(`a bad or repeated node 0x${node.toString(16)}`);
    seen.add(node);
    yield node;
    const next = await nullUnlessFatal(kernel.readU64(node, opts));
    if (next === null) return opts.onCorruption(`node 0x${node.toString(16)} cannot be read`);
    node = next;
  }
}

/** Whether the kernel's profile and symbols describe its kprobe table. */
export function hasKprobes(kernel: Kernel): boolean {
  const p = kernel.profile;
  return kernel.hasSymbol('kprobe_table') && p.hasType('kprobe') && ['hlist', 'addr', 'pre_handler', 'post_handler', 'list'].every((f) => p.hasField('kprobe', f));
}

/**
 * Every kprobe in kprobe_table (`buckets` hlist heads: the table's length, which the caller takes
 * from the symbol's type or its extent); an aggregated probe is replaced by its members.
 */
export async function forEachKprobe(kernel: Kernel, buckets: number, opts: CallOptions = {}): Promise<{ probes: Kprobe[]; complete: boolean } | undefined> {
  if (!hasKprobes(kernel) || buckets <= 0 || buckets > 1 << 16) return undefined;
  const p = kernel.profile;
  const table = kernel.symbol('kprobe_table');
  const heads = await kernel.space.read(table, buckets * 8, opts);
  const aggr = kernel.hasSymbol('aggr_pre_handler') ? kernel.symbol('aggr_pre_handler') : undefined;
  const kret = kernel.hasSymbol('pre_handler_kretprobe') ? kernel.symbol('pre_handler_kretprobe') : undefined;
  const hlistAt = BigInt(p.fieldOffset('kprobe', 'hlist'));
  const listAt = BigInt(p.fieldOffset('kprobe', 'list'));
  const out: Kprobe[] = [];
  let complete = true;
  const onCorruption = () => { complete = false; };
  const describe = async (kp: bigint, aggregated: boolean): Promise<Kprobe | null> => {
    const o = await nullUnlessFatal(kernel.read('kprobe', kp, opts));
    if (!o) { complete = false; return null; }
    const probe: Kprobe = { address: kp, addr: o.ptr('addr'), preHandler: o.ptr('pre_handler'), postHandler: o.ptr('post_handler'), flags: p.hasField('kprobe', 'flags') ? Number(o.uint('flags')) : 0, aggregated };
    if (kret !== undefined && probe.preHandler === kret && p.hasType('kretprobe') && p.hasField('kretprobe', 'kp') && p.hasField('kretprobe', 'handler')) {
      const rp = kp - BigInt(p.fieldOffset('kretprobe', 'kp'));
      const r = await nullUnlessFatal(kernel.read('kretprobe', rp, opts));
      if (r) {
        probe.retHandler = r.ptr('handler');
        if (p.hasField('kretprobe', 'entry_handler')) probe.entryHandler = r.ptr('entry_handler');
      }
    }
    return probe;
  };
  for (let b = 0; b < buckets; b++) {
    for await (const node of hlistForEach(kernel, heads.readBigUInt64LE(b * 8), { ...opts, max: MAX_KPROBES - out.length, onCorruption })) {
      const kp = node - hlistAt;
      const probe = await describe(kp, false);
      if (!probe) continue;
      if (aggr === undefined || probe.preHandler !== aggr) { out.push(probe); continue; }
      // an aggregated probe: its members hang on its `list` (a list_head ring)
      const head = kp + listAt;
      const seen = new Set<bigint>([head]);
      for (let at = await nullUnlessFatal(kernel.readU64(head, opts)); at !== head; ) {
        if (at === null || seen.has(at) || !kernel.isKernelPointer(at) || out.length >= MAX_KPROBES) { complete = false; break; }
        seen.add(at);
        const member = await describe(at - listAt, true);
        if (member) out.push(member);
        at = await nullUnlessFatal(kernel.readU64(at, opts));
      }
    }
  }
  return { probes: out, complete };
}
