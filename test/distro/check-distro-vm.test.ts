/**
 * `vmictl check` on the distro VM (Debian 12's own cloud kernel, with systemd, AppArmor, docker's
 * and podman's modules loaded, hundreds of Go threads): a kernel from Debian's packages gives no
 * finding, against its vmlinux (the -dbg package's, same ABI and build) and from its kallsyms
 * alone; a sys_call_table entry and a handler changed from outside are found, and once put back
 * the kernel is clean again.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { Vm } from '../../lib/vm';
import { checkKernel, type Finding } from '../../lib/integrity';
import { poke } from '../helpers/kernel-poke';
import { distroVm, readGroundTruth, skipWithReason, type VmEnv } from '../helpers/vm';

const run = promisify(execFile);
const cli = resolve(__dirname, '../../bin/vmictl');
const VMLINUX = process.env.VMICTL_DBG_VMLINUX ?? resolve(__dirname, '../../test-vms/build/vmlinux');

interface Run { code: number; stdout: string; stderr: string }

/** `vmictl check --json`, with a vmlinux or (undefined) with none in its environment either. */
async function check(env: VmEnv, vmlinux: string | undefined): Promise<Run> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, VMICTL_QMP: env.qmp, VMICTL_GDB: env.gdb };
  delete childEnv.VMICTL_VMLINUX;
  delete childEnv.VMICTL_DBG_VMLINUX;
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, 'check', '--json', ...(vmlinux ? ['--vmlinux', vmlinux] : [])], { env: childEnv, timeout: 900_000, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: unknown; stdout?: string; stderr?: string; message: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? err.message };
  }
}

const summary = (fs: Array<Pick<Finding, 'kind' | 'symbol'>>) => fs.map((f) => `${f.kind} ${f.symbol}`).join('; ');

// two whole-.text comparisons and two kallsyms scans of a TCG guest
t.setTimeout(2_400_000);

t.test('the distro VM: vmictl check on Debian\'s own kernel', async (t) => {
  const env = distroVm(t);
  if (!env) return;
  if (!existsSync(join(__dirname, '../../dist/cli/main.js'))) return skipWithReason(t, 'dist/ is not built (make build)');
  const gt = readGroundTruth(env.groundTruthFile);
  const haveVmlinux = existsSync(VMLINUX);
  if (!haveVmlinux && process.env.CI) t.fail(`no vmlinux at ${VMLINUX} (make -C test-vms profile extracts it)`);

  await t.test('a clean kernel: no finding, with its vmlinux and without one', async (t) => {
    for (const vmlinux of haveVmlinux ? [VMLINUX, undefined] : [undefined]) {
      const r = await check(env, vmlinux);
      const doc = JSON.parse(r.stdout || '{}') as { findings?: Finding[]; mode?: string; checked?: { textBytes: number; functions: number } };
      const mode = vmlinux ? 'vmlinux' : 'kallsyms';
      t.equal(doc.mode, mode, `checked in ${mode} mode`);
      t.same(summary(doc.findings ?? []), '', `${mode}: no finding on ${gt.kernel.release} (${doc.checked?.functions} functions, ${doc.checked?.textBytes} bytes of code)${r.code ? `: ${r.stderr.trim()}` : ''}`);
      t.equal(r.code, 0, `${mode}: vmictl check exits 0`);
      t.ok((doc.checked?.textBytes ?? 0) > 10_000, `${mode}: code was compared`);
    }
    if (!haveVmlinux) skipWithReason(t, `the vmlinux half: no vmlinux at ${VMLINUX}`);
  });

  await t.test('a table entry and a handler changed from outside are found, and clean once put back', async (t) => {
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    const kernel = await vm.kernel();
    // sethostname: with the guest's timers masked and no hostnamed started, nothing calls it
    const entry = kernel.symbol('sys_call_table') + BigInt(170 * 8);
    const other = Buffer.alloc(8);
    other.writeBigUInt64LE(kernel.symbol('__x64_sys_getppid'));
    const handler = kernel.symbol('__x64_sys_sethostname');
    // the VM stays stopped from the first poke to the last: the guest never runs the changed code
    const oldEntry = await poke(vm, entry, other);
    const oldCode = await poke(vm, handler, Buffer.from([0xe9, 0x00, 0x00, 0x00, 0x00]));
    try {
      const fromKallsyms = await checkKernel(vm, { withoutVmlinux: true, syscalls: ['sethostname'] });
      const k = fromKallsyms.findings.find((f) => f.kind === 'syscall-table' && f.address === entry);
      t.ok(k, `kallsyms mode: the entry of sethostname, now __x64_sys_getppid, is reported: ${summary(fromKallsyms.findings)}`);
      if (haveVmlinux) {
        const r = await checkKernel(vm, { vmlinux: VMLINUX });
        t.ok(r.findings.some((f) => f.kind === 'syscall-table' && f.address === entry), `vmlinux mode: the changed entry is reported: ${summary(r.findings)}`);
        t.ok(r.findings.some((f) => f.kind === 'inline-hook' && f.address === handler), 'vmlinux mode: the changed handler is reported as an inline hook');
      }
    } finally {
      await poke(vm, handler, oldCode);
      await poke(vm, entry, oldEntry);
    }
    const after = await checkKernel(vm, haveVmlinux ? { vmlinux: VMLINUX } : { withoutVmlinux: true });
    t.same(summary(after.findings), '', 'put back: clean again');
  });
});
