import type { Command } from 'commander';
import { connectionOptions, millisecondsOption, type ConnectionFlags } from '../options';
import { withVm } from '../session';
import { killContainers, parseSignal } from '../../lib/ops';
import { KILL, renderOutcomes } from '../render/lifecycle';
import { EXIT } from '../exit-codes';

interface KillFlags extends ConnectionFlags {
  json?: boolean;
  signal: string;
  all?: boolean;
  timeout: number;
}

/** `vmictl kill [-s SIGNAL] [--all] CONTAINER...`. */
export function registerKill(program: Command): void {
  connectionOptions(
    program
      .command('kill')
      .description("send a signal to each container's init (SIGKILL, the default, goes to all of its processes), from a root-namespace process")
      .argument('<container...>', 'id, id prefix, name, hostname, or pid:<host pid>; several are done in turn'),
    { dump: false, injects: true },
  )
    .option('-s, --signal <signal>', 'signal name or number', 'SIGKILL')
    .option('--all', 'send it to every process of the container, not only its init')
    .option('--json', 'print JSON: an array, one object per container (docs/schemas/kill.schema.json)')
    .addOption(millisecondsOption('--timeout <ms>', 'how long to wait for a root-namespace helper thread', 20000))
    .action(async (containers: string[], flags: KillFlags) => {
      const sig = parseSignal(flags.signal);
      const outcomes = await withVm(flags, (vm, signal) => killContainers(vm, containers, { signalName: sig.number, all: flags.all, timeout: flags.timeout, signal }));
      const out = renderOutcomes(outcomes, KILL, flags.json === true);
      process.stderr.write(out.stderr);
      process.stdout.write(out.stdout);
      if (out.failed) process.exitCode = EXIT.failed;
    });
}
