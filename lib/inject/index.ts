/**
 * Clientless system-call injection: a guest process runs system calls for vmictl, with nothing
 * installed in the guest, by breakpoint and register rewrite only, through the gdbstub.
 *
 *   const s = await openInjection(vm, { container: 'ticker' });
 *   try { console.log(await s.getpid(), (await s.uname()).nodename); } finally { await s.close(); }
 *
 * openInjection() catches a thread of the target right after one of its own syscalls returned;
 * the session runs syscalls through it (raw: syscall(nr, ...args); typed helpers: getpid, uname,
 * openat, read, write, getdents64, close(fd), readFile, listDirectory); close() (or `await using`)
 * restores every register and stack byte, removes the breakpoint and lets the VM run. A journal on
 * the host lets recoverInjection() (`vmictl recover`) finish the job if vmictl dies in between.
 * vfork() (child.ts) forks a child off a session and drives it on its own (setns, execve…).
 * Sessions and children are the same engine (parked-thread.ts: a call written over the parked
 * vCPU, the VM run until the thread is back), with the same calls (thread-calls.ts) and scratch
 * memory (scratch.ts).
 */
export { openInjection, type InjectionOptions, type InjectionTargetSpec } from './open';
export { InjectionSession, VCPU_REGISTERS, type TargetThread, type SessionStats } from './session';
export { AT_FDCWD, type SyscallArgument } from './thread-calls';
export type { PendingCall } from './parked-thread';
export { ChildProcess, vfork, reapChild, exitStatus, CLONE_PARENT, CLONE_VFORK, type ChildState, type Forker, type VforkOptions, type ExecveAddresses } from './child';
export { recoverAcquisition, recoverInjection, recoverAll, type RecoverAction, type RecoverOutcome, type RecoverOptions } from './recover';
export {
  AcquireTimeoutError,
  StaleInjectionError,
  InjectionError,
  NoInjectableThreadError,
  SessionClosedError,
  SyscallError,
  SyscallTimeoutError,
  TargetGoneError,
  type InjectionState,
  type TriedProcess,
} from './errors';
export { SYSCALLS_X86_64, MAX_SYSCALL_NUMBER, resolveSyscall, syscallName, syscallNumber } from './syscalls';
export { errnoMessage, errnoName, errnoNumber, errnoOf, MAX_ERRNO, toSigned64 } from './errno';
export { parseDirents64, parseUtsname, cString, UTSNAME_SIZE, type Dirent64, type Utsname } from './structs';
export { Journal, journalDirectory, listJournals, readJournal, type JournalEntry } from './journal';
export { BreakpointRunner, type Hit, type RunnerStats } from './runner';
export { lockVm, InjectorBusyError } from './lock';
export { helperCandidates, fitHelpers, rootHelperTarget, helperConfinementFits } from './root-helper';
