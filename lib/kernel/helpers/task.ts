/**
 * Tasks (include/linux/sched.h, include/linux/sched/signal.h): the global task list hangs off
 * init_task.tasks and holds thread-group leaders; each leader's threads are on signal->thread_head
 * (thread_node), as `for_each_process_thread` walks them.
 */
import type { CallOptions } from '../../util/deadline';
import type { Kernel } from '../kernel';
import { listEntriesCached, listForEachEntry, type ListWalkOptions } from './list';
import { readU64LE } from '../../util/bytes';

/**
 * `for_each_process(p)`: every thread-group leader (struct task_struct *). Like the kernel's macro
 * it leaves out init_task itself (the idle task, pid 0), which heads the list.
 */
export async function* forEachProcess(kernel: Kernel, opts: ListWalkOptions = {}): AsyncGenerator<bigint> {
  const init = kernel.symbol('init_task');
  const head = init + BigInt(kernel.profile.fieldOffset('task_struct', 'tasks'));
  yield* listForEachEntry(kernel, head, 'task_struct', 'tasks', opts);
}

/** The threads of a thread group (struct task_struct *), from its signal_struct's thread_head. */
export async function* forEachThreadOf(kernel: Kernel, leader: bigint, opts: ListWalkOptions = {}): AsyncGenerator<bigint> {
  const p = kernel.profile;
  if (!p.hasField('signal_struct', 'thread_head') || !p.hasField('task_struct', 'thread_node')) {
    // kernels before 4.x link threads through task_struct.thread_group instead
    yield leader;
    yield* listForEachEntry(kernel, leader + BigInt(p.fieldOffset('task_struct', 'thread_group')), 'task_struct', 'thread_group', opts);
    return;
  }
  const signal = await kernel.readU64(leader + BigInt(p.fieldOffset('task_struct', 'signal')), opts);
  if (!kernel.isKernelPointer(signal)) {
    yield leader;
    return;
  }
  yield* listForEachEntry(kernel, signal + BigInt(p.fieldOffset('signal_struct', 'thread_head')), 'task_struct', 'thread_node', opts);
}

/**
 * What forEachProcess() would yield, when the whole list is cached and sound (listEntriesCached),
 * else undefined.
 */
export function processesCached(kernel: Kernel, max?: number): bigint[] | undefined {
  const off = BigInt(kernel.profile.fieldOffset('task_struct', 'tasks'));
  return listEntriesCached(kernel, kernel.symbol('init_task') + off, max)?.map((l) => l - off);
}

/** What forEachThreadOf() would yield, when the whole thread list is cached and sound, else undefined. */
export function threadsOfCached(kernel: Kernel, leader: bigint, max?: number): bigint[] | undefined {
  const p = kernel.profile;
  if (!p.hasField('signal_struct', 'thread_head') || !p.hasField('task_struct', 'thread_node')) return undefined;
  const b = kernel.space.peek(leader + BigInt(p.fieldOffset('task_struct', 'signal')), 8, true);
  if (!b) return undefined;
  const signal = readU64LE(b, 0);
  if (!kernel.isKernelPointer(signal)) return undefined;
  const off = BigInt(p.fieldOffset('task_struct', 'thread_node'));
  return listEntriesCached(kernel, signal + BigInt(p.fieldOffset('signal_struct', 'thread_head')), max)?.map((l) => l - off);
}

/** `for_each_process_thread(p, t)`: every task (struct task_struct *). */
export async function* forEachTask(kernel: Kernel, opts: ListWalkOptions = {}): AsyncGenerator<bigint> {
  for await (const leader of forEachProcess(kernel, opts)) yield* forEachThreadOf(kernel, leader, opts);
}

/** `find_task_by_pid_ns(pid, &init_pid_ns)` by walking the task list: the task with that global pid. */
export async function findTask(kernel: Kernel, pid: number, opts: CallOptions & ListWalkOptions = {}): Promise<bigint | null> {
  const off = kernel.profile.fieldOffset('task_struct', 'pid');
  for await (const t of forEachTask(kernel, opts)) {
    const b = await kernel.space.read(t + BigInt(off), 4, opts);
    if (b.readInt32LE(0) === pid) return t;
  }
  return null;
}

/**
 * Why the task at `task` is no longer the live process vmictl holds, or null while it is: same
 * pid, not exiting (exit_state 0) and still on the address space `mm`. Read from the task itself,
 * not by walking the task list: a walk with the VM stopped in the middle of a fork or an exit
 * elsewhere is what a held target's liveness must not depend on. A task_struct freed and reused
 * for another task has another pid and mm; one freed and not reused has its exit_state set and no mm.
 */
export async function taskGone(kernel: Kernel, t: { task: bigint; pid: number; mm: bigint }, opts: CallOptions = {}): Promise<string | null> {
  const p = kernel.profile;
  const at = (field: string) => t.task + BigInt(p.fieldOffset('task_struct', field));
  const pid = (await kernel.space.read(at('pid'), 4, opts)).readInt32LE(0);
  if (pid !== t.pid) return `its task_struct now has pid ${pid}`;
  const exitState = (await kernel.space.read(at('exit_state'), 4, opts)).readInt32LE(0);
  if (exitState !== 0) return `exit_state 0x${exitState.toString(16)}`;
  const mm = await kernel.readU64(at('mm'), opts);
  return mm === t.mm ? null : `its mm is 0x${mm.toString(16)}, not 0x${t.mm.toString(16)}`;
}
