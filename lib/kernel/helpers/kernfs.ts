/**
 * kernfs paths (fs/kernfs/dir.c, kernfs_path_from_node): a cgroup's path is the names of its
 * kernfs_node and its parents up to the root, whose name is empty.
 */
import { ValidationError } from '../../errors';
import type { CallOptions } from '../../util/deadline';
import type { Kernel } from '../kernel';
import { memoized } from './memo';

const MAX_DEPTH = 64;
const MAX_NAME = 256;

/** kernfs_node.parent, `__parent` since it became RCU-protected (read here like any pointer). */
function parentField(kernel: Kernel): string {
  return kernel.profile.hasField('kernfs_node', 'parent') ? 'parent' : '__parent';
}

/**
 * `kernfs_path(kn)`: "/a/b/c" for the node at `kn` (struct kernfs_node *); "/" for the root. The
 * path of every node met on the way up is cached on the kernel, so sibling cgroups (thousands of
 * tasks in a few dozen cgroups) read their shared ancestors once.
 */
export async function kernfsPath(kernel: Kernel, kn: bigint, opts: CallOptions = {}): Promise<string> {
  const hit = kernelCache(kernel).get(kn);
  if (hit !== undefined) return hit;
  return memoized(kernel, 'kernfs-path-pending', kn, () => climb(kernel, kn, opts));
}

async function climb(kernel: Kernel, kn: bigint, opts: CallOptions): Promise<string> {
  const cache = kernelCache(kernel);
  // climb until a node whose path is known (or the root), then name the chain top-down
  const chain: Array<{ node: bigint; name: string }> = [];
  const seen = new Set<bigint>();
  let cur = kn;
  let base = '';
  const parentName = parentField(kernel);
  for (let depth = 0; ; depth++) {
    if (depth > MAX_DEPTH) throw new ValidationError(`kernfs path deeper than ${MAX_DEPTH}`, kn);
    if (seen.has(cur)) throw new ValidationError('kernfs parent chain loops', cur);
    seen.add(cur);
    const node = kernel.peek('kernfs_node', cur, { upTo: 'name' }) ?? await kernel.read('kernfs_node', cur, { ...opts, upTo: 'name' });
    const parent = node.ptr(parentName);
    if (parent === 0n) {
      cache.set(cur, '/');
      break;
    }
    if (!kernel.isKernelPointer(parent)) throw new ValidationError(`bad kernfs parent 0x${parent.toString(16)}`, cur);
    chain.push({ node: cur, name: await kernel.space.readCString(node.ptr('name'), MAX_NAME, opts) });
    const known = cache.get(parent);
    if (known !== undefined) {
      base = known === '/' ? '' : known;
      break;
    }
    cur = parent;
  }
  let path = base;
  for (let i = chain.length - 1; i >= 0; i--) {
    path = `${path}/${chain[i].name}`;
    cache.set(chain[i].node, path);
  }
  return path || '/';
}

/**
 * Brings into the cache, one batch per tree level, the nodes and names kernfsPath() will read for
 * each of `nodes` (struct kernfs_node *), so that the climbs that follow make no round trip. Best
 * effort and bounded: whatever looks odd is left for the climb to report.
 */
export async function prefetchKernfsPaths(kernel: Kernel, nodes: Iterable<bigint>, opts: CallOptions = {}): Promise<void> {
  const p = kernel.profile;
  const nodeLen = p.fieldOffset('kernfs_node', 'name') + 8;
  const cache = kernelCache(kernel);
  const seen = new Set<bigint>();
  const parentName = parentField(kernel);
  let level = [...new Set(nodes)].filter((n) => kernel.isKernelPointer(n) && !cache.has(n));
  for (let depth = 0; level.length > 0 && depth <= MAX_DEPTH; depth++) {
    for (const n of level) seen.add(n);
    await kernel.prefetch(level.map((address) => ({ address, length: nodeLen })), opts);
    const names: Array<{ address: bigint; length: number }> = [];
    const next: bigint[] = [];
    for (const n of level) {
      const node = kernel.peek('kernfs_node', n, { upTo: 'name' });
      if (!node) continue;
      const name = node.ptr('name');
      // to the end of its page at most: readCString reads no further in one piece
      if (kernel.isKernelPointer(name)) names.push({ address: name, length: Math.min(MAX_NAME, 4096 - Number(name & 0xfffn)) });
      const parent = node.ptr(parentName);
      if (kernel.isKernelPointer(parent) && !seen.has(parent) && !cache.has(parent)) next.push(parent);
    }
    await kernel.prefetch(names, opts);
    level = [...new Set(next)];
  }
}

/** The path of `kn` if an earlier kernfsPath() already found it (no I/O), else undefined. */
export function kernfsPathCached(kernel: Kernel, kn: bigint): string | undefined {
  return kernelCache(kernel).get(kn);
}

function kernelCache(kernel: Kernel): Map<bigint, string> {
  let c = kernel.cache.get('kernfs-path') as Map<bigint, string> | undefined;
  if (!c) kernel.cache.set('kernfs-path', (c = new Map()));
  return c;
}
