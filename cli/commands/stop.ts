import type { Command } from 'commander';
import { connectionOptions, millisecondsOption, type ConnectionFlags } from '../options';
import { withVm } from '../session';
import { VmiError } from '../../lib/errors';
import { escapeForTerminal } from '../../lib/util/escape';
import { stopContainer } from '../../lib/ops';
import { describeOutcome } from './kill';

interface StopFlags extends ConnectionFlags {
  json?: boolean;
  time: string;
  timeout: number;
}

/** `vmictl stop [-t SECONDS] CONTAINER`. */
export function registerStop(program: Command): void {
  connectionOptions(
    program
      .command('stop')
      .description("stop a container: SIGTERM to its init, then after the grace period SIGKILL to all of it")
      .argument('<container>', 'id, id prefix, name, hostname, or pid:<host pid>'),
    { dump: false, injects: true },
  )
    .option('-t, --time <seconds>', 'grace period before SIGKILL, in seconds', '10')
    .option('--json', 'print JSON')
    .addOption(millisecondsOption('--timeout <ms>', 'how long to wait for a root-namespace helper thread', 20000))
    .action(async (container: string, flags: StopFlags) => {
      const grace = Number(flags.time);
      if (!Number.isFinite(grace) || grace < 0) throw new VmiError('EUSAGE', `not a number of seconds: ${JSON.stringify(flags.time)}`);
      const r = await withVm(flags, (vm, signal) => stopContainer(vm, container, { graceMs: grace * 1000, timeout: flags.timeout, signal }));
      if (flags.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      else {
        const name = escapeForTerminal(r.container);
        process.stdout.write(describeOutcome(`${name}: SIGTERM`, r.term));
        if (r.kill) process.stdout.write(describeOutcome(`${name}: still running after ${grace} s, SIGKILL`, r.kill));
        process.stdout.write(r.remaining.length ? `still running: pids ${r.remaining.join(', ')}\n` : `${name} stopped\n`);
      }
      if (r.remaining.length) process.exitCode = 1;
    });
}
