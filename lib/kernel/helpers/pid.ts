/**
 * Pids (include/linux/pid.h, kernel/pid.c): every struct pid of a pid namespace sits in the
 * namespace's IDR (`pid_namespace.idr`, an xarray: lib/xarray.c), and `pid->tasks[PIDTYPE_PID]`
 * heads the task using it. Unlike the task list, the xarray can be read a whole tree level per
 * round trip, which makes it the way to find every task_struct in a few batched reads.
 */
import type { CallOptions } from '../../util/deadline';
import type { Kernel } from '../kernel';
import { readU64LE } from '../../util/bytes';

/** Most xa_nodes read (64 slots each: far beyond PID_MAX_LIMIT's 4 Mi pids). */
const MAX_NODES = 70_000;
const MAX_LEVELS = 12;
const XA_CHUNK_SIZE = 64;

/** An internal xarray entry (a node pointer tagged 2): xa_is_node(). */
function isNode(entry: bigint): boolean {
  return (entry & 3n) === 2n && entry > 4096n;
}

export interface PidIdrOptions extends CallOptions {
  /**
   * Told, once per kind of damage and at the end, what looked wrong in the tree (a node reached
   * twice, a bad or unreadable node, a tree too deep or too big); those parts are skipped.
   */
  onCorruption?: (message: string) => void;
}

/**
 * `idr_for_each(&ns->idr, ...)`: the struct pid * of every pid in the namespace whose struct
 * pid_namespace is at `ns`, reading the tree one level per batch. Best effort and bounded (nodes
 * are walked once each, MAX_LEVELS deep, MAX_NODES in all): callers that must be exact walk the
 * task list.
 */
export async function pidNamespaceEntries(kernel: Kernel, ns: bigint, opts: PidIdrOptions = {}): Promise<bigint[]> {
  const p = kernel.profile;
  if (!p.hasField('pid_namespace', 'idr') || !p.hasField('xa_node', 'slots')) return [];
  const headAt = ns + BigInt(p.fieldOffset('pid_namespace', 'idr.idr_rt.xa_head'));
  const head = await kernel.readU64(headAt, opts);
  const out: bigint[] = [];
  const slotsOff = p.fieldOffset('xa_node', 'slots');
  const nodeSize = slotsOff + XA_CHUNK_SIZE * 8;
  const seen = new Set<bigint>();
  const damage = new Map<string, { count: number; first: bigint }>();
  const note = (what: string, at: bigint) => {
    const d = damage.get(what);
    if (d) d.count++;
    else damage.set(what, { count: 1, first: at });
  };
  let level = [head];
  for (let depth = 0; level.length > 0; depth++) {
    if (depth >= MAX_LEVELS) { note(`deeper than ${MAX_LEVELS} levels (not walked further)`, level[0]); break; }
    const inner: bigint[] = [];
    for (const e of level) {
      if (isNode(e)) {
        const node = e - 2n;
        if (!kernel.isKernelPointer(node)) note('node pointers that are not kernel pointers', e);
        else if (seen.has(node)) note('node pointers back to nodes already walked (a cycle)', node);
        else if (seen.size >= MAX_NODES) note(`nodes beyond the first ${MAX_NODES} (not walked)`, node);
        else { seen.add(node); inner.push(node); }
      } else if ((e & 3n) === 0n && kernel.isKernelPointer(e)) out.push(e);
    }
    await kernel.prefetch(inner.map((address) => ({ address, length: nodeSize })), opts);
    const next: bigint[] = [];
    for (const node of inner) {
      const slots = kernel.space.peek(node + BigInt(slotsOff), XA_CHUNK_SIZE * 8);
      if (!slots) { note('unreadable nodes', node); continue; }
      for (let i = 0; i < XA_CHUNK_SIZE; i++) {
        const s = readU64LE(slots, i * 8);
        if (s !== 0n) next.push(s);
      }
    }
    level = next;
  }
  for (const [what, d] of damage) opts.onCorruption?.(`${d.count} ${what}, the first at 0x${d.first.toString(16)}`);
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
    const first = readU64LE(b, 0);
    if (kernel.isKernelPointer(first)) out.push(first - linkOff);
  }
  return out;
}
