/**
 * The last resort for a thread blocked in an injected syscall that does not end in time: its user
 * registers on its kernel stack (pt_regs) are rewritten to the ones saved when it was caught, so
 * that when the call ends it goes back to its own code with its own registers, without vmictl.
 * Only rax (the result) is then not its own; orig_ax is set to −1 so that no syscall restart
 * re-runs anything.
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
 * Rewrites the pt_regs of `task`, which must be inside an injected syscall (pt_regs.sp is one of
 * the injection's `callSps`: its callSp, or the watchpoint slot), to `saved`. `kernelSpace` must be
 * able to write (coherently with QEMU).
 */
export async function redirectKernelReturn(kernel: Kernel, kernelSpace: AddressSpace, task: bigint, saved: ReadonlyMap<string, bigint>, callSps: readonly bigint[]): Promise<void> {
  const regs = await userRegisters(kernel, task);
  if (!regs) throw new InjectionError('the blocked thread has no pt_regs', 'unknown');
  if (!callSps.includes(regs.u64('sp'))) throw new InjectionError('the thread is in the kernel but not in an injected syscall', 'unknown');
  const buf = Buffer.from(regs.bytes);
  for (const [gdbName, field] of Object.entries(PT_REGS_FIELDS)) {
    const v = saved.get(gdbName);
    if (v !== undefined) buf.writeBigUInt64LE(BigInt.asUintN(64, v), regs.field(field).offset);
  }
  buf.writeBigInt64LE(-1n, regs.field('orig_ax').offset);
  await kernelSpace.write(regs.address, buf);
}
