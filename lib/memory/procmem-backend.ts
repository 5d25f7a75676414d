/**
 * The local fast path: QEMU keeps guest RAM in its own address space, so a process allowed to
 * ptrace QEMU can read it at memory speed from /proc/<tid>/mem of any QEMU thread (the vCPU threads
 * from query-cpus-fast are the ones QMP tells us about), at the host address `gpa2hva` names.
 *
 * The factory never throws for "this path is not available here" (no permission, no gpa2hva, QMP
 * from another host or PID namespace): it returns null and a one-line reason, and the caller falls
 * back to the gdbstub with a notice. Given a fallback backend, one page is read both ways and must
 * agree, which catches a thread id that belongs to some other process.
 *
 * Writes are off unless asked for: they bypass QEMU, so under TCG code already translated from a
 * written page keeps running the old bytes. Patch code through the gdbstub instead.
 */
import * as fsp from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { CommandError, MemoryReadError, VmiError } from '../errors';
import { withDeadline, type CallOptions } from '../util/deadline';
import { MAX_SYNC_POSITION, preadFull, pwriteFull, readFullSync } from './file-io';
import { PAGE_SIZE } from './pages';
import { checkPhysicalRange, REPLY_BLOCK, totalLength, type PhysicalMemory, type PhysicalRange } from './physical';
import { firstLine, parseGpa2hva, parseMtreeFlat, type RamRegion } from './qemu-ram-map';

/** The part of the QMP client this backend needs (declared here so memory does not import transport). */
export interface QmpPort {
  hmp(command: string): Promise<string>;
  /** A client typed `Promise<any>` fits too; the reply is checked before use. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown>;
}

export interface ProcMemOptions {
  /** Another backend (normally the gdbstub) to check one page against. */
  fallback?: PhysicalMemory;
  /** Open for writing too (see the TCG caveat above). Default false. */
  writable?: boolean;
  /** Where procfs is; tests point this at a directory with `<tid>/mem` and `<tid>/maps`. */
  procRoot?: string;
  /** Guest-physical page to compare with the fallback. Default: the first page of the first RAM range. */
  verifyAddress?: bigint;
  /** Opens a file; tests replace it to see permission errors while running as root. */
  open?: (path: string, flags: string) => Promise<FileHandle>;
}

export type ProcMemOpenResult =
  | { memory: ProcMemPhysicalMemory; reason?: undefined }
  | { memory: null; reason: string };

/** A host-backed range and where it sits in QEMU's address space. */
export interface MappedRamRegion extends RamRegion {
  host: bigint;
}

const ACCESS_CODES = new Set(['EACCES', 'EPERM']);

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException)?.code ?? (err as Error)?.message ?? String(err);
}

export class ProcMemPhysicalMemory implements PhysicalMemory {
  readonly name: string;
  /** Every reply is read into memory of its own (#readAll). */
  readonly freshReplies = true;
  readonly #fh: FileHandle;
  readonly #regions: MappedRamRegion[];
  readonly #writable: boolean;

  constructor(path: string, fh: FileHandle, regions: MappedRamRegion[], writable: boolean) {
    this.name = `procmem:${path}`;
    this.#fh = fh;
    this.#regions = regions;
    this.#writable = writable;
  }

  /** The guest-physical ranges this backend can read and their host addresses. */
  regions(): readonly MappedRamRegion[] {
    return this.#regions;
  }

  async read(address: bigint, length: number, opts?: CallOptions): Promise<Buffer> {
    checkPhysicalRange(address, length);
    return withDeadline('procmem read', this.#read(address, length), opts);
  }

  async readRanges(ranges: readonly PhysicalRange[], opts?: CallOptions): Promise<Buffer[]> {
    const total = totalLength(ranges);
    return withDeadline('procmem read', this.#readAll(ranges, total), opts);
  }

  /**
   * The ranges into a few blocks of up to REPLY_BLOCK bytes (views of them returned): a page cache
   * asks for thousands of pages at once, and one allocation per range (with its zeroing and the GC
   * pressure of its external memory) cost more than the reads themselves.
   */
  async #readAll(ranges: readonly PhysicalRange[], total: number): Promise<Buffer[]> {
    let all = Buffer.alloc(0);
    let left = total;
    const out: Buffer[] = [];
    let at = 0;
    for (const r of ranges) {
      if (at + r.length > all.length) {
        all = Buffer.allocUnsafeSlow(Math.max(r.length, Math.min(REPLY_BLOCK, left)));
        at = 0;
      }
      left -= r.length;
      const region = this.#regionAt(r.address);
      const host = region ? region.host + (r.address - region.start) : 0n;
      if (region && r.address + BigInt(r.length) <= region.end && host + BigInt(r.length) <= MAX_SYNC_POSITION) {
        const part = all.subarray(at, at + r.length);
        let n: number;
        try {
          n = readFullSync(this.#fh.fd, part, host);
        } catch (err) {
          throw new MemoryReadError(r.address, r.length, `${this.name}: ${errCode(err)} at host 0x${host.toString(16)}`, { cause: err });
        }
        if (n !== r.length) throw new MemoryReadError(r.address, r.length, `${this.name}: short read (${n} of ${r.length} bytes)`);
        out.push(part);
      } else {
        out.push(await this.#read(r.address, r.length));
      }
      at += r.length;
    }
    return out;
  }

  async write(address: bigint, data: Buffer, opts?: CallOptions): Promise<void> {
    checkPhysicalRange(address, data.length);
    if (!this.#writable) throw new VmiError('ENOTSUP', `${this.name}: opened read-only (writes bypass TCG's code cache)`);
    await withDeadline('procmem write', this.#write(address, data), opts);
  }

  async close(): Promise<void> {
    await this.#fh.close();
  }

  /** The region holding `address`, by binary search over the sorted list. */
  #regionAt(address: bigint): MappedRamRegion | undefined {
    let lo = 0;
    let hi = this.#regions.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.#regions[mid];
      if (address < r.start) hi = mid - 1;
      else if (address >= r.end) lo = mid + 1;
      else return r;
    }
    return undefined;
  }

  /** Walks the range region by region; a byte outside every region fails the read. */
  async #pieces(address: bigint, length: number, each: (r: MappedRamRegion, at: bigint, n: number, done: number) => Promise<void>): Promise<void> {
    let done = 0;
    while (done < length) {
      const at = address + BigInt(done);
      const r = this.#regionAt(at);
      if (!r) throw new MemoryReadError(address, length, `${this.name}: 0x${at.toString(16)} is not RAM or ROM (hole or device memory)`);
      const n = Number(BigInt(length - done) < r.end - at ? BigInt(length - done) : r.end - at);
      await each(r, at, n, done);
      done += n;
    }
  }

  async #read(address: bigint, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    await this.#pieces(address, length, async (r, at, n, done) => {
      let got: Buffer;
      try {
        got = await preadFull(this.#fh, r.host + (at - r.start), n);
      } catch (err) {
        throw new MemoryReadError(address, length, `${this.name}: ${errCode(err)} at host 0x${(r.host + (at - r.start)).toString(16)}`, { cause: err });
      }
      if (got.length !== n) throw new MemoryReadError(address, length, `${this.name}: short read (${got.length} of ${n} bytes)`);
      got.copy(out, done);
    });
    return out;
  }

  async #write(address: bigint, data: Buffer): Promise<void> {
    await this.#pieces(address, data.length, async (r, at, n, done) => {
      if (r.kind !== 'ram') throw new MemoryReadError(at, n, `${this.name}: ${r.name} is ${r.kind}, not writable`);
      try {
        await pwriteFull(this.#fh, r.host + (at - r.start), data.subarray(done, done + n));
      } catch (err) {
        throw new MemoryReadError(at, n, `${this.name}: write failed: ${errCode(err)}`, { cause: err });
      }
    });
  }
}

/** Host address of each region: one gpa2hva at its start, checked against one at its last byte. */
async function mapRegions(qmp: QmpPort, regions: RamRegion[]): Promise<{ mapped: MappedRamRegion[]; reason?: string }> {
  const mapped: MappedRamRegion[] = [];
  for (const r of regions) {
    const reply = await qmp.hmp(`gpa2hva 0x${r.start.toString(16)}`);
    const first = parseGpa2hva(reply);
    if (!first) {
      // The very first answer tells whether the command exists at all.
      if (mapped.length === 0 && /unknown command/i.test(reply)) return { mapped, reason: `gpa2hva unavailable: ${firstLine(reply)}` };
      continue;
    }
    const last = parseGpa2hva(await qmp.hmp(`gpa2hva 0x${(r.end - 1n).toString(16)}`));
    if (!last || last.host - first.host !== r.end - 1n - r.start) continue;
    mapped.push({ ...r, host: first.host });
  }
  if (mapped.length === 0) return { mapped, reason: 'gpa2hva mapped none of the RAM ranges' };
  return { mapped };
}

/** Host ranges present in /proc/<tid>/maps, or undefined if it cannot be read. */
async function hostMappings(procRoot: string, tid: number): Promise<{ start: bigint; end: bigint }[] | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(`${procRoot}/${tid}/maps`, 'utf8');
  } catch {
    return undefined;
  }
  const out: { start: bigint; end: bigint }[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (m) out.push({ start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`) });
  }
  return out;
}

function covered(maps: { start: bigint; end: bigint }[], start: bigint, end: bigint): boolean {
  // Mappings are sorted and may be split by permissions: walk them, requiring no gap.
  let at = start;
  for (const m of maps) {
    if (m.start <= at && at < m.end) at = m.end;
    if (at >= end) return true;
  }
  return false;
}

/**
 * Sets up the /proc/<tid>/mem backend, or says in one line why it cannot be used here.
 * Transport failures of QMP itself (disconnect, timeout, abort) are thrown, not turned into a reason.
 */
export async function openProcMem(qmp: QmpPort, opts: ProcMemOptions = {}): Promise<ProcMemOpenResult> {
  try {
    return await open(qmp, opts);
  } catch (err) {
    // A command QEMU refused (too old for query-cpus-fast, HMP unavailable) is a reason to fall
    // back; a dead or slow connection is the caller's problem and is thrown.
    if (err instanceof CommandError || !(err instanceof VmiError)) {
      return { memory: null, reason: `QMP query failed: ${firstLine((err as Error)?.message ?? String(err))}` };
    }
    throw err;
  }
}

async function open(qmp: QmpPort, opts: ProcMemOptions): Promise<ProcMemOpenResult> {
  const procRoot = opts.procRoot ?? '/proc';
  const cpus: unknown = await qmp.execute('query-cpus-fast');
  const tids = Array.isArray(cpus)
    ? cpus.map((c) => (c as Record<string, unknown>)?.['thread-id']).filter((t): t is number => Number.isSafeInteger(t) && (t as number) > 0)
    : [];
  if (tids.length === 0) return { memory: null, reason: 'query-cpus-fast gave no vCPU thread ids' };

  const regions = parseMtreeFlat(await qmp.hmp('info mtree -f'));
  if (regions.length === 0) return { memory: null, reason: 'info mtree -f listed no RAM for the system address space' };
  const { mapped, reason } = await mapRegions(qmp, regions);
  if (reason) return { memory: null, reason };

  let fh: FileHandle | undefined;
  let tid = tids[0];
  let openError = '';
  for (const t of tids) {
    try {
      fh = await (opts.open ?? fsp.open)(`${procRoot}/${t}/mem`, opts.writable ? 'r+' : 'r');
      tid = t;
      break;
    } catch (err) {
      const code = errCode(err);
      openError = ACCESS_CODES.has(code)
        ? `cannot open ${procRoot}/${t}/mem: ${code} (needs QEMU's user and ptrace permission, or root)`
        : code === 'ENOENT'
          ? `no ${procRoot}/${t}: QEMU runs on another host or in another PID namespace`
          : `cannot open ${procRoot}/${t}/mem: ${code}`;
      if (ACCESS_CODES.has(code)) break;
    }
  }
  if (!fh) return { memory: null, reason: openError };
  const path = `${procRoot}/${tid}/mem`;

  const maps = await hostMappings(procRoot, tid);
  const unmapped = maps && mapped.find((r) => !covered(maps, r.host, r.host + (r.end - r.start)));
  if (unmapped) {
    await fh.close();
    return { memory: null, reason: `${unmapped.name} at host 0x${unmapped.host.toString(16)} is not mapped in thread ${tid}: it is not this QEMU's` };
  }

  const memory = new ProcMemPhysicalMemory(path, fh, mapped, opts.writable ?? false);
  const why = await verify(memory, mapped, opts);
  if (why) {
    await memory.close();
    return { memory: null, reason: why };
  }
  return { memory };
}

/** Reads one page (both ways when there is a fallback); undefined when all is well. */
async function verify(memory: ProcMemPhysicalMemory, mapped: MappedRamRegion[], opts: ProcMemOptions): Promise<string | undefined> {
  const ram = mapped.find((r) => r.kind === 'ram') ?? mapped[0];
  const address = opts.verifyAddress ?? ram.start;
  const length = Number(ram.end - ram.start < BigInt(PAGE_SIZE) ? ram.end - ram.start : BigInt(PAGE_SIZE));
  // A running guest may change the page between the two reads: agree once in three tries.
  for (let attempt = 0; attempt < 3; attempt++) {
    let mine: Buffer;
    try {
      mine = await memory.read(address, length);
    } catch (err) {
      return `test read failed: ${(err as Error).message}`;
    }
    if (!opts.fallback) return undefined;
    let theirs: Buffer;
    try {
      theirs = await opts.fallback.read(address, length);
    } catch {
      // Nothing to compare with: trust the local read rather than give up the fast path.
      return undefined;
    }
    if (mine.equals(theirs)) return undefined;
  }
  return `${memory.name} and ${opts.fallback!.name} disagree on page 0x${address.toString(16)}`;
}
