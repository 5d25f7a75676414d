/**
 * Journals left by a vmictl that is gone (killed, crashed) for one VM, of injections and of
 * acquisitions. A new injection must not start over them: the dead run's breakpoints or
 * watchpoints are still in QEMU and unknown to the new runner, its target still holds injected
 * registers, or a cgroup it froze is still frozen.
 */
import { readFileSync } from 'node:fs';
import type { Vm } from '../vm';
import { listJournals, readJournal } from './journal';
import { listAcquisitions, readAcquisition } from './acquisition-journal';

/** Whether a host process still runs (a zombie, killed but not yet reaped, does not). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return true;
  }
}

/**
 * The journals (injections and acquisitions) in `dir` whose writer is gone and that name this
 * VM's QMP address (or none); an unreadable journal counts too (recover reports it).
 */
export function staleJournals(vm: Vm, dir?: string): string[] {
  const out: string[] = [];
  const journals = [...listJournals(dir).map((path) => [path, readJournal] as const), ...listAcquisitions(dir).map((path) => [path, readAcquisition] as const)];
  for (const [path, read] of journals) {
    let writer: number;
    let qmp: string | undefined;
    try {
      ({ writer, qmp } = read(path));
    } catch {
      out.push(path);
      continue;
    }
    if (writer === process.pid || processAlive(writer)) continue;
    if (qmp && vm.options.qmp && qmp !== vm.options.qmp) continue;
    out.push(path);
  }
  return out;
}
