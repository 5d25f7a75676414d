/**
 * The task list as the guest kernel has it right now, read with the VM stopped (a list walked
 * while the guest runs can tear), and the checks operations make against it.
 */
import type { Vm } from '../vm';
import type { ContainerList } from '../containers/list';
import type { Container, ProcessInfo } from '../containers/model';
import { resolveContainer } from '../containers/resolve';
import { VmiError } from '../errors';

/** Lists the containers with the VM stopped; it runs again afterwards if it ran before. */
export async function snapshot(vm: Vm, signal?: AbortSignal): Promise<ContainerList> {
  await vm.pause();
  try {
    return await vm.listContainers({ signal });
  } finally {
    await vm.resume();
  }
}

/** The container a spec names; the host itself is refused (operations act on containers only). */
export function findContainer(list: ContainerList, spec: string): Container {
  const c = resolveContainer([...list.containers, list.host], spec);
  if (c.id === 'host') throw new VmiError('EUSAGE', 'that is the host, not a container: vmictl acts on containers only');
  return c;
}

/** A process's identity across two listings: its host pid and when it started. */
export function sameProcess(a: ProcessInfo, b: ProcessInfo): boolean {
  return a.pid === b.pid && a.startTime === b.startTime;
}

/** The processes of `before` that still live in `list` (same pid, same start, not a zombie). */
export function stillAlive(list: ContainerList, before: readonly ProcessInfo[]): ProcessInfo[] {
  const now = new Map<number, ProcessInfo>();
  for (const c of [...list.containers, list.host]) for (const p of c.processes) now.set(p.pid, p);
  return before.filter((p) => {
    const q = now.get(p.pid);
    return q !== undefined && sameProcess(p, q) && q.state !== 'Z' && q.state !== 'X';
  });
}

/** A label for messages: the container's name, hostname or short id (guest data: escape before printing). */
export function containerLabel(c: Container): string {
  return c.name ?? (c.hostname || (/^[0-9a-f]{64}$/.test(c.id) ? c.id.slice(0, 12) : c.id));
}
