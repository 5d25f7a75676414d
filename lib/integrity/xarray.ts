/**
 * Walks of the two kernel trees the hidden-object checks need, bounded and cycle-checked (the
 * guest is untrusted): the XArray under an IDR (include/linux/xarray.h) and a red-black tree
 * (include/linux/rbtree.h).
 */
import type { CallOptions } from '../util/deadline';
import type { Kernel } from '../kernel/kernel';

const XA_CHUNK_SLOTS = 64;

/** xa_is_node(): an internal entry (low bits 10) above the small internal values. */
function isNode(entry: bigint): boolean {
  return (entry & 3n) === 2n && entry > 4096n;
}

/** Every non-internal entry of the xarray at `xa` (struct xarray *), at most `max`. */
export async function xarrayEntries(kernel: Kernel, xa: bigint, opts: CallOptions & { max?: number } = {}): Promise<bigint[]> {
  const p = kernel.profile;
  const max = opts.max ?? 1_000_000;
  const slotsOff = BigInt(p.fieldOffset('xa_node', 'slots'));
  const head = await kernel.readU64(xa + BigInt(p.fieldOffset('xarray', 'xa_head')), opts);
  const out: bigint[] = [];
  const seen = new Set<bigint>();
  const stack: Array<{ entry: bigint; depth: number }> = [{ entry: head, depth: 0 }];
  while (stack.length > 0 && out.length < max) {
    const { entry, depth } = stack.pop()!;
    if (entry === 0n) continue;
    if (!isNode(entry)) {
      if ((entry & 3n) === 0n && kernel.isKernelPointer(entry)) out.push(entry);
      continue;
    }
    const node = entry - 2n;
    if (depth > 12 || seen.has(node) || !kernel.isKernelPointer(node)) continue;
    seen.add(node);
    const slots = await kernel.space.read(node + slotsOff, XA_CHUNK_SLOTS * 8, opts).catch(() => null);
    if (!slots) continue;
    for (let i = XA_CHUNK_SLOTS - 1; i >= 0; i--) stack.push({ entry: slots.readBigUInt64LE(i * 8), depth: depth + 1 });
  }
  return out;
}

/** Every node (struct rb_node *) of the rb-tree whose root node pointer is `root`, at most `max`. */
export async function rbTreeNodes(kernel: Kernel, root: bigint, opts: CallOptions & { max?: number } = {}): Promise<bigint[]> {
  const max = opts.max ?? 100_000;
  const p = kernel.profile;
  const right = BigInt(p.fieldOffset('rb_node', 'rb_right'));
  const left = BigInt(p.fieldOffset('rb_node', 'rb_left'));
  const out: bigint[] = [];
  const seen = new Set<bigint>();
  const stack = [root];
  while (stack.length > 0 && out.length < max) {
    const n = stack.pop()!;
    if (n === 0n || seen.has(n) || !kernel.isKernelPointer(n)) continue;
    seen.add(n);
    out.push(n);
    const [r, l] = await Promise.all([kernel.readU64(n + right, opts).catch(() => 0n), kernel.readU64(n + left, opts).catch(() => 0n)]);
    stack.push(r, l);
  }
  return out;
}
