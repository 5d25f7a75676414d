import { InvalidArgumentError, Option, type Command } from 'commander';
import { VmiError } from '../lib/errors';
import type { MemoryBackendChoice } from '../lib/vm';

export interface ConnectionFlags {
  qmp?: string;
  gdb?: string;
  profile?: string;
  dump?: string;
  memory?: MemoryBackendChoice;
  /** --max-read: MiB of guest memory one command may read. */
  maxRead?: string;
  /** --time-limit: seconds one command may take. */
  timeLimit?: string;
  /** --vmlinux: the guest kernel's vmlinux, known-good code for the injection guard. */
  vmlinux?: string;
  /** --repair: keep the guard's repair of tampered kernel code after the operation. */
  repair?: boolean;
  /** --allow-hooked: go on through a hook the guard cannot undo. */
  allowHooked?: boolean;
  /** --vm: the config file's VM the other options default to (cli/global-options.ts applies it). */
  vm?: string;
}

/** A flag's value as a positive number, or a usage error naming the flag. */
export function positiveNumber(text: string | undefined, flag: string, opts: { integer?: boolean } = {}): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || (opts.integer && !Number.isSafeInteger(n))) {
    throw new VmiError('EUSAGE', `${flag} needs a positive ${opts.integer ? 'integer' : 'number'}, not ${JSON.stringify(text)}`);
  }
  return n;
}

/** setTimeout's longest delay: a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A value in milliseconds (--timeout): a whole number that a timer can wait, or a usage error. */
export function parseMilliseconds(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > MAX_TIMER_MS) throw new InvalidArgumentError(`It takes a whole number of milliseconds from 1 to ${MAX_TIMER_MS}.`);
  return n;
}

/** An option whose value is milliseconds: checked, and the unit said in its help. */
export function millisecondsOption(flags: string, description: string, defaultMs: number): Option {
  return new Option(flags, `${description}, in milliseconds`).argParser(parseMilliseconds).default(defaultMs);
}

function qmpOption(): Option {
  return new Option('--qmp <addr>', 'QMP socket (unix:/path or tcp:127.0.0.1:PORT)').env('VMICTL_QMP');
}

function gdbOption(): Option {
  return new Option('--gdb <addr>', 'gdbstub socket; default: started through QMP').env('VMICTL_GDB');
}

function profileOption(): Option {
  return new Option('--profile <file>', 'kernel profile (ISF JSON); default: the one matching the banner');
}

function vmlinuxOption(): Option {
  return new Option('--vmlinux <file>', "the guest kernel's vmlinux: the code injected syscalls go through is checked against it first, and restored for the operation where tampered").env('VMICTL_VMLINUX');
}

function vmOption(): Option {
  return new Option('--vm <name>', 'a VM named in the config file ($XDG_CONFIG_HOME/vmictl/config.json): its qmp, gdb, vmlinux and profile').env('VMICTL_VM');
}

/**
 * The options that say which VM, and which kernel, a command works on: the ones the program also
 * takes before the verb (cli/global-options.ts) and the config file can give. Keyed by the
 * config file's field; `vm` is the name of the config file's entry.
 */
export const VM_OPTIONS = { vm: vmOption, qmp: qmpOption, gdb: gdbOption, profile: profileOption, vmlinux: vmlinuxOption } as const;

/**
 * --qmp, for a command that works on a live VM only. Without it the command stops before doing
 * anything, with a message that offers no --dump, which it does not take.
 */
export function liveVmOption(cmd: Command): Command {
  return cmd
    .addOption(vmOption())
    .addOption(qmpOption())
    .hook('preAction', (self) => {
      if (!self.opts<ConnectionFlags>().qmp) throw new VmiError('EUSAGE', 'no VM given: pass --qmp ADDR (or set VMICTL_QMP)');
    });
}

/**
 * The flags every command that reaches a VM takes, with their environment fallbacks. `profile:
 * false` for a command that reads memory but never the kernel's structures.
 */
export function connectionOptions(cmd: Command, opts: { dump?: boolean; injects?: boolean; profile?: boolean } = {}): Command {
  if (opts.dump === false) liveVmOption(cmd);
  else cmd.addOption(vmOption()).addOption(qmpOption());
  cmd.addOption(gdbOption());
  if (opts.profile !== false) cmd.addOption(profileOption());
  cmd
    .addOption(new Option('--memory <backend>', 'guest memory access').choices(['auto', 'gdbstub', 'procmem']).default('auto'))
    .addOption(new Option('--max-read <MiB>', 'most guest memory one command reads, in MiB (a hostile guest can make walks endless)').default('8192'))
    .addOption(new Option('--time-limit <seconds>', 'longest one command may take, in seconds').default('600'));
  if (opts.injects) {
    cmd
      .addOption(vmlinuxOption())
      .option('--repair', 'keep the repair of tampered kernel code after the operation (default: put the guest\'s bytes back)')
      .option('--allow-hooked', 'go on although a hook on the path of injected syscalls cannot be undone (code changed without --vmlinux to restore it, an ftrace_ops or kprobe; default: refuse)');
  }
  if (opts.dump !== false) cmd.addOption(new Option('--dump <file>', 'read an ELF dump (dump-guest-memory) instead of a live VM'));
  return cmd;
}
