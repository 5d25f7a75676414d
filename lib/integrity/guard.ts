/**
 * The guard every injection runs behind (openInjection's `protect`, set once per Vm): before a
 * thread is caught, protectFor() checks the code and table entries of every syscall vmictl
 * injects and restores the known-good bytes for the time of the operation. Without a vmlinux to
 * know what good is, the guard cannot check; it says so once instead of pretending.
 */
import type { Vm } from '../vm';
import { INJECTED_SYSCALLS } from './baseline';
import { protectFor } from './protect';

export interface GuardOptions {
  /** The guest kernel's vmlinux (default: VMICTL_VMLINUX, then VMICTL_DBG_VMLINUX). */
  vmlinux?: string;
  /** Keep the repair after the operation instead of putting the guest's bytes back. */
  repair?: boolean;
  onNotice?: (message: string) => void;
}

export type Guard = (vm: Vm) => Promise<{ release(): Promise<void> }>;

const NOTHING = { release: async () => undefined };

export function operationGuard(opts: GuardOptions = {}): Guard {
  const vmlinux = opts.vmlinux ?? process.env.VMICTL_VMLINUX ?? process.env.VMICTL_DBG_VMLINUX;
  let told = false;
  return async (vm) => {
    if (!vmlinux) {
      if (!told) opts.onNotice?.('the kernel paths of injected syscalls are not verified: no vmlinux of the guest kernel (--vmlinux FILE or VMICTL_VMLINUX)');
      told = true;
      return NOTHING;
    }
    const p = await protectFor(vm, INJECTED_SYSCALLS, { vmlinux, repair: opts.repair });
    if (p.findings.length > 0) {
      const where = [...new Set(p.findings.map((f) => f.symbol))].slice(0, 6).join(', ');
      const what = opts.repair ? 'repaired for good' : 'restored for this operation, put back after it';
      opts.onNotice?.(`kernel tampering on the path of injected syscalls (${p.findings.length}: ${where}): ${p.restoredBytes} bytes ${what}`);
    }
    return p;
  };
}
