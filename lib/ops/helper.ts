/**
 * The helper process operations inject into when they act on a container from outside: a process
 * of the root namespaces running as root (uid 0 in the initial user namespace, in the initial pid
 * namespace so that host pids mean what they say, with the initial mount namespace so that the
 * guest's own /proc and /sys are visible). pid 1 is used only when nothing else qualifies: a
 * crash there would take the whole guest down.
 */
import type { Vm } from '../vm';
import { VmiError } from '../errors';
import type { ContainerList } from '../containers/list';
import type { ProcessInfo } from '../containers/model';
import { openInjection, type InjectionSession } from '../inject';

export interface HelperOptions {
  /** How long to wait for a helper thread, ms. */
  timeout?: number;
  callTimeout?: number;
  signal?: AbortSignal;
  journal?: string | false;
}

/** The processes fit to be the helper, best first (pid 1 last, if at all). */
export function helperCandidates(list: ContainerList): ProcessInfo[] {
  const host = list.host.processes;
  const init = host.find((p) => p.pid === 1);
  const fit = host.filter((p) => !p.kernelThread && p.uid === 0 && p.euid === 0 && p.nspids.length === 1 && p.state !== 'Z' && p.state !== 'T' && p.state !== 't'
    && (!init || (p.namespaces.mnt === init.namespaces.mnt && p.namespaces.user === init.namespaces.user && p.namespaces.pid === init.namespaces.pid)));
  const others = fit.filter((p) => p.pid !== 1);
  return others.length > 0 ? others : fit;
}

/** Opens an injection into a root-namespace root process (the VM runs between its calls). */
export async function openRootHelper(vm: Vm, list: ContainerList, opts: HelperOptions = {}): Promise<InjectionSession> {
  const processes = helperCandidates(list);
  if (processes.length === 0) throw new VmiError('ENOHELPER', 'no root process in the root namespaces to act from');
  return openInjection(vm, { processes, label: 'a root-namespace root process' }, { timeout: opts.timeout ?? 20_000, callTimeout: opts.callTimeout, signal: opts.signal, journal: opts.journal, maxBreakpoints: 2 });
}
