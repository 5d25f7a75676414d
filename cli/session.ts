import { setMaxListeners } from 'node:events';
import { Vm } from '../lib/vm';
import { positiveNumber, type ConnectionFlags } from './options';
import { LimitExceededError, TerminatedError } from '../lib/errors';
import { escapeForTerminal } from '../lib/util/escape';
import { operationGuard } from '../lib/integrity/guard';

/**
 * Connects to the VM (or opens the dump) the flags name, runs `fn`, and always disconnects, which
 * restarts the VM if vmictl stopped it. Ctrl-C, SIGTERM and SIGHUP abort the work through an
 * AbortSignal instead of killing the process, so the VM is never left stopped.
 */
export async function withVm<T>(flags: ConnectionFlags, fn: (vm: Vm, signal: AbortSignal) => Promise<T>): Promise<T> {
  const maxReadMiB = positiveNumber(flags.maxRead, '--max-read');
  const seconds = positiveNumber(flags.timeLimit, '--time-limit');
  const controller = new AbortController();
  // every concurrent guest read listens on the one signal
  setMaxListeners(0, controller.signal);
  const stops = stopSignalsAbort(controller);
  // the time limit ends the work the way Ctrl-C does (an injection puts its thread back first)
  const limit = seconds === undefined ? undefined : new LimitExceededError('time taken by this command', seconds, '--time-limit', ' s');
  const timer = limit && setTimeout(() => controller.abort(limit), seconds! * 1000);
  timer?.unref();
  try {
    return await run(flags, controller, maxReadMiB, fn);
  } catch (err) {
    // whatever gave way first (an AbortError, usually), the limit or the signal is what the user can act on
    const reason: unknown = controller.signal.reason;
    if (controller.signal.aborted && (reason === limit || reason instanceof TerminatedError)) throw reason;
    throw err;
  } finally {
    if (timer) clearTimeout(timer);
    stops.release();
  }
}

const STOP_SIGNALS: ReadonlyArray<[NodeJS.Signals, number]> = [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]];

/**
 * Ctrl-C, SIGTERM and SIGHUP abort the work instead of killing the process, for every command: a
 * `ps` killed while the VM is stopped, or an injection killed mid-call, must still resume the VM
 * and put the thread back. A second signal of the same kind is left to the default (kill).
 */
function stopSignalsAbort(controller: AbortController): { release(): void } {
  const handlers = STOP_SIGNALS.map(([name, number]) => {
    const h = () => controller.abort(new TerminatedError(name, number));
    process.once(name, h);
    return [name, h] as const;
  });
  return { release: () => { for (const [name, h] of handlers) process.off(name, h); } };
}

async function run<T>(flags: ConnectionFlags, controller: AbortController, maxReadMiB: number | undefined, fn: (vm: Vm, signal: AbortSignal) => Promise<T>): Promise<T> {
  const onNotice = (m: string) => process.stderr.write(`vmictl: ${escapeForTerminal(m)}\n`);
  const vm = await Vm.connect({
    maxReadBytes: maxReadMiB === undefined ? undefined : Math.floor(maxReadMiB * 2 ** 20),
    qmp: flags.dump ? undefined : flags.qmp,
    gdb: flags.gdb,
    dump: flags.dump,
    profile: flags.profile,
    memory: flags.memory,
    signal: controller.signal,
    onNotice,
    protect: operationGuard({ vmlinux: flags.vmlinux, repair: flags.repair, allowHooked: flags.allowHooked, onNotice }),
  });
  try {
    return await fn(vm, controller.signal);
  } finally {
    await vm.close();
  }
}
