/**
 * Wrong command lines end the same way whether commander finds them (unknown option, missing
 * argument, bad value) or an action does (an EUSAGE VmiError): one line saying what is wrong and
 * one pointing at the command's help, never the whole help above the error.
 */
import type { Command } from 'commander';
import { VmiError } from '../lib/errors';

/** A command line commander rejected, with the command whose help to point at. */
export class UsageError extends VmiError {
  readonly command: Command;
  /** Commander already printed the command's help: a command with subcommands given none. */
  readonly helpShown: boolean;
  constructor(message: string, command: Command, helpShown = false) {
    super('EUSAGE', message);
    this.command = command;
    this.helpShown = helpShown;
  }
}

/** `vmictl profile build`. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

export function usageHint(cmd: Command): string {
  return `Run '${commandPath(cmd)} --help' for usage.`;
}

function treeOf(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(treeOf)];
}

/**
 * Makes commander throw instead of printing and exiting, on every command of the tree (commander
 * copies these settings only to commands created after them). `--help` and `--version` still
 * print; they throw a CommanderError with exit code 0.
 */
export function throwUsageErrors(program: Command): void {
  for (const cmd of treeOf(program)) {
    cmd
      .showHelpAfterError(false)
      .configureOutput({ outputError: () => undefined })
      .exitOverride((err) => {
        if (err.exitCode === 0) throw err;
        if (err.code === 'commander.help') throw new UsageError(`${commandPath(cmd)}: a command is needed`, cmd, true);
        throw new UsageError(err.message.replace(/^error: /, ''), cmd);
      });
  }
}
