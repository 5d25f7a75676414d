/**
 * Sending signals to a container's processes from the root-namespace helper, by host pid, without
 * ever reaching a process that is not the one listed: each pid is first pinned with pidfd_open
 * (5.3+), then the task list is read again (VM stopped) and only a pidfd whose pid still belongs
 * to the same process (same start time, same container) gets pidfd_send_signal. A process that
 * exits in between leaves a pidfd that answers ESRCH; its pid taken by another process cannot be
 * signalled through it. Kernels without pidfds fall back to kill() right after the check.
 */
import type { Vm } from '../vm';
import type { Container, ProcessInfo } from '../containers/model';
import { errnoOf, errnoName, type InjectionSession } from '../inject';
import { snapshot, sameProcess } from './snapshot';

const ENOSYS = 38;
const ESRCH = 3;

export interface SignalOutcome {
  /** Host pids the signal was delivered to. */
  signalled: number[];
  /** Already gone (exited, or their pid now belongs to another process: not signalled). */
  gone: number[];
  failed: { pid: number; reason: string }[];
  /** Host pid of the process the signals were sent from. */
  via?: number;
}

function processIn(c: Container, pid: number): ProcessInfo | undefined {
  return c.processes.find((p) => p.pid === pid);
}

/** Sends `sig` to `targets` (processes of container `c` as listed) through `helper`. */
export async function signalProcesses(vm: Vm, helper: InjectionSession, c: Container, targets: readonly ProcessInfo[], sig: number, signal?: AbortSignal): Promise<SignalOutcome> {
  const out: SignalOutcome = { signalled: [], gone: [], failed: [], via: helper.target.tgid };
  const fds = new Map<number, number>();
  let pidfds = true;
  try {
    for (const p of targets) {
      const r = await helper.syscall('pidfd_open', BigInt(p.pid), 0n);
      const e = errnoOf(r);
      if (e === ENOSYS) { pidfds = false; break; }
      if (e === ESRCH) out.gone.push(p.pid);
      else if (e) out.failed.push({ pid: p.pid, reason: `pidfd_open: ${errnoName(e)}` });
      else fds.set(p.pid, Number(r));
    }
    // the VM is stopped between injected calls: this listing and the pinned pids hold still
    const now = await vm.listContainers({ signal });
    const same = now.containers.find((x) => x.id === c.id);
    for (const p of targets) {
      if (pidfds && !fds.has(p.pid)) continue;
      const q = same ? processIn(same, p.pid) : undefined;
      if (!q || !sameProcess(p, q)) {
        if (!out.gone.includes(p.pid)) out.gone.push(p.pid);
        continue;
      }
      const r = pidfds ? await helper.syscall('pidfd_send_signal', BigInt(fds.get(p.pid)!), BigInt(sig), 0n, 0n) : await helper.syscall('kill', BigInt(p.pid), BigInt(sig));
      const e = errnoOf(r);
      if (!e) out.signalled.push(p.pid);
      else if (e === ESRCH) out.gone.push(p.pid);
      else out.failed.push({ pid: p.pid, reason: `${pidfds ? 'pidfd_send_signal' : 'kill'}: ${errnoName(e)}` });
    }
  } finally {
    for (const fd of fds.values()) if (!helper.closed) await helper.closeFd(fd);
  }
  return out;
}
