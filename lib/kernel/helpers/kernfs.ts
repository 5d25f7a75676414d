/**
 * kernfs paths (fs/kernfs/dir.c, kernfs_path_from_node): a cgroup's path is the names of its
 * kernfs_node and its parents up to the root, whose name is empty.
 */
import { ValidationError } from '../../errors';
import type { CallOptions } from '../../util/deadline';
import type { Kernel } from '../kernel';

const MAX_DEPTH = 64;
const MAX_NAME = 256;

/** `kernfs_path(kn)`: "/a/b/c" for the node at `kn` (struct kernfs_node *); "/" for the root. */
export async function kernfsPath(kernel: Kernel, kn: bigint, opts: CallOptions = {}): Promise<string> {
  const cache = kernelCache(kernel);
  const hit = cache.get(kn);
  if (hit !== undefined) return hit;
  const parts: string[] = [];
  const seen = new Set<bigint>();
  let cur = kn;
  for (let depth = 0; ; depth++) {
    if (depth > MAX_DEPTH) throw new ValidationError(`kernfs path deeper than ${MAX_DEPTH}`, kn);
    if (seen.has(cur)) throw new ValidationError('kernfs parent chain loops', cur);
    seen.add(cur);
    const node = await kernel.read('kernfs_node', cur, { ...opts, upTo: 'name' });
    const parent = node.ptr('parent');
    if (parent === 0n) break;
    if (!kernel.isKernelPointer(parent)) throw new ValidationError(`bad kernfs parent 0x${parent.toString(16)}`, cur);
    const name = await kernel.space.readCString(node.ptr('name'), MAX_NAME, opts);
    parts.push(name);
    cur = parent;
  }
  const path = '/' + parts.reverse().join('/');
  cache.set(kn, path);
  return path;
}

function kernelCache(kernel: Kernel): Map<bigint, string> {
  let c = kernel.cache.get('kernfs-path') as Map<bigint, string> | undefined;
  if (!c) kernel.cache.set('kernfs-path', (c = new Map()));
  return c;
}
