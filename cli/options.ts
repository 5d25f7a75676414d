import { Option, type Command } from 'commander';
import type { MemoryBackendChoice } from '../lib/vm';

export interface ConnectionFlags {
  qmp?: string;
  gdb?: string;
  profile?: string;
  dump?: string;
  memory?: MemoryBackendChoice;
}

/** The flags every command that reaches a VM takes, with their environment fallbacks. */
export function connectionOptions(cmd: Command, opts: { dump?: boolean } = {}): Command {
  cmd
    .addOption(new Option('--qmp <addr>', 'QMP socket (unix:/path or tcp:127.0.0.1:PORT)').env('VMICTL_QMP'))
    .addOption(new Option('--gdb <addr>', 'gdbstub socket; default: started through QMP').env('VMICTL_GDB'))
    .addOption(new Option('--profile <file>', 'kernel profile (ISF JSON); default: the one matching the banner'))
    .addOption(new Option('--memory <backend>', 'guest memory access').choices(['auto', 'gdbstub', 'procmem']).default('auto'));
  if (opts.dump !== false) cmd.addOption(new Option('--dump <file>', 'read an ELF dump (dump-guest-memory) instead of a live VM'));
  return cmd;
}
