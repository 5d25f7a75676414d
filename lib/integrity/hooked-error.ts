/** The refusal of an operation whose path holds a hook vmictl cannot undo. */
import { VmiError } from '../errors';

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** A hook on the path of an operation that cannot be undone: code whose original bytes are unknown without the vmlinux, or an ftrace_ops or kprobe. */
export class HookedKernelError extends VmiError {
  constructor(readonly hooks: ReadonlyArray<{ function: string; address: bigint; how: string }>) {
    super('EHOOKED', `the kernel is hooked on the path of injected syscalls and vmictl cannot undo it without the vmlinux (changed code) or at all (an ftrace_ops or kprobe): ${hooks.slice(0, 4).map((h) => `${h.function} at ${hex(h.address)} (${h.how})`).join('; ')}${hooks.length > 4 ? ` and ${hooks.length - 4} more` : ''}; give --vmlinux FILE to restore changed code, or --allow-hooked to go on through it`);
  }
}
