/**
 * Protection of one operation: before vmictl injects system calls, verify exactly the code and
 * data they go through (entry_SYSCALL_64, do_syscall_64/x64_sys_call, their sys_call_table
 * entries, the handlers and the functions those call directly) and, where tampered, write the
 * known-good bytes back for the time of the operation. The VM is stopped (every vCPU) while the
 * bytes change. Kernel text is mapped read-only, so writes go to the physical pages the kernel's
 * own page tables map (through the gdbstub, which keeps QEMU's translated code coherent).
 * `release()` puts the guest's bytes back (default) unless `repair` keeps the fix.
 *
 * The check re-reads the few KB involved each time rather than trusting a cache: it costs a
 * handful of pipelined reads (see `make bench`).
 */
import { VmiError } from '../errors';
import type { CallOptions } from '../util/deadline';
import type { Vm } from '../vm';
import type { Kernel } from '../kernel/kernel';
import { SYSCALLS_X86_64 } from '../inject/syscalls';
import { InjectionMemory } from '../inject/guest-memory';
import { KernelBaseline, vmlinuxPath } from './baseline';
import { checkSyscallTable, compareRegions, differenceToFinding, readRegions } from './code';
import { moduleStaticCalls } from './static-calls';
import type { Finding } from './finding';
import { tracingAttachments, handlerWords } from './attachments';
import { HookedKernelError } from './hooked-error';
import { SymbolMap } from './symbol-map';

/** The 5-byte NOP ftrace writes over `call __fentry__` at boot (ftrace_nop_replace). */
const FTRACE_NOP = Buffer.from([0x0f, 0x1f, 0x44, 0x00, 0x00]);
const PAGE = 4096n;

export interface ProtectOptions extends CallOptions {
  vmlinux?: string;
  /** Keep the known-good bytes after the operation (default: put the guest's bytes back). */
  repair?: boolean;
}

export interface Protection {
  /** What was found tampered (and restored for the operation). */
  findings: Finding[];
  /** Bytes written to restore the known-good state. */
  restoredBytes: number;
  /** Puts the guest's own bytes back (no-op with `repair`, or when nothing was changed). Idempotent. */
  release(): Promise<void>;
}

export interface Patch {
  /** Run-time virtual address. */
  address: bigint;
  good: Buffer;
  guest: Buffer;
}

/**
 * Runs `fn` with the VM stopped, restarting it afterwards only if it was running. This stop is
 * not the Vm's pause: the Vm does not learn that the VM ran in between (see protectFor).
 */
export async function stopped<T>(vm: Vm, fn: () => Promise<T>): Promise<T> {
  return vm.runState ? vm.runState.whileStopped(fn) : fn();
}

/** Writes each patch's `which` bytes to the physical pages the kernel maps them at. */
export async function writePatches(vm: Vm, kernel: Kernel, patches: readonly Patch[], which: 'good' | 'guest', opts: CallOptions): Promise<void> {
  const memory = new InjectionMemory(await vm.memory(), await vm.gdb());
  for (const p of patches) {
    const data = p[which];
    for (let off = 0; off < data.length;) {
      const va = p.address + BigInt(off);
      const n = Math.min(data.length - off, Number(PAGE - (va % PAGE)));
      const t = await kernel.space.translate(va, opts);
      await memory.write(t.physical, data.subarray(off, off + n), opts);
      off += n;
    }
  }
  kernel.invalidate();
}

export async function protectFor(vm: Vm, syscalls: readonly string[], opts: ProtectOptions & { allowHooked?: boolean } = {}): Promise<Protection> {
  if (!vm.live) throw new VmiError('EUSAGE', 'protection needs a live VM');
  const base = KernelBaseline.load(vmlinuxPath(opts.vmlinux));
  return stopped(vm, async () => {
    const kernel = await vm.kernel();
    base.assertMatches(kernel.kaslr.banner);
    // the VM may have run since these were filled (stopped() restarts it without telling the Vm)
    (await vm.memory()).invalidate();
    kernel.invalidate();
    const slide = kernel.kaslr.virtualSlide;
    const regions = base.regionsFor(syscalls);
    const numbers = syscalls.map((s) => SYSCALLS_X86_64[s]).filter((n) => n !== undefined);
    const [found, table] = await Promise.all([readRegions(kernel, regions, opts), checkSyscallTable(kernel, base, { ...opts, numbers })]);
    const diffs = compareRegions(kernel, base, regions, found, { moduleStaticCalls: await moduleStaticCalls(kernel, base, opts) });
    const findings: Finding[] = [...table];
    const patches: Patch[] = [];
    for (const f of table) {
      const link = f.address - slide;
      patches.push({ address: f.address, good: base.image.expected(link, 8, slide)!, guest: await kernel.space.read(f.address, 8, opts) });
    }
    for (const { region, diff } of diffs) {
      // widen to the patch sites the change touches, and write them in their boot-time form
      let start = diff.address, end = diff.address + BigInt(diff.found.length);
      const sites = [...base.index.covering(start), ...base.index.within(start, diff.found.length)];
      for (const s of sites) {
        if (s.address < start) start = s.address;
        if (s.address + BigInt(s.length) > end) end = s.address + BigInt(s.length);
      }
      const good = base.image.expected(start, Number(end - start), slide)!;
      for (const s of sites) if (s.kind === 'ftrace' && s.length === 5) FTRACE_NOP.copy(good, Number(s.address - start));
      const i = regions.indexOf(region);
      const from = Number(start - region.address);
      const guest = from >= 0 && from + good.length <= found[i].length
        ? Buffer.from(found[i].subarray(from, from + good.length))
        : await kernel.space.read(start + slide, good.length, opts);
      patches.push({ address: start + slide, good, guest });
      findings.push(differenceToFinding(base, diff, slide, 'inline-hook'));
    }
    // an ftrace_ops or kprobe on the path cannot be undone from the vmlinux either: refused
    const symbols = SymbolMap.of(kernel);
    const onPath = (ip: bigint) => regions.some((r) => ip >= r.address + slide && ip < r.address + slide + BigInt(r.size));
    const data = (await tracingAttachments(kernel, symbols, opts)).attachments.filter((a) => a.everyFunction || a.at.some(onPath));
    const refused = data.map((a) => {
      const at = a.everyFunction ? undefined : a.at.find(onPath)!;
      return { function: at === undefined ? 'every traceable function' : symbols.describe(at), address: at ?? a.object, how: `${a.kind === 'kprobe' ? 'a kprobe' : 'an ftrace_ops'} at 0x${a.object.toString(16)}, running ${handlerWords(symbols, a)}` };
    });
    for (const r of refused) findings.push({ kind: data[refused.indexOf(r)].kind, address: r.address, symbol: r.function, expected: 'nothing attached on the path of injected syscalls', found: r.how });
    if (refused.length > 0 && !opts.allowHooked) throw new HookedKernelError(refused);
    if (patches.length > 0) await writePatches(vm, kernel, patches, 'good', opts);
    let released = opts.repair === true || patches.length === 0;
    return {
      findings,
      restoredBytes: patches.reduce((n, p) => n + p.good.length, 0),
      async release(): Promise<void> {
        if (released) return;
        released = true;
        await stopped(vm, async () => writePatches(vm, await vm.kernel(), patches, 'guest', opts));
      },
    };
  });
}
