import { Command } from 'commander';
import { commands } from './commands';
import { reportError } from './render/errors';

/** Builds the commander program with every command vmictl has. */
export function buildProgram(): Command {
  const program = new Command('vmictl')
    .description('Manage the containers inside a QEMU VM from the hypervisor, with nothing installed in the guest')
    .version(require('../package.json').version as string)
    .showHelpAfterError();
  for (const register of commands) register(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    return reportError(err);
  }
}

if (require.main === module) {
  main(process.argv).then((code) => { process.exitCode = code; });
}
