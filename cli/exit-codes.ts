/**
 * vmictl's exit statuses. Most commands: 0 done, 1 failed, 2 wrong command line. exec ends with
 * its command's status, so its own failures take docker exec's codes, out of the range commands
 * use; check ends with 1 for findings, so it cannot use 1 for "could not check".
 */
import type { Command } from 'commander';
import { SyscallError } from '../lib/inject/errors';

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  checkFindings: 1,
  checkNotDone: 3,
  execFailed: 125,
  execCannotRun: 126,
  execNotFound: 127,
} as const;

/** Every status and what it means: `--help` ends with this table, the man page has it, docs/commands.md the same. */
export const EXIT_STATUS_TABLE: ReadonlyArray<readonly [status: string, meaning: string]> = [
  ['0', 'done (check: nothing found)'],
  ['1', 'failed (check: something found)'],
  ['2', 'wrong command line: unknown option, missing argument, bad value'],
  ['3', 'check could not check'],
  ['125', 'exec: vmictl failed, or its command line was wrong'],
  ['126', 'exec: the command was found but cannot run (permission, not an executable)'],
  ['127', 'exec: the command was not found'],
  ['128+n', 'stopped by signal n (130: Ctrl-C, 143: SIGTERM, 129: SIGHUP)'],
];
export const EXIT_STATUS_NOTE = "exec otherwise exits with the command's own status.";

export const EXIT_CODES_HELP = `
Exit codes:
${EXIT_STATUS_TABLE.map(([status, meaning]) => `  ${status.padEnd(9)}${meaning}`).join('\n')}
  ${EXIT_STATUS_NOTE}`;

/** What a command exits with when its command line is wrong, or when it fails. */
export interface CommandStatuses {
  usage: number;
  failure(err: unknown): number;
}

const DEFAULT_STATUSES: CommandStatuses = { usage: EXIT.usage, failure: () => EXIT.failed };
const statuses = new WeakMap<Command, CommandStatuses>();

/** Gives `cmd` exit statuses of its own, for exec and check. */
export function setExitStatuses(cmd: Command, s: CommandStatuses): Command {
  statuses.set(cmd, s);
  return cmd;
}

export function exitStatusesOf(cmd: Command | undefined): CommandStatuses {
  return (cmd && statuses.get(cmd)) ?? DEFAULT_STATUSES;
}

/** execve's errors that mean "no such program"; ENOTDIR as a PATH search (execvp) takes it. */
const NOT_FOUND = new Set(['ENOENT', 'ENOTDIR']);

/**
 * `vmictl exec`'s status, as docker exec's: the command's own once it ran (128 + n when signal n
 * killed it); when its execve failed, 127 if the program was not found and 126 for any other
 * reason it could not run (EACCES, ENOEXEC, EPERM…), as a shell says it; 125 when vmictl failed.
 */
export function execExitStatus(outcome: { exitCode: number } | { error: unknown }): number {
  if ('exitCode' in outcome) return outcome.exitCode;
  const err = outcome.error;
  if (err instanceof SyscallError && err.syscall === 'execve') return NOT_FOUND.has(err.errnoName) ? EXIT.execNotFound : EXIT.execCannotRun;
  return EXIT.execFailed;
}
