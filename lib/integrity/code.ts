/**
 * Checks of kernel code and the tables that lead to it, against the vmlinux baseline:
 * sys_call_table entries, the watched functions (inline hooks), all of .text, and the IDT.
 * Reads go through the kernel's own page tables, so a remapped text page is read as it runs.
 */
import type { CallOptions } from '../util/deadline';
import type { Kernel } from '../kernel/kernel';
import { SYSCALLS_X86_64 } from '../inject/syscalls';
import { compareCode, type CodeDifference, type RuntimeForms } from './compare';
import { moduleStaticCalls } from './static-calls';
import type { CodeRegion, KernelBaseline } from './baseline';
import type { Finding } from './finding';
import { relativeTarget } from './x86-forms';

const hex = (v: bigint) => `0x${v.toString(16)}`;
const NUMBER_TO_NAME = new Map(Object.entries(SYSCALLS_X86_64).map(([n, v]) => [v, n]));
const TEXT_CHUNK = 1 << 20;

/** sys_call_table entries (all, or only `numbers`) that differ from the relocated image. */
export async function checkSyscallTable(kernel: Kernel, base: KernelBaseline, opts: CallOptions & { numbers?: readonly number[] } = {}): Promise<Finding[]> {
  const slide = kernel.kaslr.virtualSlide;
  const table = base.syscallTable;
  const want = base.image.expected(table.address, table.entries * 8, slide)!;
  const found = await kernel.space.read(table.address + slide, table.entries * 8, opts);
  const out: Finding[] = [];
  const numbers = opts.numbers ?? [...Array(table.entries).keys()];
  for (const nr of numbers) {
    if (nr < 0 || nr >= table.entries) continue;
    const e = want.readBigUInt64LE(nr * 8), f = found.readBigUInt64LE(nr * 8);
    if (e === f) continue;
    out.push({
      kind: 'syscall-table',
      address: table.address + slide + BigInt(nr * 8),
      symbol: `sys_call_table[${nr}]${NUMBER_TO_NAME.has(nr) ? ` (${NUMBER_TO_NAME.get(nr)})` : ''}`,
      expected: `${hex(e)} (${base.describe(e - slide)})`,
      found: hex(f),
      detail: pointsAt(base, f, slide),
    });
  }
  return out;
}

/** Where a run-time code address lies: a vmlinux symbol, or outside the image (module/vmalloc space). */
function pointsAt(base: KernelBaseline, runtime: bigint, slide: bigint): string {
  const link = runtime - slide;
  if (base.image.sectionAt(link)) return `points at ${base.describe(link)}`;
  return `points outside the kernel image (${runtime >= 0xffffffffa0000000n ? 'module space' : 'not kernel text'})`;
}

export function differenceToFinding(base: KernelBaseline, d: CodeDifference, slide: bigint, kind: Finding['kind']): Finding {
  const jump = relativeTarget(d.found, d.address);
  return {
    kind,
    address: d.address + slide,
    symbol: base.describe(d.address),
    expected: d.expected.toString('hex'),
    found: d.found.toString('hex'),
    detail: jump ? `${jump.op} to ${hex(jump.target + slide)}: ${pointsAt(base, jump.target + slide, slide)}` : undefined,
  };
}

/** Reads the guest bytes of `regions` in one batch. */
export async function readRegions(kernel: Kernel, regions: readonly CodeRegion[], opts: CallOptions = {}): Promise<Buffer[]> {
  const slide = kernel.kaslr.virtualSlide;
  return kernel.space.readMany(regions.map((r) => ({ address: r.address + slide, length: r.size })), opts);
}

/** Unexplained changes in the given functions (the handlers a set of syscalls goes through). */
export function compareRegions(kernel: Kernel, base: KernelBaseline, regions: readonly CodeRegion[], found: readonly Buffer[], runtime: RuntimeForms = {}): Array<{ region: CodeRegion; diff: CodeDifference }> {
  const slide = kernel.kaslr.virtualSlide;
  const out: Array<{ region: CodeRegion; diff: CodeDifference }> = [];
  regions.forEach((r, i) => {
    for (const diff of compareCode(base.image, base.index, r.address, found[i], slide, undefined, runtime)) out.push({ region: r, diff });
  });
  return out;
}

export async function checkRegions(kernel: Kernel, base: KernelBaseline, regions: readonly CodeRegion[], opts: CallOptions = {}): Promise<Finding[]> {
  const found = await readRegions(kernel, regions, opts);
  return compareRegions(kernel, base, regions, found, { moduleStaticCalls: await moduleStaticCalls(kernel, base, opts) }).map(({ diff }) => differenceToFinding(base, diff, kernel.kaslr.virtualSlide, 'inline-hook'));
}

/** All of .text; a change inside a watched function is an inline hook, elsewhere a text change. */
export async function checkText(kernel: Kernel, base: KernelBaseline, watched: readonly CodeRegion[], opts: CallOptions = {}): Promise<Finding[]> {
  const slide = kernel.kaslr.virtualSlide;
  const text = base.image.section('.text')!;
  const want = base.image.relocatedSection('.text', slide);
  const out: Finding[] = [];
  const runtime = { moduleStaticCalls: await moduleStaticCalls(kernel, base, opts) };
  // a change in any system call handler is an inline hook too, watched or not
  const inWatched = (a: bigint) => watched.some((r) => a >= r.address && a < r.address + BigInt(r.size)) ||
    /^(__x64_sys_|__ia32_sys_|__do_sys_|__se_sys_|__x64_compat_sys_)/.test(base.image.functionContaining(a)?.name ?? '');
  for (let off = 0; off < text.size; off += TEXT_CHUNK) {
    // overlap chunks by a little so that a patch site on a boundary is seen whole
    const end = Math.min(text.size, off + TEXT_CHUNK + 64);
    const found = await kernel.space.read(text.addr + BigInt(off) + slide, end - off, opts);
    for (const d of compareCode(base.image, base.index, text.addr + BigInt(off), found, slide, want.subarray(off, end), runtime)) {
      if (d.address >= text.addr + BigInt(off + TEXT_CHUNK)) continue;
      out.push(differenceToFinding(base, d, slide, inWatched(d.address) ? 'inline-hook' : 'text'));
    }
  }
  return out;
}

/**
 * The IDT (idt_table): every present gate must enter the kernel's code segment at an entry stub
 * of the image (asm_* handlers, or one of the irq_entries_start / spurious_entries_start stubs).
 * Which vector gets which stub is set up at run time, so the rule is per stub, not per vector;
 * a recorded baseline (`check --baseline`) pins the exact table.
 */
export async function checkIdt(kernel: Kernel, base: KernelBaseline, opts: CallOptions = {}): Promise<Finding[]> {
  const slide = kernel.kaslr.virtualSlide;
  const idt = kernel.symbol('idt_table');
  const bytes = await kernel.space.read(idt, 256 * 16, opts);
  const stubs = ['irq_entries_start', 'spurious_entries_start'].map((n) => base.image.symbol(n)).filter((s) => s !== undefined);
  const early = base.image.symbol('early_idt_handler_array');
  const out: Finding[] = [];
  for (let v = 0; v < 256; v++) {
    const g = bytes.subarray(v * 16, v * 16 + 16);
    const bits = g.readUInt16LE(4);
    if (!(bits & 0x8000)) continue;
    const target = BigInt(g.readUInt16LE(0)) | (BigInt(g.readUInt16LE(6)) << 16n) | (BigInt(g.readUInt32LE(8)) << 32n);
    const link = target - slide;
    const f = base.image.functionAt(link);
    let ok = g.readUInt16LE(2) === 0x10 && f !== undefined && /^(asm_|entry_INT80|xen_asm_)/.test(f.name);
    // IRQ_STUB_SIZE is 8 bytes, 16 with IBT's ENDBR64 (6.2+ built with CONFIG_X86_KERNEL_IBT)
    if (!ok && g.readUInt16LE(2) === 0x10) ok = stubs.some((s) => link >= s!.address && link < s!.address + 16n * 256n && (link - s!.address) % 8n === 0n);
    // exception vectors no handler claims keep the gate idt_setup_early_handler() set:
    // early_idt_handler_array[v] (EARLY_IDT_HANDLER_SIZE: 9 bytes, 13 with IBT's ENDBR64), in init
    // text freed since
    if (!ok && g.readUInt16LE(2) === 0x10 && v < 32 && early) ok = link === early.address + BigInt(9 * v) || link === early.address + BigInt(13 * v);
    if (ok) continue;
    out.push({
      kind: 'idt',
      address: idt + BigInt(v * 16),
      symbol: `idt_table[${v}]`,
      expected: 'a gate to an entry stub of the kernel image (selector 0x10)',
      found: `${g.toString('hex')} (selector ${hex(BigInt(g.readUInt16LE(2)))}, target ${hex(target)})`,
      detail: pointsAt(base, target, slide),
    });
  }
  return out;
}
