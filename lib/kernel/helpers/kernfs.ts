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
  for (let depth = 0; ; depth++) {
    if (depth > MAX_DEPTH) throw new ValidationError(`kernfs path deeper than ${MAX_DEPTH}`, kn);
    if (seen.has(cur)) throw new ValidationError('kernfs parent chain loops', cur);
    seen.add(cur);
    const node = kernel.peek('kernfs_node', cur, { upTo: 'name' }) ?? await kernel.read('kernfs_node', cur, { ...opts, upTo: 'name' });
    const parent = node.ptr('parent');
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

/** The path of `kn` if an earlier kernfsPath() already found it (no I/O), else undefined. */
export function kernfsPathCached(kernel: Kernel, kn: bigint): string | undefined {
  return kernelCache(kernel).get(kn);
}

function kernelCache(kernel: Kernel): Map<bigint, string> {
  let c = kernel.cache.get('kernfs-path') as Map<bigint, string> | undefined;
  if (!c) kernel.cache.set('kernfs-path', (c = new Map()));
  return c;
}
