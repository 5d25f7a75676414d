/**
 * vmictl's exit statuses. Most commands: 0 done, 1 failed, 2 wrong command line; a command whose
 * status means something else can have statuses of its own.
 */
import type { Command } from 'commander';

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
} as const;

/** What a command exits with when its command line is wrong, or when it fails. */
export interface CommandStatuses {
  usage: number;
  failure(err: unknown): number;
}

const DEFAULT_STATUSES: CommandStatuses = { usage: EXIT.usage, failure: () => EXIT.failed };
const statuses = new WeakMap<Command, CommandStatuses>();

/** Gives `cmd` exit statuses of its own. */
export function setExitStatuses(cmd: Command, s: CommandStatuses): Command {
  statuses.set(cmd, s);
  return cmd;
}

export function exitStatusesOf(cmd: Command | undefined): CommandStatuses {
  return (cmd && statuses.get(cmd)) ?? DEFAULT_STATUSES;
}
