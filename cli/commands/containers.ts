import { Option, type Command } from 'commander';
import { connectionOptions, positiveNumber, type ConnectionFlags } from '../options';
import { withVm } from '../session';
import { renderPs, renderTop, shownInPs } from '../render/containers';
import { renderInspect } from '../render/inspect';
import { checkPsFormat, filterContainers, parsePsFilters, PS_FILTER_KEYS, PS_TEMPLATE_FIELDS, renderPsFormat, renderPsQuiet } from '../render/ps-format';
import { resolveContainer } from '../../lib/containers/resolve';
import type { ContainerList } from '../../lib/containers/list';
import type { Vm } from '../../lib/vm';
import { escapeForTerminal } from '../../lib/util/escape';

interface ListFlags extends ConnectionFlags {
  json?: boolean;
  maxTasks?: string;
  maxCmdline?: string;
}

interface PsFlags extends ListFlags {
  all?: boolean;
  quiet?: boolean;
  /** false with --no-trunc */
  trunc?: boolean;
  filter: string[];
  format?: string;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
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
    .addOption(new Option('--json', 'print JSON (an array)').conflicts(['format', 'quiet']))
    .option('-a, --all', 'also show the root namespace (host) and unnamed mount-namespace sandboxes')
    .addOption(new Option('-q, --quiet', 'print only the ids, one a line').conflicts('format'))
    .option('--no-trunc', 'print whole ids (64 hex digits where the runtime has them) and cut no column')
    .option('-f, --filter <key=value>', `only the containers that match: ${PS_FILTER_KEYS.join(', ')} (name: a substring of the name or hostname; id: a prefix); repeat it: the same key ORs, different keys AND`, collect, [])
    .option('--format <template>', `'json' for one JSON object a line, or a template such as '{{.ID}} {{.Hostname}}' over the fields ${PS_TEMPLATE_FIELDS.join(', ')}`)
    .action(async (flags: PsFlags) => {
      // a wrong filter or template is found before the VM is touched
      const filters = parsePsFilters(flags.filter);
      if (flags.format !== undefined) checkPsFormat(flags.format);
      const fullIds = flags.trunc === false;
      await withVm(flags, async (vm) => {
        const list = await read(vm, flags, true);
        const all = filterContainers(flags.all ? [list.host, ...list.containers] : list.containers, filters);
        const opts = { json: flags.json, all: flags.all, host: flags.all, fullIds, ...(fullIds ? { truncate: false } : {}) };
        if (flags.quiet) process.stdout.write(renderPsQuiet(shownInPs(all, opts), opts));
        else if (flags.format !== undefined) process.stdout.write(renderPsFormat(shownInPs(all, opts), flags.format, opts));
        else process.stdout.write(renderPs(all, opts));
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

  limits(connectionOptions(program.command('inspect').description('everything vmictl knows about containers, as JSON: one object, or an array for several').argument('<container...>', 'id, id prefix, hostname, or pid:<host pid>')))
    .option('--kernel-addresses', 'also print the kernel address of each task (struct task_struct), for a debugger')
    .action(async (specs: string[], flags: ListFlags & { kernelAddresses?: boolean }) => {
      await withVm(flags, async (vm) => {
        const list = await read(vm, flags);
        const candidates = [...list.containers, list.host];
        // every spec resolved before anything is printed: one that matches nothing fails the whole command
        const found = specs.map((spec) => resolveContainer(candidates, spec));
        process.stdout.write(renderInspect(found.length === 1 ? found[0]! : found, { kernelAddresses: flags.kernelAddresses }));
      });
    });
}
