/**
 * Signal dispositions (include/linux/sched/signal.h): task_struct.sighand->action[_NSIG] of
 * struct k_sigaction, whose sa.sa_handler is SIG_DFL (0), SIG_IGN (1) or a handler. A fork
 * copies them; execve resets the handled ones to SIG_DFL but keeps SIG_IGN.
 */
import type { Kernel } from '../kernel';
import type { CallOptions } from '../../util/deadline';
import { readU64LE } from '../../util/bytes';

const SIG_IGN = 1n;
/** _NSIG on x86-64; the array's own length is read from the profile when it has it. */
const NSIG = 64;

/** The signal numbers (1-based) that the task at `task` (struct task_struct *) ignores. */
export async function ignoredSignals(kernel: Kernel, task: bigint, opts: CallOptions = {}): Promise<number[]> {
  const p = kernel.profile;
  const sighand = await kernel.readU64(task + BigInt(p.fieldOffset('task_struct', 'sighand')), opts);
  if (!kernel.isKernelPointer(sighand)) return [];
  const size = p.typeSize('k_sigaction');
  const handlerOff = p.fieldOffset('k_sigaction', 'sa.sa_handler');
  const raw = await kernel.space.read(sighand + BigInt(p.fieldOffset('sighand_struct', 'action')), size * NSIG, opts);
  const out: number[] = [];
  for (let i = 0; i < NSIG; i++) if (readU64LE(raw, i * size + handlerOff) === SIG_IGN) out.push(i + 1);
  return out;
}
