import { setMaxListeners } from 'node:events';
import { Vm } from '../lib/vm';
import { positiveNumber, type ConnectionFlags } from './options';
import { LimitExceededError } from '../lib/errors';
import { escapeForTerminal } from '../lib/util/escape';
import { operationGuard } from '../lib/integrity/guard';

/**
 * Connects to the VM (or opens the dump) the flags name, runs `fn`, and always disconnects, which
 * restarts the VM if vmictl stopped it. Ctrl-C aborts the work through an AbortSignal instead of
 * killing the process, so the VM is never left stopped.
 */
export async function withVm<T>(flags: ConnectionFlags, fn: (vm: Vm, signal: AbortSignal) => Promise<T>): Promise<T> {
  const maxReadMiB = positiveNumber(flags.maxRead, '--max-read');
  const seconds = positiveNumber(flags.timeLimit, '--time-limit');
  const controller = new AbortController();
  // every concurrent guest read listens on the one signal
  setMaxListeners(0, controller.signal);
  const onSigint = () => controller.abort(new Error('interrupted'));
  process.once('SIGINT', onSigint);
  // the time limit ends the work the way Ctrl-C does (an injection puts its thread back first)
  const limit = seconds === undefined ? undefined : new LimitExceededError('time taken by this command', seconds, '--time-limit', ' s');
  const timer = limit && setTimeout(() => controller.abort(limit), seconds! * 1000);
  timer?.unref();
  try {
    return await run(flags, controller, maxReadMiB, fn);
  } catch (err) {
    // whatever gave way first (an AbortError, usually), the limit is what the user can act on
    if (limit && controller.signal.reason === limit) throw limit;
    throw err;
  } finally {
    if (timer) clearTimeout(timer);
    process.off('SIGINT', onSigint);
  }
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

/**
 * Runs `fn` with a signal that also aborts on SIGTERM and SIGHUP (SIGINT is withVm's), so that a
 * command killed politely still puts back the thread it injected into.
 */
export async function withTermination<T>(signal: AbortSignal, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  setMaxListeners(0, ac.signal);
  const stop = () => ac.abort(new Error('terminated'));
  process.once('SIGTERM', stop);
  process.once('SIGHUP', stop);
  const onVmAbort = () => ac.abort(signal.reason);
  if (signal.aborted) onVmAbort();
  else signal.addEventListener('abort', onVmAbort, { once: true });
  try {
    return await fn(ac.signal);
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGHUP', stop);
    signal.removeEventListener('abort', onVmAbort);
  }
}
