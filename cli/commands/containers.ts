import { Option, type Command } from 'commander';
import { connectionOptions, positiveNumber, type ConnectionFlags } from '../options';
import { withVm } from '../session';
import { renderInspect, renderPs, renderTop } from '../render/containers';
import { resolveContainer } from '../../lib/containers/resolve';
import type { ContainerList } from '../../lib/containers/list';
import type { Vm } from '../../lib/vm';
import { escapeForTerminal } from '../../lib/util/escape';

interface ListFlags extends ConnectionFlags {
  json?: boolean;
  maxTasks?: string;
  maxCmdline?: string;
}

function limits(cmd: Command): Command {
  return cmd
    .addOption(new Option('--max-tasks <n>', 'most tasks to read (a corrupt task list can be endless)').default('100000'))
    .addOption(new Option('--max-cmdline <bytes>', 'longest command line read per process, in bytes').default('131072'));
}

/** `brief`: skip command lines, executables and roots (ps shows none of them, and they are most of the reading). */
async function read(vm: Vm, flags: ListFlags, brief = false): Promise<ContainerList> {
  const list = await vm.listContainers({
    maxTasks: positiveNumber(flags.maxTasks, '--max-tasks', { integer: true }),
    maxCmdline: positiveNumber(flags.maxCmdline, '--max-cmdline', { integer: true }),
    brief,
  });
  for (const w of list.warnings.slice(0, 20)) process.stderr.write(`vmictl: warning: ${escapeForTerminal(w)}\n`);
  if (list.warnings.length > 20) process.stderr.write(`vmictl: warning: ${list.warnings.length - 20} more warnings\n`);
  return list;
}

/** `vmictl ps`, `top` and `inspect`: containers as the guest kernel's memory describes them. */
export function registerContainers(program: Command): void {
  limits(connectionOptions(program.command('ps').description('list the containers in the VM')))
    .option('--json', 'print JSON')
    .option('-a, --all', 'also show the root namespace (host) and unnamed mount-namespace sandboxes')
    .action(async (flags: ListFlags & { all?: boolean }) => {
      await withVm(flags, async (vm) => {
        const list = await read(vm, flags, true);
        const all = flags.all ? [list.host, ...list.containers] : list.containers;
        process.stdout.write(renderPs(all, { json: flags.json, all: flags.all, host: flags.all }));
      });
    });

  limits(connectionOptions(program.command('top').description('list the processes of a container').argument('<container>', 'id, id prefix, hostname, or pid:<host pid>')))
    .option('--json', 'print JSON')
    .action(async (spec: string, flags: ListFlags) => {
      await withVm(flags, async (vm) => {
        const list = await read(vm, flags);
        const c = resolveContainer([...list.containers, list.host], spec);
        process.stdout.write(renderTop(c, { json: flags.json }));
      });
    });

  limits(connectionOptions(program.command('inspect').description('everything vmictl knows about a container, as JSON').argument('<container>', 'id, id prefix, hostname, or pid:<host pid>')))
    .action(async (spec: string, flags: ListFlags) => {
      await withVm(flags, async (vm) => {
        const list = await read(vm, flags);
        process.stdout.write(renderInspect(resolveContainer([...list.containers, list.host], spec)));
      });
    });
}
