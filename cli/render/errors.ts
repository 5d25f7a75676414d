import { getSystemErrorMap } from 'node:util';
import { CommanderError, type Command } from 'commander';
import { TerminatedError, VmiError } from '../../lib/errors';
import { escapeForTerminal } from '../../lib/util/escape';
import { EXIT, exitStatusesOf } from '../exit-codes';
import { UsageError, usageHint } from '../usage';

/** An error of the operating system (a file that is not there, a socket refused), as Node reports it. */
interface SystemError extends Error {
  code: string;
  errno?: number;
  syscall: string;
  path?: string;
}

/** The error's code: vmictl's own, the system's (ENOENT…), or EINTERNAL for anything else. */
export function errorCode(err: unknown): string {
  if (err instanceof VmiError) return err.code;
  if (isSystemError(err)) return err.code;
  return 'EINTERNAL';
}

function isSystemError(err: unknown): err is SystemError {
  const e = err as Partial<SystemError> | undefined;
  return err instanceof Error && typeof e?.code === 'string' && typeof e.syscall === 'string';
}

/** `cannot open "/nope": no such file or directory [ENOENT]`. */
function systemErrorText(err: SystemError): string {
  const what = (err.errno !== undefined && getSystemErrorMap().get(err.errno)?.[1]) || err.message;
  return `cannot ${err.syscall}${err.path === undefined ? '' : ` ${JSON.stringify(err.path)}`}: ${what} [${err.code}]`;
}

/** One line for any error: a stack is for a debugger, not for the user of a command. */
export function errorText(err: unknown): string {
  if (err instanceof VmiError) return `${err.message} [${err.code}]`;
  if (isSystemError(err)) return systemErrorText(err);
  if (err instanceof Error) return `internal error: ${err.name}: ${err.message}`;
  return `internal error: ${String(err)}`;
}

/**
 * Prints an error the way a user can act on it and returns the exit status: `command` is the one
 * whose action ran, when the error came from there (a UsageError names its own).
 */
export function reportError(err: unknown, command?: Command): number {
  // --help and --version
  if (err instanceof CommanderError && err.exitCode === 0) return EXIT.ok;
  if (err instanceof TerminatedError) {
    process.stderr.write(`vmictl: ${escapeForTerminal(errorText(err))}\n`);
    return err.exitCode;
  }
  const cmd = err instanceof UsageError ? err.command : command;
  const statuses = exitStatusesOf(cmd);
  if (err instanceof VmiError && err.code === 'EUSAGE') {
    if (!(err instanceof UsageError && err.helpShown)) {
      process.stderr.write(`vmictl: ${escapeForTerminal(err.message)}\n${cmd ? `${escapeForTerminal(usageHint(cmd))}\n` : ''}`);
    }
    return statuses.usage;
  }
  process.stderr.write(`vmictl: ${escapeForTerminal(errorText(err))}\n`);
  return statuses.failure(err);
}
