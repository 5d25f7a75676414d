/**
 * The containers of a VM, read from its kernel's memory: collect every task, group them.
 */
import type { Kernel } from '../kernel/kernel';
import { collectTasks, type CollectOptions } from './collect';
import { groupContainers } from './group';
import type { Container } from './model';

export interface ContainerList {
  host: Container;
  containers: Container[];
  warnings: string[];
}

export async function listContainers(kernel: Kernel, opts: CollectOptions = {}): Promise<ContainerList> {
  const { processes, warnings } = await collectTasks(kernel, opts);
  const grouped = groupContainers(processes);
  return { host: grouped.host, containers: grouped.containers, warnings: [...warnings, ...grouped.warnings] };
}
