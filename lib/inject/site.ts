/**
 * Where a thread will come back to user mode: the user registers a task saved on kernel entry
 * (`task_pt_regs(task)`, arch/x86/include/asm/processor.h) sit at the top of its kernel stack:
 * task->stack + THREAD_SIZE − TOP_OF_KERNEL_STACK_PADDING − sizeof(struct pt_regs). For a task
 * that entered the kernel through `syscall`, pt_regs.ip is the address right after that
 * instruction (the return address R, whose two bytes before are 0f 05) and pt_regs.orig_ax the
 * syscall number; for one interrupted in user mode, orig_ax is −1.
 *
 * THREAD_SIZE is 16 KiB on x86-64 (order 2), 32 KiB with KASAN (KASAN_STACK_ORDER 1); the padding
 * is 0, or 16 bytes with FRED (6.9+). Neither is in the profile as a number, so the candidates are
 * tried and the first whose pt_regs hold user-mode segment selectors wins.
 */
import type { CallOptions } from '../util/deadline';
import type { AddressSpace } from '../memory/address-space';
import type { Kernel } from '../kernel/kernel';
import type { KObject } from '../kernel/object';

/** `0f 05`: the x86-64 `syscall` instruction. */
export const SYSCALL_INSN = Buffer.from([0x0f, 0x05]);

export interface SyscallSite {
  /** struct task_struct * */
  task: bigint;
  /** User address right after the thread's `syscall` instruction. */
  returnAddress: bigint;
  /** User stack pointer when it entered the kernel. */
  userSp: bigint;
  /** The syscall it is in (pt_regs.orig_ax). */
  nr: bigint;
}

/** The reason given for a task interrupted in user mode (it has no syscall to come back from). */
export const NOT_IN_SYSCALL = 'not in a system call';

/** Why a task offers no syscall site (for error messages). */
export interface NoSite {
  task: bigint;
  reason: string;
  /** A state the task soon leaves (look again later), not a lasting one. */
  transient?: boolean;
}

function kasanBuilt(kernel: Kernel): boolean {
  return ['kasan_flag_enabled', 'kasan_init', '__asan_load8', 'kasan_early_init'].some((s) => kernel.hasSymbol(s));
}

/** THREAD_SIZE candidates, the likeliest first. */
export function threadSizes(kernel: Kernel): number[] {
  return kasanBuilt(kernel) ? [32768, 16384] : [16384, 32768];
}

/** The task's user-mode registers as saved on its kernel stack, or null (kernel thread, no stack). */
export async function userRegisters(kernel: Kernel, task: bigint, opts: CallOptions = {}): Promise<KObject | null> {
  const p = kernel.profile;
  const stack = await kernel.readU64(task + BigInt(p.fieldOffset('task_struct', 'stack')), opts);
  if (!kernel.isKernelPointer(stack) || (stack & 0xfffn) !== 0n) return null;
  const size = p.typeSize('pt_regs');
  const cached = kernel.cache.get('inject.ptRegsPlacement') as { threadSize: number; padding: number } | undefined;
  const placements = cached ? [cached] : threadSizes(kernel).flatMap((threadSize) => [0, 16].map((padding) => ({ threadSize, padding })));
  for (const place of placements) {
    const at = stack + BigInt(place.threadSize - place.padding - size);
    let regs: KObject;
    try {
      regs = await kernel.read('pt_regs', at, opts);
    } catch {
      continue;
    }
    const cs = regs.u64('cs');
    const ss = regs.u64('ss');
    if ((cs & 3n) === 3n && (ss & 3n) === 3n && (cs & 0xffffn) === cs && kernel.layout.isUserAddress(regs.u64('ip'))) {
      // the placement is a property of the kernel build: remember it (kernel.cache empties on invalidate)
      kernel.cache.set('inject.ptRegsPlacement', place);
      return regs;
    }
  }
  return null;
}

/**
 * The syscall return site of a task: where it will be back in user mode after the syscall it is
 * in, checked to follow a `syscall` instruction in its own address space.
 */
export async function syscallSite(kernel: Kernel, task: bigint, space: AddressSpace, opts: CallOptions = {}): Promise<SyscallSite | NoSite> {
  const regs = await userRegisters(kernel, task, opts);
  if (!regs) return { task, reason: 'no user registers on its kernel stack' };
  const nr = regs.i64('orig_ax');
  if (nr < 0n) return { task, reason: NOT_IN_SYSCALL };
  const ip = regs.u64('ip');
  if (ip < 2n) return { task, reason: `bad return address 0x${ip.toString(16)}` };
  let code: Buffer;
  try {
    code = await space.read(ip - 2n, 2, opts);
  } catch {
    return { task, reason: `its code at 0x${(ip - 2n).toString(16)} is not mapped` };
  }
  // in a syscall by orig_ax but with ip elsewhere: the kernel is past the syscall and has pointed
  // ip at a signal handler it is about to enter, or the VM stopped on an entry before orig_ax was
  // saved; either way the thread is on its way out, and comes back into a syscall soon
  if (!code.equals(SYSCALL_INSN)) return { task, reason: `no syscall instruction before 0x${ip.toString(16)} (${code.toString('hex')})`, transient: true };
  return { task, returnAddress: ip, userSp: regs.u64('sp'), nr };
}

export function isSite(s: SyscallSite | NoSite): s is SyscallSite {
  return (s as SyscallSite).returnAddress !== undefined;
}
