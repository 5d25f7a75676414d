import type { Command } from 'commander';
import { connectionOptions, millisecondsOption, type ConnectionFlags } from '../options';
import { withVm } from '../session';
import { escapeForTerminal } from '../../lib/util/escape';
import { pauseContainer, unpauseContainer, type PauseResult } from '../../lib/ops';

interface PauseFlags extends ConnectionFlags {
  json?: boolean;
  timeout: number;
}

function show(r: PauseResult, verb: string, flags: PauseFlags): void {
  if (flags.json) {
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  const how = r.method === 'signals' ? `${verb === 'paused' ? 'SIGSTOP' : 'SIGCONT'} to pids ${(r.pids ?? []).join(', ')} (no cgroup of its own)` : `${r.method === 'cgroup2' ? 'cgroup.freeze' : 'freezer.state'} in ${escapeForTerminal(r.directory ?? '')}`;
  process.stdout.write(`${escapeForTerminal(r.container)} ${verb} (${how})\n`);
}

/** `vmictl pause CONTAINER` and `vmictl unpause CONTAINER`. */
export function registerPause(program: Command): void {
  for (const [name, verb, run] of [['pause', 'paused', pauseContainer], ['unpause', 'unpaused', unpauseContainer]] as const) {
    connectionOptions(
      program
        .command(name)
        .description(name === 'pause' ? 'freeze every process of a container (cgroup freezer, or SIGSTOP where it has no cgroup of its own)' : 'thaw a paused container')
        .argument('<container>', 'id, id prefix, name, hostname, or pid:<host pid>'),
      { dump: false, injects: true },
    )
      .option('--json', 'print JSON')
      .addOption(millisecondsOption('--timeout <ms>', 'how long to wait for a root-namespace helper thread', 20000))
      .action(async (container: string, flags: PauseFlags) => {
        const r = await withVm(flags, (vm, signal) => run(vm, container, { timeout: flags.timeout, signal }));
        show(r, verb, flags);
      });
  }
}
