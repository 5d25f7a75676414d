/** Opening an injection into a root helper (lib/inject/root-helper.ts says which process that is). */
import type { Vm } from '../vm';
import type { ContainerList } from '../containers/list';
import { openInjection, rootHelperTarget, type InjectionSession } from '../inject';

export interface HelperOptions {
  /** How long to wait for a helper thread, ms. */
  timeout?: number;
  callTimeout?: number;
  signal?: AbortSignal;
  journal?: string | false;
}

/** Opens an injection into a root-namespace root process (the VM runs between its calls). */
export async function openRootHelper(vm: Vm, list: ContainerList, opts: HelperOptions = {}): Promise<InjectionSession> {
  return openInjection(vm, await rootHelperTarget(vm, list, opts), { timeout: opts.timeout ?? 20_000, callTimeout: opts.callTimeout, signal: opts.signal, journal: opts.journal, maxBreakpoints: Number.POSITIVE_INFINITY });
}
