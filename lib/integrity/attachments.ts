/**
 * Hooks made through data rather than code: every registered ftrace_ops and kprobe (read by
 * kernel/helpers/ftrace.ts), with the functions it attaches to, its handler and who owns that
 * handler (core kernel, a listed module, or code no listed module owns). A kprobe handler can
 * rewrite the registers it is given, an ftrace_ops with IPMODIFY can send the call elsewhere,
 * and a BPF program on a kprobe can override an error-injectable function's return (every
 * syscall handler is one): so on the path of an injected syscall each of them is a hook, and
 * anywhere else it is still reported.
 */
import type { CallOptions } from '../util/deadline';
import type { Kernel } from '../kernel/kernel';
import { forEachFtraceOps, forEachKprobe } from '../kernel/helpers/ftrace';
import { moduleTexts } from '../kernel/helpers/module';
import { isFatalReadError } from '../errors';
import type { SymbolMap } from './symbol-map';

const hex = (v: bigint) => `0x${v.toString(16)}`;
/** How many attached functions a finding names before it counts the rest. */
const NAMED = 4;
/** Largest trampoline taken as one (ftrace's are a page or two). */
const MAX_TRAMPOLINE = 1n << 20n;

export interface Attachment {
  kind: 'ftrace-ops' | 'kprobe';
  /** The struct ftrace_ops or struct kprobe. */
  object: bigint;
  /** Where it attaches (an ftrace_ops' filter ips, a kprobe's address); empty with `everyFunction`. */
  at: bigint[];
  /** An ftrace_ops with an empty filter: it traces every traceable function. */
  everyFunction: boolean;
  /** The code it runs: the ops' callback, the kprobe's pre-, post- and return handlers. */
  handlers: bigint[];
  /** Who owns the handlers: "core kernel", "module NAME", or where code no module owns lies. */
  owner: string;
  /** The filter was longer than what was read, or the walk that found it was cut short. */
  partial: boolean;
}

export interface AttachmentReport {
  attachments: Attachment[];
  /** Whether each structure could be read to its end (a corrupt list cuts a walk short). */
  complete: boolean;
  /** Which of the two the running kernel let vmictl read (feature detection). */
  read: { ftraceOps: boolean; kprobes: boolean };
  /** The trampolines ftrace built for registered ops ([start, end)): an enabled site may call one. */
  trampolines: Array<{ start: bigint; end: bigint }>;
}

/** Who owns the code at each address, from core text and the listed modules' text. */
async function ownerOf(kernel: Kernel, symbols: SymbolMap, addresses: bigint[], opts: CallOptions): Promise<string> {
  const code = addresses.filter((a) => a !== 0n);
  if (code.every((a) => symbols.inCoreText(a))) return 'core kernel';
  const modules = await moduleTexts(kernel, opts).catch((e: unknown) => { if (isFatalReadError(e)) throw e; return []; });
  const names = new Set<string>();
  for (const a of code) {
    if (symbols.inCoreText(a)) continue;
    const m = modules.find((t) => a >= t.start && a < t.end);
    const name = m ? (await kernel.read('module', m.module, { ...opts, upTo: 'name' }).catch(() => null))?.chars('name') : undefined;
    names.add(name ? `module ${JSON.stringify(name).slice(1, -1)}` : `no listed module (${hex(a)}, ${kernel.layout.regionOf(a)})`);
  }
  return [...names].join(', ');
}

/** Every ftrace_ops and kprobe the kernel has registered, with its owner. */
export async function tracingAttachments(kernel: Kernel, symbols: SymbolMap, opts: CallOptions = {}): Promise<AttachmentReport> {
  const out: Attachment[] = [];
  const trampolines: AttachmentReport['trampolines'] = [];
  let complete = true;
  // kprobes on ftrace sites go through one of kprobes' own ftrace_ops: the kprobe walk names those
  const kprobeOps = ['kprobe_ftrace_handler'].map((n) => symbols.address(n)).filter((a) => a !== undefined);
  const ops = await forEachFtraceOps(kernel, opts);
  if (ops) {
    complete &&= ops.complete;
    for (const o of ops.ops) {
      if (o.trampoline !== 0n && o.trampolineSize > 0n && o.trampolineSize <= MAX_TRAMPOLINE) trampolines.push({ start: o.trampoline, end: o.trampoline + o.trampolineSize });
      if (kprobeOps.includes(o.func) || o.enabled === false) continue;
      out.push({ kind: 'ftrace-ops', object: o.address, at: o.filter, everyFunction: o.filter.length === 0 && !o.filterTruncated, handlers: [o.func], owner: await ownerOf(kernel, symbols, [o.func], opts), partial: o.filterTruncated });
    }
  }
  const table = symbols.address('kprobe_table');
  const typed = kernel.profile.symbolType('kprobe_table');
  const next = table === undefined ? undefined : symbols.nextAfter(table);
  const buckets = typed?.kind === 'array' && typeof typed.count === 'number' ? typed.count : table === undefined || next === undefined ? 0 : Number((next - table) / 8n);
  const probes = await forEachKprobe(kernel, buckets, opts);
  if (probes) {
    complete &&= probes.complete;
    for (const p of probes.probes) {
      const handlers = [p.preHandler, p.postHandler, p.retHandler ?? 0n, p.entryHandler ?? 0n].filter((a) => a !== 0n);
      out.push({ kind: 'kprobe', object: p.address, at: [p.addr], everyFunction: false, handlers, owner: await ownerOf(kernel, symbols, handlers, opts), partial: false });
    }
  }
  return { attachments: out, complete, read: { ftraceOps: ops !== undefined, kprobes: probes !== undefined }, trampolines };
}

/** Where an attachment sits, in words: its functions by symbol, the first few named. */
export function attachedWhere(symbols: SymbolMap, a: Attachment): string {
  if (a.everyFunction) return 'every traceable function';
  const named = a.at.slice(0, NAMED).map((ip) => symbols.describe(ip));
  return `${named.join(', ')}${a.at.length > NAMED ? ` and ${a.at.length - NAMED} more` : ''}${a.partial ? ' (the filter was read in part)' : ''}`;
}

/** Its handlers, in words. */
export function handlerWords(symbols: SymbolMap, a: Attachment): string {
  return `${a.handlers.map((h) => symbols.inCoreText(h) ? symbols.describe(h) : hex(h)).join(', ')} (${a.owner})`;
}
