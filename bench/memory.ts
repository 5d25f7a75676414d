/**
 * Physical-memory benchmark: read throughput of each backend (gdbstub, the local fast path
 * /proc/<tid>/mem, an ELF dump from dump-guest-memory) and the time findKaslr() takes over each.
 * Backends are read directly, under no page cache, so every run reads from the source.
 *
 * Patterns, over the same guest-physical bytes on every backend (the VM stays stopped, and the
 * data's sha256 must agree across backends):
 *   read-1MiB            VMICTL_BENCH_MEMORY_MIB (64) MiB of contiguous RAM in 1 MiB read() calls
 *   read-4KiB-scattered  as many 4 KiB pages at random places in RAM, 256 pages per readRanges()
 *   read-4KiB-one-by-one a quarter as many pages, one read() at a time (latency bound)
 * Each pattern runs VMICTL_BENCH_MEMORY_RUNS (3) times, the median is kept. findKaslr runs
 * VMICTL_BENCH_KASLR_RUNS (5) times per backend, median kept.
 *
 * Baselines: for the gdbstub, the raw-socket pipelined throughput that bench/transport.ts measured
 * (the best this stub can do); for /proc/<tid>/mem and the dump, plain 1 MiB preads of the same
 * bytes from the same file (what the backend adds to the system call).
 *
 *   VMICTL_QMP=… VMICTL_GDB=… node dist/bench/memory.js
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Vm } from '../lib/vm';
import { VmiError } from '../lib/errors';
import { findKaslr, type KaslrResult } from '../lib/kernel/kaslr';
import type { Profile } from '../lib/kernel/profile';
import { ElfDumpMemory, ProcMemPhysicalMemory, type PhysicalMemory, type PhysicalRange } from '../lib/memory';
import type { Figure, Log } from './run';
import { closeVm, makeDump, median, nowMs, setRunning, vmRunning } from './common';

const MiB = 1024 * 1024;
const PAGE = 4096;
const BATCH_PAGES = 256;

// ---- ranges and patterns ----

function intersect(a: readonly PhysicalRange[], b: readonly PhysicalRange[]): PhysicalRange[] {
  const out: PhysicalRange[] = [];
  for (const x of a) {
    for (const y of b) {
      const start = x.address > y.address ? x.address : y.address;
      const xe = x.address + BigInt(x.length);
      const ye = y.address + BigInt(y.length);
      const end = xe < ye ? xe : ye;
      if (end > start) out.push({ address: start, length: Number(end - start) });
    }
  }
  return out.sort((p, q) => (p.address < q.address ? -1 : p.address > q.address ? 1 : 0));
}

/** A small seeded generator (mulberry32), so every backend and every run reads the same pages. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` page addresses drawn uniformly from the whole pages of `ram`. */
function scatteredPages(ram: readonly PhysicalRange[], count: number): bigint[] {
  const spans = ram
    .map((r) => {
      const first = (r.address + BigInt(PAGE - 1)) / BigInt(PAGE);
      const end = (r.address + BigInt(r.length)) / BigInt(PAGE);
      return { first, pages: Number(end - first) };
    })
    .filter((s) => s.pages > 0);
  const total = spans.reduce((n, s) => n + s.pages, 0);
  const rnd = random(0x5eed);
  const out: bigint[] = [];
  for (let i = 0; i < count; i++) {
    let k = Math.floor(rnd() * total);
    const span = spans.find((s) => (k < s.pages ? true : ((k -= s.pages), false)))!;
    out.push((span.first + BigInt(k)) * BigInt(PAGE));
  }
  return out;
}

/** The contiguous stretch read by read-1MiB: in the largest RAM range, past the first 16 MiB if it fits. */
function contiguousRange(ram: readonly PhysicalRange[], bytes: number): PhysicalRange {
  const largest = [...ram].sort((a, b) => b.length - a.length)[0];
  if (!largest) throw new Error('no guest RAM');
  const end = largest.address + BigInt(largest.length);
  let start = largest.address < 16n * BigInt(MiB) ? 16n * BigInt(MiB) : (largest.address + BigInt(MiB - 1)) / BigInt(MiB) * BigInt(MiB);
  if (start + BigInt(bytes) > end) start = largest.address;
  return { address: start, length: Math.min(bytes, Number(end - start)) };
}

interface Plan {
  contiguous: PhysicalRange;
  pages: bigint[];
  serialPages: bigint[];
}

interface PatternResult {
  ms: number[];
  bytes: number;
  digest: string;
}

async function timedDigest(bytes: number, runs: number, f: (take: (b: Buffer) => void) => Promise<void>): Promise<PatternResult> {
  const ms: number[] = [];
  const digests = new Set<string>();
  for (let i = 0; i < runs; i++) {
    const h = crypto.createHash('sha256');
    const t0 = nowMs();
    await f((b) => h.update(b));
    ms.push(nowMs() - t0);
    digests.add(h.digest('hex').slice(0, 16));
  }
  if (digests.size !== 1) throw new Error(`the data changed between runs (${[...digests].join(', ')}): is the VM running?`);
  return { ms, bytes, digest: [...digests][0] };
}

async function readPatterns(mem: PhysicalMemory, plan: Plan, runs: number): Promise<Record<'seq' | 'scattered' | 'serial', PatternResult>> {
  const { contiguous: c, pages, serialPages } = plan;
  // Hashing is in the timed loop, but it runs at > 1 GB/s: small next to every backend measured here.
  const seq = await timedDigest(c.length, runs, async (take) => {
    for (let off = 0; off < c.length; off += MiB) take(await mem.read(c.address + BigInt(off), Math.min(MiB, c.length - off)));
  });
  const scattered = await timedDigest(pages.length * PAGE, runs, async (take) => {
    for (let i = 0; i < pages.length; i += BATCH_PAGES) {
      const bufs = await mem.readRanges(pages.slice(i, i + BATCH_PAGES).map((address) => ({ address, length: PAGE })));
      for (const b of bufs) take(b);
    }
  });
  const serial = await timedDigest(serialPages.length * PAGE, runs, async (take) => {
    for (const address of serialPages) take(await mem.read(address, PAGE));
  });
  return { seq, scattered, serial };
}

/** Plain 1 MiB preads of a file at `offset` (the baseline for file-backed backends). */
async function rawPread(file: string, offset: bigint, bytes: number, runs: number): Promise<PatternResult> {
  // FileHandle.read takes a number: fine for host addresses (47 bits) and file offsets
  if (offset + BigInt(bytes) > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`offset 0x${offset.toString(16)} does not fit a double`);
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(MiB);
    return await timedDigest(bytes, runs, async (take) => {
      for (let off = 0; off < bytes; ) {
        const want = Math.min(MiB, bytes - off);
        const { bytesRead } = await fh.read(buf, 0, want, Number(offset) + off);
        if (bytesRead <= 0) throw new Error(`${file}: short read at 0x${(offset + BigInt(off)).toString(16)}`);
        take(buf.subarray(0, bytesRead));
        off += bytesRead;
      }
    });
  } finally {
    await fh.close();
  }
}

/** Where the contiguous range lives in the backend's own file, when it has one and the range is in one piece. */
function fileLocation(mem: PhysicalMemory, r: PhysicalRange): { file: string; offset: bigint } | undefined {
  const end = r.address + BigInt(r.length);
  if (mem instanceof ProcMemPhysicalMemory) {
    const reg = mem.regions().find((g) => g.start <= r.address && end <= g.end);
    return reg && { file: mem.name.replace(/^procmem:/, ''), offset: reg.host + (r.address - reg.start) };
  }
  if (mem instanceof ElfDumpMemory) {
    const seg = mem.segments().find((s) => s.physical <= r.address && end <= s.physical + s.size);
    return seg && { file: mem.path, offset: seg.fileOffset + (r.address - seg.physical) };
  }
  return undefined;
}

// ---- the benchmark ----

export interface MemoryBenchOptions {
  qmp: string;
  gdb: string;
  /** An ELF dump of the VM taken while it was stopped as it is now. */
  dump: string;
  profile: Profile;
  /** bench/transport.ts's raw-socket pipelined MB/s, the gdbstub's baseline. */
  rawGdbMBps?: number;
  log: Log;
}

type BackendName = 'gdbstub' | 'procmem' | 'dump';

export async function runMemoryBench(opts: MemoryBenchOptions): Promise<Figure[]> {
  const mib = Number(process.env.VMICTL_BENCH_MEMORY_MIB ?? 64);
  const runs = Math.max(1, Number(process.env.VMICTL_BENCH_MEMORY_RUNS ?? 3));
  const kaslrRuns = Math.max(1, Number(process.env.VMICTL_BENCH_KASLR_RUNS ?? 5));
  const { log } = opts;
  if (await vmRunning(opts.qmp)) throw new Error('the VM must be stopped for the memory benchmark (all backends read the same bytes)');

  const open = (b: BackendName) =>
    b === 'dump' ? Vm.connect({ dump: opts.dump }) : Vm.connect({ qmp: opts.qmp, gdb: opts.gdb, memory: b });

  // The pages to read: RAM as both the live VM and the dump know it.
  let plan: Plan;
  {
    const live = await open('gdbstub');
    const dump = await open('dump');
    try {
      const ram = intersect(await live.ram(), await dump.ram());
      const contiguous = contiguousRange(ram, Math.floor(mib * MiB));
      const pages = scatteredPages(ram, Math.floor(contiguous.length / PAGE));
      plan = { contiguous, pages, serialPages: pages.slice(0, Math.max(1, pages.length >> 2)) };
    } finally {
      await live.close();
      await dump.close();
    }
  }
  const c = plan.contiguous;
  log(
    `${(c.length / MiB).toFixed(0)} MiB contiguous at 0x${c.address.toString(16)} in 1 MiB reads; ${plan.pages.length} random 4 KiB pages, ` +
      `${BATCH_PAGES} per readRanges(); ${plan.serialPages.length} pages one read() at a time; median of ${runs}; findKaslr median of ${kaslrRuns}`,
  );

  const figures: Figure[] = [];
  const digests = new Map<string, Set<string>>();
  const kaslrs: Array<{ backend: BackendName; r: KaslrResult }> = [];
  const mbps = (r: PatternResult) => r.bytes / (median(r.ms) / 1000) / 1e6;

  for (const backend of ['gdbstub', 'procmem', 'dump'] as const) {
    let vm: Vm;
    let mem: PhysicalMemory;
    let opened = false;
    try {
      vm = await open(backend);
    } catch (err) {
      log(`  ${backend}: cannot open: ${(err as Error).message}`);
      continue;
    }
    try {
      try {
        mem = (await vm.memory()).backend;
        opened = true;
      } catch (err) {
        if (err instanceof VmiError && err.code === 'EMEMBACKEND') {
          log(`  ${backend}: not available here (${err.message}); skipped`);
          continue;
        }
        throw err;
      }
      const ram = await vm.ram();
      const res = await readPatterns(mem, plan, runs);
      for (const [k, r] of Object.entries(res)) {
        if (!digests.has(k)) digests.set(k, new Set());
        digests.get(k)!.add(r.digest);
      }

      let seqBaseline: Figure['baseline'];
      let seqNote: string | undefined;
      if (backend === 'gdbstub') {
        if (opts.rawGdbMBps) seqBaseline = { value: opts.rawGdbMBps, what: 'raw gdbstub socket, pipelined (transport bench)' };
      } else {
        const loc = fileLocation(mem, c);
        if (loc) {
          const raw = await rawPread(loc.file, loc.offset, c.length, runs);
          if (raw.digest !== res.seq.digest) seqNote = `raw pread of ${loc.file} read other bytes than the backend`;
          seqBaseline = { value: mbps(raw), what: `plain 1 MiB pread of ${backend === 'dump' ? 'the dump file' : '/proc/<tid>/mem'}` };
        }
      }
      const seqV = mbps(res.seq);
      figures.push({ name: `memory.${backend}.read-1MiB`, value: seqV, unit: 'MB/s', baseline: seqBaseline, ratio: seqBaseline && seqV / seqBaseline.value, note: seqNote });
      figures.push({ name: `memory.${backend}.read-4KiB-scattered`, value: mbps(res.scattered), unit: 'MB/s' });
      const perPageUs = (median(res.serial.ms) * 1000) / plan.serialPages.length;
      figures.push({ name: `memory.${backend}.read-4KiB-one-by-one`, value: mbps(res.serial), unit: 'MB/s', note: `${perPageUs.toFixed(1)} us per page` });
      log(
        `  ${backend.padEnd(8)} (${mem.name}): 1 MiB reads ${seqV.toFixed(1)} MB/s${seqBaseline ? ` (baseline ${seqBaseline.value.toFixed(1)} MB/s, ${seqBaseline.what})` : ''}; ` +
          `scattered pages ${mbps(res.scattered).toFixed(1)} MB/s; one page at a time ${mbps(res.serial).toFixed(1)} MB/s = ${perPageUs.toFixed(1)} us/page`,
      );

      const times: number[] = [];
      let found: KaslrResult | undefined;
      for (let i = 0; i < kaslrRuns; i++) {
        const t0 = nowMs();
        found = await findKaslr(mem, opts.profile, { ram, expectBanner: opts.profile.banner });
        times.push(nowMs() - t0);
      }
      kaslrs.push({ backend, r: found! });
      figures.push({ name: `kaslr.${backend}`, value: median(times), unit: 'ms' });
      log(`  ${backend.padEnd(8)} findKaslr: median ${median(times).toFixed(1)} ms (runs: ${times.map((t) => t.toFixed(0)).join(', ')} ms); virtual slide 0x${found!.virtualSlide.toString(16)}, physical 0x${found!.physicalSlide.toString(16)}`);
    } finally {
      await closeVm(vm, opened);
    }
  }

  const same = [...digests.values()].every((s) => s.size === 1);
  log(`  same bytes from every backend: ${same ? 'yes' : `NO (${[...digests].map(([k, s]) => `${k}: ${[...s].join('/')}`).join('; ')})`}`);
  const slides = new Set(kaslrs.map((k) => `${k.r.virtualSlide}/${k.r.physicalSlide}`));
  log(`  same KASLR slides from every backend: ${slides.size <= 1 ? 'yes' : 'NO'}`);
  if (!same) throw new Error('the backends read different bytes for the same guest-physical addresses');
  if (slides.size > 1) throw new Error(`findKaslr disagrees between backends: ${kaslrs.map((k) => `${k.backend} ${k.r.virtualSlide.toString(16)}`).join(', ')}`);
  return figures;
}

if (require.main === module) {
  (async () => {
    const qmp = process.env.VMICTL_QMP;
    const gdb = process.env.VMICTL_GDB;
    if (!qmp || !gdb) throw new Error('set VMICTL_QMP and VMICTL_GDB');
    const vm = await Vm.connect({ qmp, gdb, memory: 'auto' });
    let profile: Profile;
    try {
      profile = (await vm.kernel()).profile;
    } finally {
      await closeVm(vm, true);
    }
    const dump = path.join(os.tmpdir(), `vmictl-bench-memory-${process.pid}.elf`);
    const wasRunning = await vmRunning(qmp);
    try {
      await setRunning(qmp, false);
      await makeDump(qmp, dump);
      for (const f of await runMemoryBench({ qmp, gdb, dump, profile, log: (l) => console.log(l) })) console.log(`${f.name} ${f.value.toFixed(2)} ${f.unit}`);
    } finally {
      fs.rmSync(dump, { force: true });
      if (wasRunning) await setRunning(qmp, true);
    }
  })().catch((err: unknown) => {
    console.error(err instanceof Error ? err.stack ?? err.message : err);
    process.exitCode = 1;
  });
}
