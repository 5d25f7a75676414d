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

export interface CheckOptions extends CallOptions {
  /** The guest kernel's vmlinux (default $VMICTL_VMLINUX). */
  vmlinux?: string;
  /** The system calls whose code paths are watched (default: those vmictl injects). */
  syscalls?: readonly string[];
  /** Compare all of .text, not only the watched functions (default true). */
  wholeText?: boolean;
  /** A recorded baseline: compared with when the file exists, recorded when it does not (or with `record`). */
  baseline?: string;
  record?: boolean;
}

export interface CheckReport {
  findings: Finding[];
  /** What was compared, for the summary line. */
  checked: { functions: number; syscallTableEntries: number; textBytes: number; patchSites: number; idtGates: number };
  /** Set when a recorded baseline was written by this run. */
  recorded?: string;
  ms: number;
}

export async function checkKernel(vm: Vm, opts: CheckOptions = {}): Promise<CheckReport> {
  const t0 = Date.now();
  const base = KernelBaseline.load(vmlinuxPath(opts.vmlinux));
  await vm.pause();
  const kernel = await vm.kernel();
  base.assertMatches(kernel.kaslr.banner);
  const regions = base.regionsFor(opts.syscalls ?? INJECTED_SYSCALLS);
  const findings: Finding[] = [];
  findings.push(...(await checkSyscallTable(kernel, base, opts)));
  const wholeText = opts.wholeText ?? true;
  if (wholeText) findings.push(...(await checkText(kernel, base, regions, opts)));
  else findings.push(...(await checkRegions(kernel, base, regions, opts)));
  findings.push(...(await checkIdt(kernel, base, opts)));
  findings.push(...(await hiddenProcesses(kernel, opts)));
  findings.push(...(await hiddenModules(kernel, opts)));
  let recorded: string | undefined;
  if (opts.baseline) {
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
    },
    recorded,
    ms: Date.now() - t0,
  };
}
