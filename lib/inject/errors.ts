/**
 * What syscall injection throws. Failures of the engine are InjectionErrors (code EINJECT) whose
 * `state` says what was left behind; a syscall that ran and returned -errno is a SyscallError (code
 * ESYSCALL), which is the guest's answer, not a failure of vmictl.
 */
import { InjectionError, VmiError } from '../errors';
import { errnoMessage, errnoName } from './errno';

/**
 * What an injection left in the guest when it failed:
 * - `untouched`: no register or memory of the target was changed;
 * - `restored`: the target was put back exactly as it was;
 * - `in-syscall`: the target is still inside an injected syscall that did not end; its saved
 *   registers were written to its kernel stack, so it goes back to its own code by itself when the
 *   call ends (at R, with that call's result in rax: see redirect.ts); the journal is kept, naming
 *   the scratch mapping left in it, for `vmictl recover` to report;
 * - `unknown`: vmictl lost control (gdbstub gone) after changing the target; see the journal.
 */
export type InjectionState = 'untouched' | 'restored' | 'in-syscall' | 'unknown';

/** A process the engine tried to catch, for error messages. */
export interface TriedProcess {
  pid: number;
  comm: string;
  /** Why it could not be used, when it was not even waited for. */
  skipped?: string;
}

function describeTried(tried: readonly TriedProcess[]): string {
  return tried.map((p) => `${p.pid} (${JSON.stringify(p.comm)}${p.skipped ? `: ${p.skipped}` : ''})`).join(', ') || 'none';
}

/** No thread of the target returned from a syscall in time. */
export class AcquireTimeoutError extends InjectionError {
  readonly tried: readonly TriedProcess[];
  readonly timeoutMs: number;
  constructor(tried: readonly TriedProcess[], timeoutMs: number) {
    super(`no thread of the target returned from a system call within ${timeoutMs} ms; processes tried: ${describeTried(tried)}`, 'untouched');
    this.tried = tried;
    this.timeoutMs = timeoutMs;
  }
}

/** No process of the target can be injected into (kernel threads, no syscall site found). */
export class NoInjectableThreadError extends InjectionError {
  readonly tried: readonly TriedProcess[];
  constructor(what: string, tried: readonly TriedProcess[]) {
    super(`${what}: no process to inject into; processes looked at: ${describeTried(tried)}`, 'untouched');
    this.tried = tried;
  }
}

/** The target exited (or was killed) while the engine held it. */
export class TargetGoneError extends InjectionError {
  readonly pid: number;
  readonly why?: string;
  constructor(pid: number, state: InjectionState = 'untouched', why?: string) {
    super(`the target process ${pid} exited during the injection${why ? ` (${why})` : ''}`, state);
    this.pid = pid;
    this.why = why;
  }
}

/** An injected syscall did not return in time. */
export class SyscallTimeoutError extends InjectionError {
  readonly syscall: string;
  readonly timeoutMs: number;
  constructor(syscall: string, timeoutMs: number, state: InjectionState) {
    super(`injected ${syscall} did not return within ${timeoutMs} ms`, state);
    this.syscall = syscall;
    this.timeoutMs = timeoutMs;
  }
}

/** The session is over (closed, or failed and restored): no more syscalls. */
export class SessionClosedError extends InjectionError {
  constructor(why = 'the injection session is closed') {
    super(why, 'restored');
  }
}

/** A syscall that ran in the guest and answered -errno. */
export class SyscallError extends VmiError {
  readonly syscall: string;
  readonly errno: number;
  /** `ENOENT`. */
  readonly errnoName: string;
  constructor(syscall: string, errno: number, detail?: string) {
    super('ESYSCALL', `${syscall}${detail ? ` ${detail}` : ''}: ${errnoName(errno)} (${errnoMessage(errno)})`);
    this.syscall = syscall;
    this.errno = errno;
    this.errnoName = errnoName(errno);
  }
}

export { InjectionError };

/** An earlier vmictl left an injection of this VM unfinished: `vmictl recover` must put it back first. */
export class StaleInjectionError extends VmiError {
  readonly journals: readonly string[];
  constructor(journals: readonly string[]) {
    super('ESTALE', `an earlier vmictl left ${journals.length === 1 ? 'an injection' : `${journals.length} injections`} of this VM unfinished (${journals.map((j) => JSON.stringify(j)).join(', ')}): run 'vmictl recover' first`);
    this.journals = journals;
  }
}
