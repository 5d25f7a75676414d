/**
 * The kernel walkers over a hostile guest: a synthetic guest (tasks, threads, a container with
 * its own namespaces, cgroups, command lines, executables) whose memory an input corrupts before
 * `ps` reads it: pointers turned into cycles, into unmapped or non-canonical or huge addresses,
 * lengths near 2^32 and 2^64, strings whose terminator is overwritten. Then the whole of what
 * `ps`/`top`/`inspect` do: the task list, each task's pids, credentials, namespaces, cgroup path
 * (kernfs), command line (its own page tables), executable path (d_path), grouping, rendering.
 *
 * Besides ending in a result or a VmiError, the result must respect the limits asked for, and
 * the rendered text must be terminal-safe and the JSON valid, whatever bytes the guest holds.
 */
import { listContainers } from '../../../lib/containers/list';
import { VmiError } from '../../../lib/errors';
import { Kernel } from '../../../lib/kernel/kernel';
import type { PhysicalMemory, PhysicalRange } from '../../../lib/memory/physical';
import { tasksOf } from '../../../lib/containers/model';
import { renderPs, renderTop } from '../../../cli/render/containers';
import { renderInspect } from '../../../cli/render/inspect';
import { loadDisplayWidth } from '../../../cli/render/width';
import { SyntheticGuest, UNMAPPED_KERNEL } from '../../helpers/synthetic-kernel';
import type { SparseMemory } from '../../helpers/sparse-memory';
import { INTERESTING_64, type Harness } from '../engine';

const MAX_TASKS = 64;
const MAX_CMDLINE = 2048;

/** A copy-on-write view of the base guest's memory: each input starts from the same image. */
class Overlay implements PhysicalMemory {
  readonly name = 'fuzz-overlay';
  readonly #pages = new Map<bigint, Buffer>();
  constructor(readonly base: SparseMemory) {}

  /** Like a PageCache: views above may cache translations until the next input (reset). */
  generation = 0;

  reset(): void {
    this.#pages.clear();
    this.generation++;
  }

  poke(pa: bigint, data: Buffer): void {
    for (let done = 0; done < data.length;) {
      const at = pa + BigInt(done);
      if (at < 0n || at >= this.base.ramSize) return;
      const key = at >> 12n;
      let page = this.#pages.get(key);
      if (!page) this.#pages.set(key, (page = Buffer.from(this.base.pages.get(key) ?? Buffer.alloc(4096))));
      const off = Number(at & 0xfffn);
      const n = Math.min(4096 - off, data.length - done);
      data.copy(page, off, done, done + n);
      done += n;
    }
  }

  readSync(address: bigint, length: number): Buffer {
    if (this.#pages.size === 0) return this.base.readSync(address, length);
    const out = this.base.readSync(address, length);
    for (let done = 0; done < length;) {
      const at = address + BigInt(done);
      const off = Number(at & 0xfffn);
      const n = Math.min(4096 - off, length - done);
      this.#pages.get(at >> 12n)?.copy(out, done, off, off + n);
      done += n;
    }
    return out;
  }

  async read(address: bigint, length: number): Promise<Buffer> {
    return this.readSync(address, length);
  }

  async readRanges(ranges: readonly PhysicalRange[]): Promise<Buffer[]> {
    return ranges.map((r) => this.readSync(r.address, r.length));
  }
}

interface Slot {
  /** Kernel virtual address of the field. */
  va: bigint;
  kind: 'pointer' | 'int' | 'string';
  /** Size in bytes (strings: the array size). */
  size: number;
}

interface Base {
  guest: SyntheticGuest;
  slots: Slot[];
  /** The one overlay every input corrupts (reset in between), and a kernel opened on it clean. */
  mem: Overlay;
  kernel?: Kernel;
  runs: number;
}

let base: Base | undefined;

const EVIL = '\x1b]0;pwned\x07\u009b\u202e';

function build(): Base {
  const g = new SyntheticGuest();
  const init = g.addTask({ pid: 1, comm: 'init', cmdline: ['/sbin/init'], exe: '/sbin/init', cgroup: '/init.scope' });
  const ctr = 'f0'.repeat(32);
  const ns = g.namespaces({ inums: { pid: 4026532501, mnt: 4026532502, uts: 4026532503, net: 4026532504, ipc: 4026532505 }, hostname: `web${EVIL}` });
  const leader = g.addTask({ pid: 400, nsPids: [1], ns, comm: `nginx${EVIL}`, cmdline: ['nginx', '-g', `daemon off;${EVIL}`], exe: '/usr/sbin/nginx', cgroup: `/system.slice/docker-${ctr}.scope`, parent: init });
  g.addThread(leader, { pid: 401, nsPids: [2], ns, comm: 'nginx-worker' });
  g.addTask({ pid: 2, comm: 'kthreadd', kernelThread: true });
  g.addTask({ pid: 600, comm: 'cron', cmdline: ['/usr/sbin/cron', '-f'], exe: '/usr/sbin/cron', cgroup: '/system.slice/cron.service', parent: init });

  // Slots: every 8-byte word of the heap and the image that holds a kernel pointer, and the
  // integer and character fields the walkers read (pid level, qstr len, arg_start/arg_end, comm,
  // nodename, the names kernfs nodes and dentries point to).
  const slots: Slot[] = [];
  const seen = new Set<bigint>();
  const PAGE_OFFSET = 0xffff888000000000n;
  for (const [page, bytes] of g.mem.pages) {
    for (let off = 0; off < 4096; off += 8) {
      const v = bytes.readBigUInt64LE(off);
      if (v < 0xffff800000000000n) continue;
      const pa = (page << 12n) + BigInt(off);
      // the kernel image's own page tables stay intact: the kernel must still be found
      if (pa >= g.physicalBase + 0x600000n && pa < g.physicalBase + 0x601000n) continue;
      const va = pa >= g.physicalBase && pa < g.physicalBase + 0x800000n ? g.symbol('_text') + (pa - g.physicalBase) : PAGE_OFFSET + pa;
      if (seen.has(va)) continue;
      seen.add(va);
      slots.push({ va, kind: 'pointer', size: 8 });
      // what the pointer points at may be a string (names) or a struct with lengths
      if (v >= PAGE_OFFSET && v < PAGE_OFFSET + g.ramSize) slots.push({ va: v, kind: 'string', size: 24 });
    }
  }
  for (const t of g.taskList.flatMap((x) => x.group).concat([g.initTask])) {
    slots.push({ va: t.address + g.offset('task_struct', 'comm'), kind: 'string', size: 16 });
    slots.push({ va: t.address + g.offset('task_struct', 'pid'), kind: 'int', size: 4 });
    slots.push({ va: t.pidStruct + g.offset('pid', 'level'), kind: 'int', size: 4 });
    if (t.mm !== 0n) {
      slots.push({ va: t.mm + g.offset('mm_struct', 'arg_start'), kind: 'int', size: 8 });
      slots.push({ va: t.mm + g.offset('mm_struct', 'arg_end'), kind: 'int', size: 8 });
    }
  }
  slots.push({ va: ns.uts + g.offset('uts_namespace', 'name.nodename'), kind: 'string', size: 65 });
  for (const path of ['/usr/sbin/nginx', '/sbin/init']) {
    slots.push({ va: g.dentry(path) + g.offset('dentry', 'd_name.len'), kind: 'int', size: 4 });
  }
  return { guest: g, slots, mem: new Overlay(g.mem), runs: 0 };
}

/** Applies the corruptions an input describes: 12-byte records [op][slot u16][arg u8][value u64]. */
function corrupt(b: Base, mem: Overlay, input: Buffer): void {
  const g = b.guest;
  const phys = (va: bigint): bigint | undefined => {
    try { return g.physOf(va); } catch { return undefined; }
  };
  const put = (va: bigint, bytes: Buffer) => {
    const pa = phys(va);
    if (pa !== undefined) mem.poke(pa, bytes);
  };
  const u64 = (v: bigint) => { const x = Buffer.alloc(8); x.writeBigUInt64LE(BigInt.asUintN(64, v)); return x; };
  for (let i = 0; i + 12 <= input.length && i < 12 * 64; i += 12) {
    const op = input[i]! % 8;
    const slot = b.slots[input.readUInt16LE(i + 1) % b.slots.length]!;
    const arg = input[i + 3]!;
    const value = input.readBigUInt64LE(i + 4);
    const other = b.slots[Number(value % BigInt(b.slots.length))]!;
    switch (op) {
      case 0: // an interesting value (0, -1, 2^63, near the kernel half...)
        put(slot.va, u64(INTERESTING_64[arg % INTERESTING_64.length]!).subarray(0, slot.size === 4 ? 4 : 8));
        break;
      case 1: // a pointer to another slot's field: cycles and aliasing
        put(slot.va, u64(other.va - BigInt(arg % 64) * 8n));
        break;
      case 2: // a pointer back into its own struct (self-loops)
        put(slot.va, u64(slot.va - BigInt(arg) * 8n));
        break;
      case 3: // unmapped kernel memory, a user address, a non-canonical one
        put(slot.va, u64([UNMAPPED_KERNEL, 0x00007ffd00001000n, 0x4141414141414141n, 0xffffffffffffffffn - BigInt(arg)][arg % 4]!));
        break;
      case 4: // an unterminated string: the bytes through the terminator and beyond set
        put(slot.va, Buffer.alloc(Math.min(slot.size + (arg % 48), 256), arg & 1 ? 0x41 : 0xff));
        break;
      case 5: // a raw value
        put(slot.va, u64(value).subarray(0, slot.size === 4 ? 4 : 8));
        break;
      case 6: // a length near the top of its width
        put(slot.va, slot.size === 4 ? u64(0xffffffffn - BigInt(arg)).subarray(0, 4) : u64(value | 0x7fff000000000000n));
        break;
      default: // raw bytes anywhere near the slot
        put(slot.va + BigInt(arg % 64) - 32n, u64(value));
    }
  }
}

// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

function record(op: number, slot: number, arg: number, value: bigint): Buffer {
  const r = Buffer.alloc(12);
  r[0] = op;
  r.writeUInt16LE(slot, 1);
  r[3] = arg;
  r.writeBigUInt64LE(value, 4);
  return r;
}

export const kernelWalkers: Harness = {
  name: 'kernel-walkers',
  maxLength: 12 * 64,
  slowMs: 3000,
  seeds: () => {
    const out = [Buffer.alloc(0)];
    for (let op = 0; op < 8; op++) out.push(Buffer.concat([record(op, 7 * op + 3, 5 * op, BigInt(op) * 977n), record((op + 3) % 8, 31 * op + 11, op, 12345n)]));
    return out;
  },
  async run(input) {
    await loadDisplayWidth();
    base ??= build();
    const mem = base.mem;
    mem.reset();
    base.kernel ??= await Kernel.open(mem, base.guest.profile, { ram: base.guest.ram });
    corrupt(base, mem, input);
    mem.generation++;
    // Finding the kernel (KASLR, init_task) in corrupted memory is checked on every 16th input;
    // the others reuse the kernel found in the clean image (opening costs as much as the walk).
    let kernel = base.kernel;
    kernel.invalidate();
    if (base.runs++ % 16 === 0) {
      try {
        kernel = await Kernel.open(mem, base.guest.profile, { ram: base.guest.ram });
      } catch (err) {
        if (err instanceof VmiError) return;
        throw err;
      }
    }
    let list;
    try {
      list = await listContainers(kernel, { maxTasks: MAX_TASKS, maxCmdline: MAX_CMDLINE });
    } catch (err) {
      if (err instanceof VmiError) return;
      throw err;
    }
    const all = [list.host, ...list.containers];
    const tasks = all.flatMap((c) => c.processes.flatMap((p) => tasksOf(p)));
    if (tasks.length > MAX_TASKS) throw new Error(`${tasks.length} tasks read with maxTasks ${MAX_TASKS}`);
    for (const t of tasks) {
      const bytes = Buffer.byteLength((t.cmdline ?? []).join('\0'));
      if (bytes > 3 * MAX_CMDLINE) throw new Error(`a command line of ${bytes} bytes with maxCmdline ${MAX_CMDLINE}`);
      if (t.comm.length > 16) throw new Error(`comm of ${t.comm.length} characters`);
    }
    if (list.warnings.length > 1000) throw new Error(`${list.warnings.length} warnings`);
    // whatever the guest wrote, the output is terminal-safe and the JSON parses (checked on every
    // 4th input: rendering costs a third of the walk)
    if (base.runs % 4 !== 1) return;
    const texts = [renderPs(all, { all: true, host: true, width: 120 }), ...all.slice(0, 4).map((c) => renderTop(c, { width: 120 }))];
    for (const text of texts) if (RAW_CONTROL.test(text.replace(/\n/g, ''))) throw new Error(`raw control character in rendered output: ${JSON.stringify(text.slice(0, 300))}`);
    for (const json of [renderPs(all, { json: true, all: true, host: true }), renderInspect(all, { kernelAddresses: true }), ...all.slice(0, 4).map((c) => renderTop(c, { json: true }))]) {
      if (RAW_CONTROL.test(json.replace(/\n/g, ''))) throw new Error('raw control character in JSON output');
      JSON.parse(json);
    }
  },
};
