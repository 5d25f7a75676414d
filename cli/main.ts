import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Command } from 'commander';
import { commands } from './commands';
import { EXIT_CODES_HELP } from './exit-codes';
import { addGlobalOptions } from './global-options';
import { reportError } from './render/errors';
import { loadDisplayWidth } from './render/width';
import { throwUsageErrors } from './usage';

/** The version in the project's package.json, found upwards from here (works from cli/ and dist/cli/). */
function packageVersion(): string {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  }
  return 'unknown';
}

/** Builds the commander program with every command vmictl has. */
export function buildProgram(): Command {
  const program = new Command('vmictl')
    .description('Manage the containers inside a QEMU VM from the hypervisor, with nothing installed in the guest')
    .version(packageVersion())
    // the program's options end at the verb, so that exec and syscall can leave theirs to the command
    .enablePositionalOptions();
  addGlobalOptions(program).addHelpText('after', EXIT_CODES_HELP);
  for (const register of commands) register(program);
  throwUsageErrors(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // the command whose action ran: its failures and usage errors have its exit statuses and help
  let ran: Command | undefined;
  program.hook('preAction', (_program, action) => { ran = action; });
  try {
    await loadDisplayWidth();
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    return reportError(err, ran);
  }
}

// `vmictl ps | head`: a closed pipe ends the output, never the process. Exiting here would cut an
// injection short with the guest's thread still hijacked; the command finishes and restores first.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') return;
  throw err;
});

if (require.main === module) {
  main(process.argv).then((code) => { process.exitCode = code; });
}
