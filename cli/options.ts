import { Option, type Command } from 'commander';

export interface ConnectionFlags {
  qmp: string;
  gdb?: string;
  profile?: string;
  dump?: string;
}

/** The flags every command that reaches a VM takes, with their environment fallbacks. */
export function connectionOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--qmp <addr>', 'QMP socket (unix:/path or tcp:127.0.0.1:PORT)').env('VMICTL_QMP').makeOptionMandatory())
    .addOption(new Option('--gdb <addr>', 'gdbstub socket; default: started through QMP').env('VMICTL_GDB'));
}
