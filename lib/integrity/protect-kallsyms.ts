/**
 * Protection of one operation without a vmlinux (see protect.ts for the vmlinux form): the
 * sys_call_table entries of the operation's syscalls are put back to their kallsyms handlers,
 * and hooks in the functions those syscalls go through are undone where the good bytes are
 * known without a file (an ftrace site: the ftrace NOP). A hook whose original bytes cannot be
 * told is refused (HookedKernelError) before anything is written, unless the caller accepts to go
 * on through it (`allowHooked`).
 */
import { VmiError } from '../errors';
import type { Vm } from '../vm';
import { SYSCALLS_X86_64 } from '../inject/syscalls';
import { checkTablesFromSymbols, hookToFinding, scanSyscallPaths, type FunctionHook } from './kallsyms-checks';
import { SymbolMap } from './symbol-map';
import { stopped, writePatches, type Patch, type Protection, type ProtectOptions } from './protect';
import type { Finding } from './finding';
import { HookedKernelError } from './hooked-error';

export { HookedKernelError };

export interface KallsymsProtectOptions extends ProtectOptions {
  /** Go on when a hook cannot be undone (it stays in place for the operation). */
  allowHooked?: boolean;
}

export interface KallsymsProtection extends Protection {
  /** Hooks left in place (only with allowHooked). */
  unrestored: Finding[];
}

export async function protectWithoutVmlinux(vm: Vm, syscalls: readonly string[], opts: KallsymsProtectOptions = {}): Promise<KallsymsProtection> {
  if (!vm.live) throw new VmiError('EUSAGE', 'protection needs a live VM');
  return stopped(vm, async () => {
    const kernel = await vm.kernel();
    (await vm.memory()).invalidate();
    kernel.invalidate();
    const symbols = SymbolMap.of(kernel);
    const numbers = syscalls.map((s) => SYSCALLS_X86_64[s]).filter((n) => n !== undefined);
    const [table, scan] = await Promise.all([checkTablesFromSymbols(kernel, { ...opts, numbers }), scanSyscallPaths(kernel, syscalls, opts)]);
    const findings: Finding[] = [];
    const unrestored: Finding[] = [];
    const refused: FunctionHook[] = [];
    const patches: Patch[] = [];
    for (const f of table) {
      findings.push(f);
      if (f.good === undefined) continue;
      const good = Buffer.alloc(8);
      good.writeBigUInt64LE(f.good);
      patches.push({ address: f.address, good, guest: await kernel.space.read(f.address, 8, opts) });
    }
    for (const h of scan.hooks) {
      const f = hookToFinding(symbols, kernel.layout, h);
      findings.push(f);
      if (h.good) patches.push({ address: h.address, good: h.good, guest: Buffer.from(h.bytes.subarray(0, h.good.length)) });
      else {
        refused.push(h);
        unrestored.push(f);
      }
    }
    if (refused.length > 0 && !opts.allowHooked) {
      throw new HookedKernelError(refused.map((h) => ({ function: h.function.name, address: h.address, how: h.how })));
    }
    if (patches.length > 0) await writePatches(vm, kernel, patches, 'good', opts);
    let released = opts.repair === true || patches.length === 0;
    return {
      findings,
      unrestored,
      restoredBytes: patches.reduce((n, p) => n + p.good.length, 0),
      async release(): Promise<void> {
        if (released) return;
        released = true;
        await stopped(vm, async () => writePatches(vm, await vm.kernel(), patches, 'guest', opts));
      },
    };
  });
}
