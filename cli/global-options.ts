/**
 * The options that name the VM are taken before the verb too (`vmictl --qmp X ps`), and default to
 * the config file's VM. The program parses its own options up to the verb only (exec and syscall
 * leave what follows their container to the command), so the values are carried over to the verb
 * before its action runs. For each option the first of these wins:
 *
 *   1. the option after the verb;
 *   2. the option before the verb;
 *   3. its VMICTL_* environment variable;
 *   4. the field of the config file's VM that --vm (or VMICTL_VM) names, or else its "default" VM.
 *
 * The "default" VM is not used when the command line or environment names the VM some other way
 * (--qmp, --dump): its gdbstub or vmlinux would then belong to another VM than the one given.
 */
import type { Command, Option } from 'commander';
import { VM_OPTIONS } from './options';
import { loadConfig, namedVm, VM_FIELDS, type VmEntry } from './config';
import { commandPath, UsageError } from './usage';
import { VmiError } from '../lib/errors';

type VmOptionKey = keyof typeof VM_OPTIONS;

export const GLOBAL_OPTIONS_HELP = `
The VM options (--vm, --qmp, --gdb, --profile, --vmlinux) go before or after the command; given in
both places, the one after the command wins. Each defaults to its VMICTL_* environment variable,
then to the VM of the config file that --vm or VMICTL_VM names, or else to the file's default VM.`;

/** The command's option that is the program's `key` option: same flag, same environment variable. */
function sameOption(cmd: Command, key: VmOptionKey): Option | undefined {
  const model = VM_OPTIONS[key]();
  return cmd.options.find((o) => o.long === model.long && o.envVar === model.envVar);
}

/** Whether an option holds a value the user gave: on the command line or in the environment. */
function given(cmd: Command, option: Option): boolean {
  const source = cmd.getOptionValueSource(option.attributeName());
  return source === 'cli' || source === 'env';
}

/** The options before the verb, carried to it; one the verb does not take is a usage error. */
function carryOver(program: Command, cmd: Command): void {
  for (const key of Object.keys(VM_OPTIONS) as VmOptionKey[]) {
    const attr = VM_OPTIONS[key]().attributeName();
    if (program.getOptionValueSource(attr) !== 'cli') continue;
    const target = sameOption(cmd, key);
    if (!target) {
      const own = cmd.options.some((o) => o.long === `--${key}`);
      throw new UsageError(own
        ? `--${key} before the command is the VM's; ${commandPath(cmd)} has a --${key} of its own: give it after the command`
        : `${commandPath(cmd)} takes no --${key}`, cmd);
    }
    if (cmd.getOptionValueSource(target.attributeName()) === 'cli') continue;
    cmd.setOptionValueWithSource(target.attributeName(), program.getOptionValue(attr), 'cli');
  }
}

/** The config file's VM for this command line, if it names one (or has a default that applies). */
function chosenVm(cmd: Command): VmEntry | undefined {
  const config = loadConfig();
  const vmOption = sameOption(cmd, 'vm')!;
  const name = cmd.getOptionValue(vmOption.attributeName()) as string | undefined;
  if (given(cmd, vmOption) && name !== undefined) return namedVm(config, name);
  if (!config?.default) return undefined;
  const qmp = sameOption(cmd, 'qmp');
  const dump = cmd.options.find((o) => o.long === '--dump');
  if ((qmp && given(cmd, qmp)) || (dump && cmd.getOptionValue(dump.attributeName()) !== undefined)) return undefined;
  return namedVm(config, config.default);
}

/** Fills the verb's options the user left out from the chosen VM of the config file. */
function applyConfig(cmd: Command): void {
  // only the commands that reach a VM take --vm; the others read no config
  if (!sameOption(cmd, 'vm')) return;
  const vm = chosenVm(cmd);
  if (!vm) return;
  for (const field of VM_FIELDS) {
    const option = sameOption(cmd, field);
    const value = vm[field];
    if (!option || value === undefined || given(cmd, option)) continue;
    cmd.setOptionValueWithSource(option.attributeName(), value, 'config');
  }
}

/** Adds the VM options to the program, and the hook that gives them to the verb. */
export function addGlobalOptions(program: Command): Command {
  for (const make of Object.values(VM_OPTIONS)) {
    const option = make();
    // the environment is read by the verb's own option, which says where its value came from
    option.envVar = undefined;
    program.addOption(option);
  }
  return program
    .addHelpText('after', GLOBAL_OPTIONS_HELP)
    .hook('preAction', (_program, cmd) => {
      try {
        carryOver(program, cmd);
        applyConfig(cmd);
      } catch (err) {
        // the verb's exit statuses and help apply (exec's usage status is its own)
        if (err instanceof VmiError && err.code === 'EUSAGE' && !(err instanceof UsageError)) throw new UsageError(err.message, cmd);
        throw err;
      }
    });
}
