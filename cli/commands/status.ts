import type { Command } from 'commander';
import { liveVmOption, type ConnectionFlags } from '../options';
import { QmpClient } from '../../lib/transport/qmp';
import { escapeForTerminal } from '../../lib/util/escape';
import { printJson } from '../render/json';
import type { StatusJson } from '../render/vm-info';

/** `vmictl status`: the VM's run state and QEMU version, through QMP only. */
export function registerStatus(program: Command): void {
  // QMP alone: none of the options for guest memory, the kernel or injection would change a thing
  liveVmOption(program.command('status').description('show the VM run state and QEMU version (QMP)'))
    .option('--json', 'print JSON')
    .action(async (flags: ConnectionFlags & { json?: boolean }) => {
      // liveVmOption stops the command before its action when there is no --qmp
      const qmp = await QmpClient.connect(flags.qmp!, { timeout: 10_000 });
      try {
        const status = (await qmp.execute('query-status')) as { status: string; running: boolean };
        const v = qmp.greeting.version.qemu;
        const out: StatusJson = { status: status.status, running: status.running, qemu: `${v.major}.${v.minor}.${v.micro}` };
        if (flags.json) printJson(out);
        else process.stdout.write(`status: ${escapeForTerminal(out.status)}\nqemu: ${escapeForTerminal(out.qemu)}\n`);
      } finally {
        await qmp.close();
      }
    });
}
