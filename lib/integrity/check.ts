/**
 * `vmictl check`: every difference between the guest kernel and its known-good state, with the
 * VM stopped while memory is read.
 */
import type { CallOptions } from '../util/deadline';
import type { Vm } from '../vm';
import { existsSync } from 'node:fs';
import { INJECTED_SYSCALLS, KernelBaseline, vmlinuxPath } from './baseline';
import { checkIdt, checkRegions, checkSyscallTable, checkText } from './code';
import { hiddenModules, hiddenProcesses } from './hidden';
import { compareWithRecorded, recordBaseline } from './recorded';
import type { Finding } from './finding';
import { VmiError } from '../errors';
import { checkIdtFromSymbols, checkTablesFromSymbols, hookToFinding, offPathFinding, scanSyscallPaths, syscallTableEntries } from './kallsyms-checks';
import { tracingAttachments } from './attachments';
import { checkContainerEscapes, type EscapeReport } from './escapes';
import { listContainers } from '../containers/list';
import type { Kernel } from '../kernel/kernel';
import { SymbolMap } from './symbol-map';
import { stepper, type StepProgress } from '../util/steps';

/** What a check without a vmlinux cannot do, said in one line. */
export const NOT_CHECKED_WITHOUT_VMLINUX = 'without a vmlinux: no byte-for-byte comparison of .text (changes that stay inside core kernel text, functions outside the syscall paths), no boot-time patch-site check, no recorded baseline';

export interface CheckOptions extends CallOptions {
  /** The guest kernel's vmlinux (default $VMICTL_VMLINUX); without one, the checks from guest memory and kallsyms. */
  vmlinux?: string;
  /** Check from guest memory and kallsyms even when a vmlinux is known (to compare the two). */
  withoutVmlinux?: boolean;
  /** The system calls whose code paths are watched (default: those vmictl injects). */
  syscalls?: readonly string[];
  /** Compare all of .text, not only the watched functions (default true). */
  wholeText?: boolean;
  /** A recorded baseline: compared with when the file exists, recorded when it does not (or with `record`). */
  baseline?: string;
  record?: boolean;
  /** Told as each part of the check starts. */
  onProgress?: StepProgress;
  /** 'only': the containers' confinement alone (`check --containers`); false: the kernel alone. Default: both. */
  containers?: 'only' | boolean;
}

export interface CheckReport {
  findings: Finding[];
  /** What was compared, for the summary line. */
  checked: { functions: number; syscallTableEntries: number; textBytes: number; patchSites: number; idtGates: number; tracingAttachments: number };
  /** Set when a recorded baseline was written by this run. */
  recorded?: string;
  /** 'vmlinux', or 'kallsyms' when no vmlinux was given (known-good from guest memory only); 'containers' for the containers alone. */
  mode: 'vmlinux' | 'kallsyms' | 'containers';
  /** The containers' confinement: how many containers and tasks were looked at, and what they were started with. */
  containers?: { checked: number; tasks: number; configuration: string[] };
  /** What this mode could not check (kallsyms mode), for the summary line. */
  notChecked?: string;
  ms: number;
}

/** The containers' part of a check, findings added to `findings`. */
async function containerPart(kernel: Kernel, findings: Finding[], opts: CheckOptions): Promise<CheckReport['containers']> {
  const r: EscapeReport = await checkContainerEscapes(kernel, await listContainers(kernel, opts), opts);
  findings.push(...r.findings);
  return { checked: r.containers, tasks: r.tasks, configuration: r.configuration };
}

export async function checkKernel(vm: Vm, opts: CheckOptions = {}): Promise<CheckReport> {
  const t0 = Date.now();
  if (opts.containers === 'only') {
    await vm.pause();
    const kernel = await vm.kernel();
    const findings: Finding[] = [];
    opts.onProgress?.(0, 1, 'containers');
    const containers = await containerPart(kernel, findings, opts);
    return { findings, checked: { functions: 0, syscallTableEntries: 0, textBytes: 0, patchSites: 0, idtGates: 0, tracingAttachments: 0 }, mode: 'containers', containers, ms: Date.now() - t0 };
  }
  if (opts.withoutVmlinux || !(opts.vmlinux ?? process.env.VMICTL_VMLINUX ?? process.env.VMICTL_DBG_VMLINUX)) return checkWithoutVmlinux(vm, opts, t0);
  const base = KernelBaseline.load(vmlinuxPath(opts.vmlinux));
  await vm.pause();
  const kernel = await vm.kernel();
  base.assertMatches(kernel.kaslr.banner);
  const regions = base.regionsFor(opts.syscalls ?? INJECTED_SYSCALLS);
  const wholeText = opts.wholeText ?? true;
  const withContainers = opts.containers !== false;
  const next = stepper(['sys_call_table', wholeText ? '.text' : 'watched functions', 'IDT', 'ftrace_ops and kprobes', 'hidden processes', 'hidden modules', ...(withContainers ? ['containers'] : []), ...(opts.baseline ? ['recorded baseline'] : [])], opts.onProgress);
  const findings: Finding[] = [];
  next();
  findings.push(...(await checkSyscallTable(kernel, base, opts)));
  next();
  if (wholeText) findings.push(...(await checkText(kernel, base, regions, opts)));
  else findings.push(...(await checkRegions(kernel, base, regions, opts)));
  next();
  findings.push(...(await checkIdt(kernel, base, opts)));
  next();
  const symbols = SymbolMap.of(kernel);
  const tracing = await tracingAttachments(kernel, symbols, opts);
  const slide = kernel.kaslr.virtualSlide;
  const onPath = (ip: bigint) => regions.some((r) => ip >= r.address + slide && ip < r.address + slide + BigInt(r.size));
  for (const a of tracing.attachments) {
    const f = offPathFinding(symbols, a);
    if (a.everyFunction || a.at.some(onPath)) findings.push({ ...f, expected: 'nothing attached on the path of injected syscalls' });
    else if (a.owner !== 'core kernel') findings.push(f);
  }
  next();
  findings.push(...(await hiddenProcesses(kernel, opts)));
  next();
  findings.push(...(await hiddenModules(kernel, opts)));
  let containers: CheckReport['containers'];
  if (withContainers) {
    next();
    containers = await containerPart(kernel, findings, opts);
  }
  let recorded: string | undefined;
  if (opts.baseline) {
    next();
    if (opts.record || !existsSync(opts.baseline)) {
      await recordBaseline(opts.baseline, kernel, base, regions, opts);
      recorded = opts.baseline;
    } else findings.push(...(await compareWithRecorded(opts.baseline, kernel, base, regions, opts)));
  }
  return {
    findings,
    checked: {
      functions: regions.length,
      syscallTableEntries: base.syscallTable.entries,
      textBytes: wholeText ? base.image.section('.text')!.size : regions.reduce((n, r) => n + r.size, 0),
      patchSites: base.index.size,
      idtGates: 256,
      tracingAttachments: tracing.attachments.length,
    },
    recorded,
    mode: 'vmlinux',
    ...(containers ? { containers } : {}),
    ms: Date.now() - t0,
  };
}

/** The same report from the guest's kallsyms and code alone (kallsyms-checks.ts says how and what not). */
async function checkWithoutVmlinux(vm: Vm, opts: CheckOptions, t0: number): Promise<CheckReport> {
  if (opts.baseline) throw new VmiError('EUSAGE', 'a recorded baseline (--baseline) needs the vmlinux of the guest kernel (--vmlinux FILE)');
  await vm.pause();
  const kernel = await vm.kernel();
  const symbols = SymbolMap.of(kernel);
  const withContainers = opts.containers !== false;
  const next = stepper(['syscall tables', 'syscall paths', 'IDT', 'hidden processes', 'hidden modules', ...(withContainers ? ['containers'] : [])], opts.onProgress);
  const findings: Finding[] = [];
  next();
  const tables = await checkTablesFromSymbols(kernel, opts);
  findings.push(...tables.map(({ good: _good, ...f }) => f));
  next();
  const scan = await scanSyscallPaths(kernel, opts.syscalls ?? INJECTED_SYSCALLS, { ...opts, otherAbis: true });
  findings.push(...scan.hooks.map((h) => hookToFinding(symbols, kernel.layout, h)));
  findings.push(...scan.offPath.filter((a) => a.owner !== 'core kernel').map((a) => offPathFinding(symbols, a)));
  next();
  findings.push(...(await checkIdtFromSymbols(kernel, opts)));
  next();
  findings.push(...(await hiddenProcesses(kernel, opts)));
  next();
  findings.push(...(await hiddenModules(kernel, opts)));
  let containers: CheckReport['containers'];
  if (withContainers) {
    next();
    containers = await containerPart(kernel, findings, opts);
  }
  return {
    findings,
    checked: {
      functions: scan.functions.length,
      syscallTableEntries: await syscallTableEntries(kernel, opts),
      textBytes: scan.bytes,
      patchSites: scan.recordedSites,
      idtGates: 256,
      tracingAttachments: scan.tracing.attachments.length,
    },
    mode: 'kallsyms',
    ...(containers ? { containers } : {}),
    notChecked: NOT_CHECKED_WITHOUT_VMLINUX,
    ms: Date.now() - t0,
  };
}
