/**
 * The helper process vmictl injects into when it acts on a container from outside (a freeze, a
 * kill, a privileged exec): a process of the root namespaces running as root (uid 0 in the
 * initial user namespace, in the initial pid namespace so that host pids mean what they say, in
 * the initial mount namespace so that the guest's own /proc and /sys are visible), with the
 * capabilities the work needs and no seccomp filter that could refuse it. On a systemd guest most
 * root services are not that: they drop capabilities, filter syscalls or see a private /sys.
 *
 * Daemons (children of pid 1) are preferred, single-threaded ones first. On a quiet host the
 * threads that come back from a syscall soonest are often a Go daemon's (dockerd, containerd):
 * those are used too, but never with buffers below a thread's stack pointer (session.ts,
 * prepare()), since the other threads run on meanwhile. pid 1 is used only when nothing else
 * qualifies: a crash there takes the whole guest down.
 */
import type { Vm } from '../vm';
import { VmiError } from '../errors';
import type { ContainerList } from '../containers/list';
import { tasksOf, type ProcessInfo } from '../containers/model';
import { hasCapability, taskConfinement, type TaskConfinement } from '../kernel/helpers/cred';
import type { Kernel } from '../kernel/kernel';

/** CAP_DAC_OVERRIDE, CAP_KILL, CAP_SYS_ADMIN (include/uapi/linux/capability.h). */
const NEEDED_CAPABILITIES = [1, 5, 21];

/** Root processes of the root namespaces, from the listing alone: fewest threads first, pid 1 last (if at all). */
export function helperCandidates(list: ContainerList): ProcessInfo[] {
  const host = list.host.processes;
  const init = host.find((p) => p.pid === 1);
  const fit = host.filter((p) => !p.kernelThread && p.uid === 0 && p.euid === 0 && p.nspids.length === 1 && p.state !== 'Z' && p.state !== 'X' && p.state !== 'T' && p.state !== 't'
    && (!init || (p.namespaces.mnt === init.namespaces.mnt && p.namespaces.user === init.namespaces.user && p.namespaces.pid === init.namespaces.pid)));
  const others = fit.filter((p) => p.pid !== 1).sort((a, b) => threadCount(a) - threadCount(b) || a.pid - b.pid);
  return others.length > 0 ? others : fit;
}

function threadCount(p: ProcessInfo): number {
  return tasksOf(p).length;
}

/** Whether a helper with this confinement can do what helpers do: all the needed capabilities, no seccomp. */
export function helperConfinementFits(c: TaskConfinement): boolean {
  return NEEDED_CAPABILITIES.every((cap) => hasCapability(c.capEffective, cap)) && (c.seccompMode ?? 0) === 0;
}

/**
 * The helper candidates whose confinement fits, in helperCandidates() order, and of those the
 * daemons (children of pid 1) when there are any: a process a shell or a daemon has just started
 * (`docker`, `runc`, a `sleep`) may exit in the middle of the work. When none fits, the candidates
 * as they are (a guest without capabilities or seccomp support in its profile).
 */
export async function fitHelpers(kernel: Kernel, candidates: readonly ProcessInfo[]): Promise<ProcessInfo[]> {
  const fit: ProcessInfo[] = [];
  for (const p of candidates) {
    const c = await taskConfinement(kernel, p.address).catch(() => undefined);
    if (c && c.euid === 0 && helperConfinementFits(c)) fit.push(p);
  }
  const daemons = fit.filter((p) => p.ppid === 1);
  return daemons.length > 0 ? daemons : fit.length > 0 ? fit : [...candidates];
}


/** The injection target of a root helper: the processes fit to be one, best first. */
export async function rootHelperTarget(vm: Vm, list?: ContainerList, opts: { signal?: AbortSignal } = {}): Promise<{ processes: ProcessInfo[]; label: string }> {
  const candidates = helperCandidates(list ?? (await vm.listContainers({ signal: opts.signal })));
  if (candidates.length === 0) throw new VmiError('ENOHELPER', 'no root process in the root namespaces to act from');
  return { processes: await fitHelpers(await vm.kernel(), candidates), label: 'a root-namespace root process' };
}
