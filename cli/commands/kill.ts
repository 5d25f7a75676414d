import type { Command } from 'commander';
import { connectionOptions, millisecondsOption, type ConnectionFlags } from '../options';
import { withVm } from '../session';
import { escapeForTerminal } from '../../lib/util/escape';
import { killContainer, parseSignal, type SignalOutcome } from '../../lib/ops';

interface KillFlags extends ConnectionFlags {
  json?: boolean;
  signal: string;
  all?: boolean;
  timeout: number;
}

/** Lines about who got a signal, for kill and stop. */
export function describeOutcome(what: string, o: SignalOutcome): string {
  let s = `${what}: sent to ${o.signalled.length ? `pids ${o.signalled.join(', ')}` : 'no process'}`;
  if (o.gone.length) s += `; already gone: ${o.gone.join(', ')}`;
  if (o.failed.length) s += `; failed: ${o.failed.map((f) => `${f.pid} (${f.reason})`).join(', ')}`;
  return `${s}\n`;
}

/** `vmictl kill [-s SIGNAL] [--all] CONTAINER`. */
export function registerKill(program: Command): void {
  connectionOptions(
    program
      .command('kill')
      .description("send a signal to a container's init (SIGKILL, the default, goes to all of its processes), from a root-namespace process")
      .argument('<container>', 'id, id prefix, name, hostname, or pid:<host pid>'),
    { dump: false, injects: true },
  )
    .option('-s, --signal <signal>', 'signal name or number', 'SIGKILL')
    .option('--all', 'send it to every process of the container, not only its init')
    .option('--json', 'print JSON')
    .addOption(millisecondsOption('--timeout <ms>', 'how long to wait for a root-namespace helper thread', 20000))
    .action(async (container: string, flags: KillFlags) => {
      const sig = parseSignal(flags.signal);
      const r = await withVm(flags, (vm, signal) => killContainer(vm, container, { signalName: sig.number, all: flags.all, timeout: flags.timeout, signal }));
      if (flags.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      else {
        process.stdout.write(describeOutcome(`${escapeForTerminal(r.container)}: ${r.signal.name}`, r.outcome));
        const left = r.remaining.length ? `pids ${r.remaining.join(', ')}` : 'none';
        process.stdout.write(r.signal.number === 9 ? (r.remaining.length ? `still running: ${left}\n` : 'no process of it is left\n') : `its processes now: ${left}\n`);
      }
      if (r.outcome.failed.length || (r.signal.number === 9 && r.remaining.length)) process.exitCode = 1;
    });
}
