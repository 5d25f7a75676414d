import { Argument, type Command } from 'commander';
import { COMPLETION_SHELLS, completionScript, type CompletionShell } from '../completion';

/** `vmictl completion bash|zsh|fish`: the script, from the command tree as it is when this runs. */
export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script for vmictl')
    .addArgument(new Argument('<shell>', 'the shell the script is for').choices(COMPLETION_SHELLS))
    .action((shell: CompletionShell) => {
      process.stdout.write(completionScript(program, shell));
    });
}
