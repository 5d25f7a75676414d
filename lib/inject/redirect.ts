/**
 * The last resort for a thread blocked in an injected syscall that does not end in time: its user
 * registers on its kernel stack (pt_regs) are rewritten to the ones saved when it was caught, so
 * that when the call ends it goes back to its own code with its own registers, without vmictl.
 *
 * rax cannot be given back: the kernel stores the injected call's result in pt_regs.ax when the
 * call ends, after anything written there now. So a thread caught at R − 2 (on its way to restart
 * its own syscall, rax = that syscall's number) must not be sent back to R − 2: it would run
 * `syscall` with the injected result as the number (a result of 3 becomes close(3)). It is sent
 * to R instead, where its own syscall appears to have returned that result; orig_ax is set to −1
 * so that no syscall restart re-runs anything. What is left (the result in rax, the scratch
 * mapping) is in the journal, which is kept.
 */
import { InjectionError } from '../errors';
import type { AddressSpace } from '../memory/address-space';
import type { Kernel } from '../kernel/kernel';
import { userRegisters } from './site';

/** gdb register name → struct pt_regs field. */
const PT_REGS_FIELDS: Readonly<Record<string, string>> = {
  r15: 'r15', r14: 'r14', r13: 'r13', r12: 'r12', rbp: 'bp', rbx: 'bx', r11: 'r11', r10: 'r10', r9: 'r9', r8: 'r8',
  rcx: 'cx', rdx: 'dx', rsi: 'si', rdi: 'di', rip: 'ip', eflags: 'flags', rsp: 'sp',
};

/**
 * The bytes of a struct pt_regs (`regs`, fields at `offsetOf`) rewritten to send the thread home
 * to `saved` (gdb names) when the call ends; `returnAddress` is R (see the file's comment).
 */
export function homeRegisters(regs: Buffer, offsetOf: (field: string) => number, saved: ReadonlyMap<string, bigint>, returnAddress: bigint): Buffer {
  const buf = Buffer.from(regs);
  for (const [gdbName, field] of Object.entries(PT_REGS_FIELDS)) {
    const v = saved.get(gdbName);
    if (v !== undefined) buf.writeBigUInt64LE(BigInt.asUintN(64, v), offsetOf(field));
  }
  if (saved.get('rip') === returnAddress - 2n) buf.writeBigUInt64LE(returnAddress, offsetOf('ip'));
  buf.writeBigInt64LE(-1n, offsetOf('orig_ax'));
  return buf;
}

/**
 * Rewrites the pt_regs of `task`, which must be inside an injected syscall (pt_regs.sp is one of
 * the injection's `callSps`: its callSp, or the watchpoint slot), with homeRegisters().
 * `kernelSpace` must be able to write (coherently with QEMU).
 */
export async function redirectKernelReturn(kernel: Kernel, kernelSpace: AddressSpace, task: bigint, saved: ReadonlyMap<string, bigint>, callSps: readonly bigint[], returnAddress: bigint): Promise<void> {
  const regs = await userRegisters(kernel, task);
  if (!regs) throw new InjectionError('the blocked thread has no pt_regs', 'unknown');
  if (!callSps.includes(regs.u64('sp'))) throw new InjectionError('the thread is in the kernel but not in an injected syscall', 'unknown');
  await kernelSpace.write(regs.address, homeRegisters(regs.bytes, (f) => regs.field(f).offset, saved, returnAddress));
}
