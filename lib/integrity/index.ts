/**
 * Kernel protection and recovery: a known-good baseline from the vmlinux (with the kernel's own
 * boot-time patching accounted for), checks of the guest against it, and protection of the code
 * an operation's system calls go through.
 */
export { KernelImage } from './image';
export { readPatchSites, type PatchSite, type PatchKind } from './patch-sites';
export { KernelBaseline, INJECTED_SYSCALLS, vmlinuxPath, type CodeRegion } from './baseline';
export { checkKernel, type CheckOptions, type CheckReport } from './check';
export { type Finding, type FindingKind, findingToJson } from './finding';
export { hiddenModules, hiddenProcesses } from './hidden';
export { checkIdt, checkSyscallTable, checkText, checkRegions } from './code';
export { protectFor, type ProtectOptions, type Protection } from './protect';
export { operationGuard, type Guard, type GuardOptions } from './guard';
export { protectWithoutVmlinux, HookedKernelError, type KallsymsProtectOptions, type KallsymsProtection } from './protect-kallsyms';
export { checkTablesFromSymbols, checkIdtFromSymbols, scanSyscallPaths, handlerName } from './kallsyms-checks';
export { SymbolMap } from './symbol-map';
export { scanFunction, type Hook } from './hooks';
