/**
 * The guard every injection runs behind (openInjection's `protect`, set once per Vm): before a
 * thread is caught, protectFor() checks the code and table entries of every syscall vmictl
 * injects and restores the known-good bytes for the time of the operation. Without a vmlinux the
 * guard checks what the guest's kallsyms and code tell (protect-kallsyms.ts): table entries are put
 * back to their handlers, ftrace-site hooks undone, and any other hook refuses the operation
 * (HookedKernelError) unless `allowHooked`.
 */
import type { Vm } from '../vm';
import { VmiError } from '../errors';
import { INJECTED_SYSCALLS } from './baseline';
import { protectFor } from './protect';
import { protectWithoutVmlinux } from './protect-kallsyms';

export interface GuardOptions {
  /** The guest kernel's vmlinux (default: VMICTL_VMLINUX, then VMICTL_DBG_VMLINUX). */
  vmlinux?: string;
  /** Keep the repair after the operation instead of putting the guest's bytes back. */
  repair?: boolean;
  /** Go on through a hook vmictl cannot undo (code whose bytes are unknown without a vmlinux, an ftrace_ops or kprobe on the path; default: refuse). */
  allowHooked?: boolean;
  onNotice?: (message: string) => void;
}

export type Guard = (vm: Vm) => Promise<{ release(): Promise<void> }>;

export function operationGuard(opts: GuardOptions = {}): Guard {
  const vmlinux = opts.vmlinux ?? process.env.VMICTL_VMLINUX ?? process.env.VMICTL_DBG_VMLINUX;
  let told = false;
  return async (vm) => {
    const what = opts.repair ? 'repaired for good' : 'restored for this operation, put back after it';
    if (!vmlinux) {
      let p: Awaited<ReturnType<typeof protectWithoutVmlinux>>;
      try {
        p = await protectWithoutVmlinux(vm, INJECTED_SYSCALLS, { repair: opts.repair, allowHooked: opts.allowHooked });
      } catch (err) {
        // a profile without _stext/_etext cannot tell core kernel text: say so once, as with no check at all
        if (!(err instanceof VmiError) || err.code !== 'ENOCORETEXT') throw err;
        if (!told) opts.onNotice?.(`the kernel paths of injected syscalls are not verified: ${err.message}; give --vmlinux FILE`);
        told = true;
        return { release: async () => undefined };
      }
      if (p.findings.length > 0) {
        const where = [...new Set(p.findings.map((f) => f.symbol))].slice(0, 6).join(', ');
        const left = p.unrestored.length > 0 ? `; ${p.unrestored.length} hook(s) left in place (--allow-hooked): ${p.unrestored.slice(0, 3).map((f) => f.symbol).join(', ')}` : '';
        opts.onNotice?.(`kernel tampering on the path of injected syscalls, seen without a vmlinux (${p.findings.length}: ${where}): ${p.restoredBytes} bytes ${what}${left}`);
      }
      return p;
    }
    const p = await protectFor(vm, INJECTED_SYSCALLS, { vmlinux, repair: opts.repair, allowHooked: opts.allowHooked });
    if (p.findings.length > 0) {
      const where = [...new Set(p.findings.map((f) => f.symbol))].slice(0, 6).join(', ');
      opts.onNotice?.(`kernel tampering on the path of injected syscalls (${p.findings.length}: ${where}): ${p.restoredBytes} bytes ${what}`);
    }
    return p;
  };
}
