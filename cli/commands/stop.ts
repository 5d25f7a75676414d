import type { Command } from 'commander';
import { connectionOptions, millisecondsOption, type ConnectionFlags } from '../options';
import { withVm } from '../session';
import { VmiError } from '../../lib/errors';
import { stopContainers } from '../../lib/ops';
import { renderOutcomes, STOP } from '../render/lifecycle';
import { EXIT } from '../exit-codes';

interface StopFlags extends ConnectionFlags {
  json?: boolean;
  time: string;
  timeout: number;
}

/** `vmictl stop [-t SECONDS] CONTAINER...`. */
export function registerStop(program: Command): void {
  connectionOptions(
    program
      .command('stop')
      .description("stop containers: SIGTERM to each one's init, then after the grace period SIGKILL to all of it")
      .argument('<container...>', 'id, id prefix, name, hostname, or pid:<host pid>; several are done in turn'),
    { dump: false, injects: true },
  )
    .option('-t, --time <seconds>', 'grace period before SIGKILL, in seconds', '10')
    .option('--json', 'print JSON: an array, one object per container (docs/schemas/stop.schema.json)')
    .addOption(millisecondsOption('--timeout <ms>', 'how long to wait for a root-namespace helper thread', 20000))
    .action(async (containers: string[], flags: StopFlags) => {
      const grace = Number(flags.time);
      if (!Number.isFinite(grace) || grace < 0) throw new VmiError('EUSAGE', `not a number of seconds: ${JSON.stringify(flags.time)}`);
      const outcomes = await withVm(flags, (vm, signal) => stopContainers(vm, containers, { graceMs: grace * 1000, timeout: flags.timeout, signal }));
      const out = renderOutcomes(outcomes, STOP, flags.json === true);
      process.stderr.write(out.stderr);
      process.stdout.write(out.stdout);
      if (out.failed) process.exitCode = EXIT.failed;
    });
}
