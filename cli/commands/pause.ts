import type { Command } from 'commander';
import { connectionOptions, millisecondsOption, type ConnectionFlags } from '../options';
import { withVm } from '../session';
import { pauseContainers, unpauseContainers } from '../../lib/ops';
import { PAUSE, renderOutcomes } from '../render/lifecycle';
import { EXIT } from '../exit-codes';

interface PauseFlags extends ConnectionFlags {
  json?: boolean;
  timeout: number;
}

/** `vmictl pause CONTAINER...` and `vmictl unpause CONTAINER...`. */
export function registerPause(program: Command): void {
  for (const [name, run] of [['pause', pauseContainers], ['unpause', unpauseContainers]] as const) {
    connectionOptions(
      program
        .command(name)
        .description(name === 'pause' ? 'freeze every process of each container (cgroup freezer, or SIGSTOP where it has no cgroup of its own)' : 'thaw paused containers')
        .argument('<container...>', 'id, id prefix, name, hostname, or pid:<host pid>; several are done in turn'),
      { dump: false, injects: true },
    )
      .option('--json', `print JSON: an array, one object per container (docs/schemas/${name}.schema.json)`)
      .addOption(millisecondsOption('--timeout <ms>', 'how long to wait for a root-namespace helper thread', 20000))
      .action(async (containers: string[], flags: PauseFlags) => {
        const outcomes = await withVm(flags, (vm, signal) => run(vm, containers, { timeout: flags.timeout, signal }));
        const out = renderOutcomes(outcomes, PAUSE, flags.json === true);
        process.stderr.write(out.stderr);
        process.stdout.write(out.stdout);
        if (out.failed) process.exitCode = EXIT.failed;
      });
  }
}
