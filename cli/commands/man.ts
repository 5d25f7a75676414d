import type { Command } from 'commander';
import { manPage } from '../man';

/** `vmictl man`: the manual page, from the command tree as it is when this runs. */
export function registerMan(program: Command): void {
  program
    .command('man')
    .description('print the manual page vmictl(1), in roff (view it with: vmictl man | man -l -)')
    .action(() => {
      process.stdout.write(manPage(program));
    });
}
