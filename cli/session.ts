import { setMaxListeners } from 'node:events';
import { Vm } from '../lib/vm';
import type { ConnectionFlags } from './options';
import { escapeForTerminal } from '../lib/util/escape';

/**
 * Connects to the VM (or opens the dump) the flags name, runs `fn`, and always disconnects, which
 * restarts the VM if vmictl stopped it. Ctrl-C aborts the work through an AbortSignal instead of
 * killing the process, so the VM is never left stopped.
 */
export async function withVm<T>(flags: ConnectionFlags, fn: (vm: Vm, signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  // every concurrent guest read listens on the one signal
  setMaxListeners(0, controller.signal);
  const onSigint = () => controller.abort(new Error('interrupted'));
  process.once('SIGINT', onSigint);
  const vm = await Vm.connect({
    qmp: flags.dump ? undefined : flags.qmp,
    gdb: flags.gdb,
    dump: flags.dump,
    profile: flags.profile,
    memory: flags.memory,
    signal: controller.signal,
    onNotice: (m) => process.stderr.write(`vmictl: ${escapeForTerminal(m)}\n`),
  });
  try {
    return await fn(vm, controller.signal);
  } finally {
    process.off('SIGINT', onSigint);
    await vm.close();
  }
}
