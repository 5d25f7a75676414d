/**
 * The command tree as the user sees it, for what is generated from it (shell completion, the man
 * page): the commands `--help` lists, with their paths from the program, and their options.
 */
import type { Command, Option } from 'commander';

export interface CommandNode {
  /** '' for the program, 'ps', 'profile build'. */
  path: string;
  command: Command;
}

export function visibleCommands(cmd: Command): Command[] {
  return cmd.commands.filter((c) => !(c as Command & { _hidden?: boolean })._hidden);
}

/** The program and every visible command below it, parents before their subcommands. */
export function commandNodes(cmd: Command, path = ''): CommandNode[] {
  return [{ path, command: cmd }, ...visibleCommands(cmd).flatMap((c) => commandNodes(c, path ? `${path} ${c.name()}` : c.name()))];
}

export function visibleOptions(cmd: Command): Option[] {
  return cmd.options.filter((o) => !o.hidden);
}
