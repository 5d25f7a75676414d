/**
 * The integrity phase of `make bench`: what kernel protection costs.
 *   integrity.baseline.load   parsing the vmlinux's tables and relocating .text (once per process)
 *   integrity.protect.<b>     protectFor() before one operation (the code paths of the syscalls an
 *                             injection uses: read, compare, nothing to restore on a clean guest)
 *   integrity.check.<b>       a full `vmictl check` (sys_call_table, all of .text, IDT, pid IDR, modules)
 *   integrity.protect-kallsyms.<b>, integrity.check-kallsyms.<b>   the same without a vmlinux (from
 *                             guest memory and kallsyms: the syscall paths decoded, tables, IDT, hidden)
 *   integrity.check-containers.<b>   `check --containers` (every container task's escape facts), the kernel open
 * for each memory backend b (gdbstub, procmem: the local fast path).
 * Environment: VMICTL_BENCH_INTEGRITY_RUNS (protect runs per backend, default 10),
 * VMICTL_BENCH_CHECK_RUNS (full checks per backend, default 2).
 */
import { Vm, type MemoryBackendChoice } from '../lib/vm';
import { KernelBaseline, checkKernel, protectFor, protectWithoutVmlinux } from '../lib/integrity';
import type { Figure, Log } from './run';
import { median } from './common';

const OPERATION = ['openat', 'read', 'write', 'close', 'getdents64', 'kill', 'mmap', 'munmap', 'getpid', 'uname'];


export async function runIntegrityBench(opts: { qmp: string; gdb: string; vmlinux: string; log: Log }): Promise<Figure[]> {
  const { log } = opts;
  const runs = Math.max(1, Number(process.env.VMICTL_BENCH_INTEGRITY_RUNS ?? 10));
  const checkRuns = Math.max(1, Number(process.env.VMICTL_BENCH_CHECK_RUNS ?? 2));
  const figures: Figure[] = [];
  let t0 = performance.now();
  const base = KernelBaseline.load(opts.vmlinux);
  base.regionsFor(OPERATION);
  const loadMs = performance.now() - t0;
  log(`  baseline from ${opts.vmlinux}: ${loadMs.toFixed(0)} ms (${base.index.size} patch sites)`);
  figures.push({ name: 'integrity.baseline.load', value: loadMs, unit: 'ms' });
  for (const backend of ['gdbstub', 'procmem'] as MemoryBackendChoice[]) {
    const vm = await Vm.connect({ qmp: opts.qmp, gdb: opts.gdb, memory: backend });
    try {
      await vm.kernel();
      const protect: number[] = [];
      let bytes = 0;
      for (let i = 0; i < runs; i++) {
        t0 = performance.now();
        const p = await protectFor(vm, OPERATION, { vmlinux: opts.vmlinux });
        await p.release();
        protect.push(performance.now() - t0);
        bytes = base.regionsFor(OPERATION).reduce((n, r) => n + r.size, 0);
        if (p.findings.length) log(`  note: the guest is tampered: ${p.findings.length} findings`);
      }
      log(`  protectFor(${OPERATION.length} syscalls, ${bytes} bytes of code + table entries), ${backend}: median ${median(protect).toFixed(1)} ms of ${runs} (${protect.map((x) => x.toFixed(0)).join(', ')} ms)`);
      figures.push({ name: `integrity.protect.${backend}`, value: median(protect), unit: 'ms', goal: { text: '< 100 ms', met: median(protect) < 100 } });
      const check: number[] = [];
      let findings = 0;
      for (let i = 0; i < checkRuns; i++) {
        t0 = performance.now();
        const r = await checkKernel(vm, { vmlinux: opts.vmlinux });
        check.push(performance.now() - t0);
        findings = r.findings.length;
        await vm.resume();
      }
      log(`  full check, ${backend}: median ${median(check).toFixed(0)} ms of ${checkRuns} (${check.map((x) => x.toFixed(0)).join(', ')} ms), ${findings} findings`);
      figures.push({ name: `integrity.check.${backend}`, value: median(check), unit: 'ms' });
      const bare: number[] = [];
      for (let i = 0; i < runs; i++) {
        t0 = performance.now();
        const p = await protectWithoutVmlinux(vm, OPERATION, {});
        await p.release();
        bare.push(performance.now() - t0);
      }
      log(`  protect without vmlinux (${OPERATION.length} syscalls: paths decoded, table entries), ${backend}: median ${median(bare).toFixed(1)} ms of ${runs}`);
      figures.push({ name: `integrity.protect-kallsyms.${backend}`, value: median(bare), unit: 'ms', goal: { text: '< 100 ms', met: median(bare) < 100 } });
      const bareCheck: number[] = [];
      for (let i = 0; i < checkRuns; i++) {
        t0 = performance.now();
        const r = await checkKernel(vm, { withoutVmlinux: true });
        bareCheck.push(performance.now() - t0);
        findings = r.findings.length;
        await vm.resume();
      }
      log(`  check without vmlinux, ${backend}: median ${median(bareCheck).toFixed(0)} ms of ${checkRuns}, ${findings} findings`);
      figures.push({ name: `integrity.check-kallsyms.${backend}`, value: median(bareCheck), unit: 'ms' });
      const escapes: number[] = [];
      let looked = '';
      for (let i = 0; i < runs; i++) {
        await vm.kernel();
        t0 = performance.now();
        const r = await checkKernel(vm, { containers: 'only' });
        escapes.push(performance.now() - t0);
        findings = r.findings.length;
        looked = `${r.containers?.checked} containers, ${r.containers?.tasks} tasks`;
        await vm.resume();
      }
      log(`  check --containers (${looked}), ${backend}: median ${median(escapes).toFixed(0)} ms of ${runs}, ${findings} findings`);
      figures.push({ name: `integrity.check-containers.${backend}`, value: median(escapes), unit: 'ms', goal: { text: '< 250 ms', met: median(escapes) < 250 } });
    } catch (err) {
      log(`  ${backend}: ${(err as Error).message}`);
      if (backend !== 'procmem') throw err;
    } finally {
      await vm.close();
    }
  }
  return figures;
}
