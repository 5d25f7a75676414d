/**
 * Integrity without a vmlinux: what good is can still be told from the guest's own kallsyms and
 * the code itself.
 *   sys_call_table[n] must be the kallsyms address of n's own handler (`__x64_sys_<entry>`, the
 *     entry point syscall_64.tbl names), or sys_ni_syscall where the kernel has none; entries
 *     vmictl has no name for must still start a `__x64_sys_*`/ni symbol in core kernel text. The
 *     ia32 (and x32) tables, when present, must point at their ABI's handlers.
 *   The functions injected syscalls go through (entry_SYSCALL_64, do_syscall_64, x64_sys_call, the
 *     handlers and the functions they call directly) must not leave core kernel text (hooks.ts);
 *     each handler's ftrace site must be in the state the kernel's own ftrace record gives it, and
 *     its first instruction after the site must not return or leave at once (prologue.ts).
 *   No ftrace_ops or kprobe may be attached to those functions (attachments.ts).
 *   Every present IDT gate must enter core kernel text at an interrupt entry point.
 * What this cannot see: a change that stays inside core text past a handler's first instruction
 * (a body rewritten in place, a branch bent to other kernel code), functions outside the watched
 * set, a table entry swapped for another handler of an unnamed (newer) number, and data hooks
 * other than ftrace_ops and kprobes (notifier chains, LSM hook lists). `check --vmlinux` sees the
 * code changes.
 */
import type { CallOptions } from '../util/deadline';
import type { Kernel } from '../kernel/kernel';
import type { KernelLayout } from '../kernel/layout';
import { SYSCALLS_X86_64, syscallName } from '../inject/syscalls';
import { VmiError } from '../errors';
import { SymbolMap } from './symbol-map';
import { scanFunction, type FtraceSite, type Hook, type ScanContext } from './hooks';
import type { Finding, FindingKind } from './finding';
import { ftraceRecordsIn } from '../kernel/helpers/ftrace';
import { attachedWhere, handlerWords, tracingAttachments, type Attachment, type AttachmentReport } from './attachments';

const hex = (v: bigint) => `0x${v.toString(16)}`;
/** syscall_64.tbl entry points that are not `sys_<name>` (64-bit and common ABIs). */
const ENTRY_POINT: Readonly<Record<string, string>> = { stat: 'newstat', fstat: 'newfstat', lstat: 'newlstat', uname: 'newuname', umount2: 'umount', sendfile: 'sendfile64' };
/** Numbers syscall_64.tbl gives no 64-bit entry point (32-bit only), though their __x64_sys_ symbol exists. */
const NO_ENTRY = new Set(['uselib', 'set_thread_area', 'get_thread_area']);
const NI = ['__x64_sys_ni_syscall', 'sys_ni_syscall'];
const MAX_TABLE = 1024;

/** What each table's entries must point at. */
const TABLES = [
  { name: 'sys_call_table', handler: /^(__x64_sys_|sys_ni_syscall$)/ },
  { name: 'ia32_sys_call_table', handler: /^(__ia32_sys_|__ia32_compat_sys_|__x64_sys_ni_syscall$|sys_ni_syscall$)/ },
  { name: 'x32_sys_call_table', handler: /^(__x64_sys_|__x32_compat_sys_|sys_ni_syscall$)/ },
] as const;

/** The handler symbol of a 64-bit syscall by name. */
export function handlerName(syscall: string): string {
  return `__x64_sys_${ENTRY_POINT[syscall] ?? syscall}`;
}

/** Where `addr` points, in words for a finding (the region from the running kernel's layout). */
export function pointsAt(symbols: SymbolMap, layout: KernelLayout, addr: bigint): string {
  if (symbols.inCoreText(addr)) return `points at ${symbols.describe(addr)}`;
  const region = layout.regionOf(addr);
  return `points outside core kernel text (${region === 'user space' || region === 'non-canonical' ? `not a kernel address: ${region}` : region})`;
}

/** The address of sys_ni_syscall (either name). */
function niAddress(symbols: SymbolMap): bigint | undefined {
  for (const n of NI) {
    const a = symbols.address(n);
    if (a !== undefined) return a;
  }
  return undefined;
}

/** The x64 handler sys_call_table[nr] must hold, when vmictl knows nr's name. */
export function expectedEntry(symbols: SymbolMap, nr: number): { address: bigint; name: string } | undefined {
  const name = syscallName(nr);
  if (name === undefined) return undefined;
  const h = handlerName(name);
  const a = NO_ENTRY.has(name) ? undefined : symbols.address(h);
  if (a !== undefined) return { address: a, name: h };
  const ni = niAddress(symbols);
  return ni === undefined ? undefined : { address: ni, name: 'sys_ni_syscall' };
}

/** Number of entries of a table: up to the next symbol, without the zero padding after it. */
function tableLength(bytes: Buffer): number {
  let n = bytes.length / 8;
  while (n > 0 && bytes.readBigUInt64LE((n - 1) * 8) === 0n) n--;
  return n;
}

export interface TableCheckOptions extends CallOptions {
  /** Only these x64 numbers (the guard); default: every entry of every table. */
  numbers?: readonly number[];
}

/** Findings for the syscall tables, and for each x64 finding the handler address it should hold. */
export async function checkTablesFromSymbols(kernel: Kernel, opts: TableCheckOptions = {}): Promise<TableFinding[]> {
  const symbols = SymbolMap.of(kernel);
  const out: TableFinding[] = [];
  for (const table of TABLES) {
    const start = symbols.address(table.name);
    if (start === undefined) continue;
    if (opts.numbers && table.name !== 'sys_call_table') continue;
    const next = symbols.nextAfter(start);
    const span = Math.min(MAX_TABLE * 8, next === undefined ? MAX_TABLE * 8 : Number(next - start)) & ~7;
    out.push(...tableFindings(symbols, kernel.layout, table.name, start, await kernel.space.read(start, span, opts), opts.numbers));
  }
  return out;
}

export type TableFinding = Finding & { good?: bigint };

/**
 * The entries of one table (`bytes`, read from `start` up to the next symbol) that do not hold
 * what they must; `numbers` limits the x64 table to those entries.
 */
export function tableFindings(symbols: SymbolMap, layout: KernelLayout, tableName: typeof TABLES[number]['name'], start: bigint, bytes: Buffer, numbers?: readonly number[]): TableFinding[] {
  const table = TABLES.find((t) => t.name === tableName)!;
  const out: TableFinding[] = [];
  const entries = tableLength(bytes);
  const x64 = table.name === 'sys_call_table';
  for (const nr of x64 && numbers ? numbers : [...Array(entries).keys()]) {
    if (nr < 0 || nr >= entries) continue;
    const found = bytes.readBigUInt64LE(nr * 8);
    const want = x64 ? expectedEntry(symbols, nr) : undefined;
    let ok: boolean;
    let expected: string;
    if (want) {
      ok = found === want.address;
      expected = `${hex(want.address)} (${want.name})`;
    } else {
      ok = symbols.inCoreText(found) && symbols.namesAt(found).some((n) => table.handler.test(n));
      expected = `the start of a ${x64 ? '__x64_sys_*' : table.name.startsWith('ia32') ? '__ia32_sys_*' : 'x32'} handler or sys_ni_syscall in core kernel text`;
    }
    if (ok) continue;
    const name = x64 ? syscallName(nr) : undefined;
    out.push({
      kind: 'syscall-table',
      address: start + BigInt(nr * 8),
      symbol: `${table.name}[${nr}]${name ? ` (${name})` : ''}`,
      expected,
      found: hex(found),
      detail: pointsAt(symbols, layout, found),
      good: want?.address,
    });
  }
  return out;
}

/** Number of entries of sys_call_table (without the padding after it), for the summary. */
export async function syscallTableEntries(kernel: Kernel, opts: CallOptions = {}): Promise<number> {
  const symbols = SymbolMap.of(kernel);
  const start = symbols.address('sys_call_table');
  if (start === undefined) return 0;
  const next = symbols.nextAfter(start);
  const span = Math.min(MAX_TABLE * 8, next === undefined ? MAX_TABLE * 8 : Number(next - start)) & ~7;
  return tableLength(await kernel.space.read(start, span, opts));
}

export interface WatchedFunction {
  name: string;
  address: bigint;
  role: 'entry' | 'dispatch' | 'handler' | 'callee';
}

export interface FunctionHook extends Hook {
  function: WatchedFunction;
  /** A hook made through data (an ftrace_ops or kprobe on the function), not in its code. */
  kind?: Extract<FindingKind, 'ftrace-ops' | 'kprobe'>;
}

export interface ScanReport {
  hooks: FunctionHook[];
  functions: WatchedFunction[];
  /** Bytes of code decoded. */
  bytes: number;
  /** Handlers whose ftrace site the kernel's own records told (where it is, and its state). */
  recordedSites: number;
  /** Every registered ftrace_ops and kprobe; those on a watched function are in `hooks` too. */
  tracing: AttachmentReport;
  /** The attachments on none of the watched functions. */
  offPath: Attachment[];
}

/**
 * The functions `syscalls` go through, scanned for hooks: the entry, the dispatch, each handler,
 * and (found by decoding the handlers) the functions the handlers call directly.
 */
export async function scanSyscallPaths(kernel: Kernel, syscalls: readonly string[], opts: CallOptions & { otherAbis?: boolean } = {}): Promise<ScanReport> {
  const symbols = SymbolMap.of(kernel);
  const ctx: ScanContext = { symbols, read: (a, n) => kernel.space.read(a, n, opts).catch(() => null) };
  const watched = new Map<bigint, WatchedFunction>();
  const add = (name: string, role: WatchedFunction['role']) => {
    const a = symbols.address(name);
    if (a !== undefined && symbols.inCoreText(a) && !watched.has(a)) watched.set(a, { name, address: a, role });
  };
  add('entry_SYSCALL_64', 'entry');
  add('do_syscall_64', 'dispatch');
  add('x64_sys_call', 'dispatch');
  // the 32-bit dispatch is off vmictl's path (it injects into 64-bit processes): `check` only
  if (opts.otherAbis) for (const d of ['ia32_sys_call', 'x32_sys_call', 'do_int80_syscall_32', 'do_fast_syscall_32']) add(d, 'dispatch');
  for (const s of syscalls) {
    if (SYSCALLS_X86_64[s] === undefined) throw new VmiError('EUSAGE', `unknown system call ${JSON.stringify(s)}`);
    add(handlerName(s), 'handler');
  }
  const hooks: FunctionHook[] = [];
  let bytes = 0;
  // the kernel's own ftrace records say where each handler's site is and which state it must be in
  const handlers = [...watched.values()].filter((f) => f.role === 'handler');
  const records = await ftraceRecordsIn(kernel, handlers.map((f) => ({ start: f.address, end: f.address + 16n })), opts);
  const sites = new Map<bigint, FtraceSite>();
  for (const f of handlers) {
    const r = records?.records.filter((x) => x.ip >= f.address && x.ip < f.address + 16n) ?? [];
    if (r.length === 1) sites.set(f.address, { offset: Number(r[0].ip - f.address), enabled: r[0].enabled });
  }
  const tracing = await tracingAttachments(kernel, symbols, opts);
  const trampolines = tracing.trampolines;
  ctx.isOpsTrampoline = (a) => trampolines.some((t) => a >= t.start && a < t.end);
  const scan = async (fns: WatchedFunction[]): Promise<bigint[]> => {
    const codes = await kernel.space.readMany(fns.map((f) => ({ address: f.address, length: symbols.extentFrom(f.address) })), opts);
    const callees: bigint[] = [];
    for (let i = 0; i < fns.length; i++) {
      const f = fns[i];
      const r = await scanFunction(codes[i], f.address, ctx, { traceable: f.role === 'handler', site: sites.get(f.address) });
      bytes += r.decoded;
      for (const h of r.hooks) hooks.push({ ...h, function: f });
      if (f.role === 'handler') callees.push(...r.callees);
    }
    return callees;
  };
  const first = [...watched.values()];
  const callees = await scan(first);
  const second: WatchedFunction[] = [];
  for (const c of callees) {
    if (watched.has(c)) continue;
    const f: WatchedFunction = { name: symbols.namesAt(c)[0] ?? hex(c), address: c, role: 'callee' };
    watched.set(c, f);
    second.push(f);
  }
  await scan(second);
  // a data hook on a watched function is a hook on the path, refused like code nobody can put back
  const offPath: Attachment[] = [];
  for (const a of tracing.attachments) {
    const words = (at: string) => `${a.kind === 'kprobe' ? 'a kprobe' : 'an ftrace_ops'} at ${hex(a.object)} attached to ${at}, running ${handlerWords(symbols, a)}`;
    if (a.everyFunction) {
      hooks.push({ address: a.object, bytes: Buffer.alloc(0), how: words('every traceable function'), fentry: false, function: { name: 'every traceable function', address: a.object, role: 'callee' }, kind: a.kind });
      continue;
    }
    const on = [...watched.values()].filter((f) => a.at.some((ip) => ip >= f.address && ip < f.address + BigInt(symbols.extentFrom(f.address))));
    if (on.length === 0) { offPath.push(a); continue; }
    for (const f of on) {
      const ip = a.at.find((x) => x >= f.address && x < f.address + BigInt(symbols.extentFrom(f.address))) ?? f.address;
      hooks.push({ address: ip, bytes: Buffer.alloc(0), how: words(symbols.describe(ip)), fentry: false, function: f, kind: a.kind });
    }
  }
  return { hooks, functions: [...watched.values()], bytes, recordedSites: sites.size, tracing, offPath };
}

/** A finding for an attachment on none of the watched functions, when its code is not the core kernel's. */
export function offPathFinding(symbols: SymbolMap, a: Attachment): Finding {
  return {
    kind: a.kind,
    address: a.object,
    symbol: `${a.kind === 'kprobe' ? 'kprobe' : 'ftrace_ops'} on ${attachedWhere(symbols, a)}`,
    expected: 'function tracing run by core kernel code only',
    found: `handler ${handlerWords(symbols, a)}`,
  };
}

/** What restorable bytes are, in words. */
function goodBytes(good: Buffer): string {
  if (good.length === 5 && good[0] === 0xf3) return 'ENDBR64 and the first byte of the ftrace NOP';
  if (good.length === 1) return 'the first byte of the ftrace NOP';
  return 'the ftrace NOP';
}

export function hookToFinding(symbols: SymbolMap, layout: KernelLayout, h: FunctionHook): Finding {
  if (h.kind) return { kind: h.kind, address: h.address, symbol: h.function.name === 'every traceable function' ? h.function.name : symbols.describe(h.address), expected: 'nothing attached on the path of injected syscalls', found: h.how };
  return {
    kind: 'inline-hook',
    address: h.address,
    symbol: symbols.describe(h.address),
    expected: h.good ? `${h.good.toString('hex')} (${goodBytes(h.good)})` : h.fentry ? 'the ftrace NOP or a call to an ftrace trampoline' : 'code that stays in core kernel text',
    found: h.bytes.toString('hex'),
    detail: `${h.how}${h.target !== undefined ? `: ${pointsAt(symbols, layout, h.target)}` : ''}`,
  };
}

/** Entry stubs a gate may point at by symbol name. */
const IDT_ENTRY = /^(asm_|entry_INT80|xen_asm_|asm_sysvec_|asm_exc_)/;

/**
 * The IDT: every present gate enters core kernel text (selector 0x10) at an interrupt entry point
 * kallsyms names (asm_*), or one of the irq_entries_start/spurious_entries_start stubs (8 or, with
 * IBT, 16 bytes apart), or the early handler of an exception vector nobody claimed.
 */
export async function checkIdtFromSymbols(kernel: Kernel, opts: CallOptions = {}): Promise<Finding[]> {
  const idt = kernel.symbol('idt_table');
  return idtFindings(SymbolMap.of(kernel), kernel.layout, idt, await kernel.space.read(idt, 256 * 16, opts));
}

/** The gates of an IDT (`bytes` at `idt`) that do not enter an interrupt entry point. */
export function idtFindings(symbols: SymbolMap, layout: KernelLayout, idt: bigint, bytes: Buffer): Finding[] {
  const stubs = ['irq_entries_start', 'spurious_entries_start'].map((n) => symbols.address(n)).filter((a) => a !== undefined);
  const early = symbols.address('early_idt_handler_array');
  const out: Finding[] = [];
  for (let v = 0; v < 256; v++) {
    const g = bytes.subarray(v * 16, v * 16 + 16);
    if (!(g.readUInt16LE(4) & 0x8000)) continue;
    const target = BigInt(g.readUInt16LE(0)) | (BigInt(g.readUInt16LE(6)) << 16n) | (BigInt(g.readUInt32LE(8)) << 32n);
    const selector = g.readUInt16LE(2);
    let ok = false;
    if (selector === 0x10) {
      if (symbols.inCoreText(target)) {
        ok = symbols.namesAt(target).some((n) => IDT_ENTRY.test(n)) ||
          stubs.some((s) => target >= s && target < s + 16n * 256n && (target - s) % 8n === 0n);
      }
      // exception vectors no handler claims keep idt_setup_early_handler()'s gate:
      // EARLY_IDT_HANDLER_SIZE is 9 bytes, 13 with IBT's ENDBR64 in front (6.2+)
      if (!ok && v < 32 && early !== undefined) ok = target === early + BigInt(9 * v) || target === early + BigInt(13 * v);
    }
    if (ok) continue;
    out.push({
      kind: 'idt',
      address: idt + BigInt(v * 16),
      symbol: `idt_table[${v}]`,
      expected: 'a gate to an interrupt entry point in core kernel text (selector 0x10)',
      found: `${g.toString('hex')} (selector ${hex(BigInt(selector))}, target ${hex(target)})`,
      detail: pointsAt(symbols, layout, target),
    });
  }
  return out;
}
