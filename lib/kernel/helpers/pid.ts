/**
 * Pids (include/linux/pid.h, kernel/pid.c): every struct pid of a pid namespace sits in the
 * namespace's IDR (`pid_namespace.idr`, an xarray: lib/xarray.c), and `pid->tasks[PIDTYPE_PID]`
 * heads the task using it. Unlike the task list, the xarray can be read a whole tree level per
 * round trip, which makes it the way to find every task_struct in a few batched reads.
 */
import type { CallOptions } from '../../util/deadline';
import type { Kernel } from '../kernel';

/** Most xa_nodes read (64 slots each: far beyond PID_MAX_LIMIT's 4 Mi pids). */
const MAX_NODES = 70_000;
const MAX_LEVELS = 12;
const XA_CHUNK_SIZE = 64;

/** An internal xarray entry (a node pointer tagged 2): xa_is_node(). */
function isNode(entry: bigint): boolean {
  return (entry & 3n) === 2n && entry > 4096n;
}

/**
 * `idr_for_each(&ns->idr, ...)`: the struct pid * of every pid in the namespace whose struct
 * pid_namespace is at `ns`, reading the tree one level per batch. Best effort: nodes that cannot
 * be read, or are not plausible, are skipped (callers that must be exact walk the task list).
 */
export async function pidNamespaceEntries(kernel: Kernel, ns: bigint, opts: CallOptions = {}): Promise<bigint[]> {
  const p = kernel.profile;
  if (!p.hasField('pid_namespace', 'idr') || !p.hasField('xa_node', 'slots')) return [];
  const headAt = ns + BigInt(p.fieldOffset('pid_namespace', 'idr.idr_rt.xa_head'));
  const head = await kernel.readU64(headAt, opts);
  const out: bigint[] = [];
  const slotsOff = p.fieldOffset('xa_node', 'slots');
  const nodeSize = slotsOff + XA_CHUNK_SIZE * 8;
  let level = [head];
  let nodes = 0;
  for (let depth = 0; level.length > 0 && depth < MAX_LEVELS; depth++) {
    const next: bigint[] = [];
    const inner = level.filter((e) => isNode(e) && kernel.isKernelPointer(e - 2n));
    for (const e of level) if (!isNode(e) && (e & 3n) === 0n && kernel.isKernelPointer(e)) out.push(e);
    nodes += inner.length;
    if (nodes > MAX_NODES) break;
    await kernel.prefetch(inner.map((e) => ({ address: e - 2n, length: nodeSize })), opts);
    for (const e of inner) {
      const slots = kernel.space.peek(e - 2n + BigInt(slotsOff), XA_CHUNK_SIZE * 8);
      if (!slots) continue;
      for (let i = 0; i < XA_CHUNK_SIZE; i++) {
        const s = slots.readBigUInt64LE(i * 8);
        if (s !== 0n) next.push(s);
      }
    }
    level = next;
  }
  return out;
}

/** `pid_task(pid, PIDTYPE_PID)` for each struct pid * already cached: the task_struct * using it. */
export function pidTasksCached(kernel: Kernel, pids: readonly bigint[]): bigint[] {
  const p = kernel.profile;
  const firstOff = BigInt(p.fieldOffset('pid', 'tasks'));
  const linkOff = BigInt(p.fieldOffset('task_struct', 'pid_links'));
  const out: bigint[] = [];
  for (const pid of pids) {
    const b = kernel.space.peek(pid + firstOff, 8);
    if (!b) continue;
    const first = b.readBigUInt64LE(0);
    if (kernel.isKernelPointer(first)) out.push(first - linkOff);
  }
  return out;
}
