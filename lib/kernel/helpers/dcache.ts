/**
 * Paths of dentries (fs/d_path.c, prepend_path): names from the dentry up to its mount's root, then
 * across to the mountpoint in the parent mount, until the given root (or the namespace's root).
 */
import { ValidationError } from '../../errors';
import type { CallOptions } from '../../util/deadline';
import type { Kernel } from '../kernel';
import { containerOf } from './list';
import { memoized } from './memo';

export interface KPath {
  /** struct vfsmount * */
  mnt: bigint;
  /** struct dentry * */
  dentry: bigint;
}

const MAX_COMPONENTS = 256;
const MAX_NAME = 255;

/** Reads a `struct path` at `address`. */
export async function readPath(kernel: Kernel, address: bigint, opts: CallOptions = {}): Promise<KPath> {
  const p = await kernel.read('path', address, opts);
  return { mnt: p.ptr('mnt'), dentry: p.ptr('dentry') };
}

/** `d_path(path)` relative to `root` (a task's fs->root); "/" when they are the same. */
export function dPath(kernel: Kernel, path: KPath, root: KPath | null, opts: CallOptions = {}): Promise<string> {
  // many tasks run the same executable from the same root: one walk each
  const key = `${path.mnt}:${path.dentry}:${root?.mnt}:${root?.dentry}`;
  return memoized(kernel, 'd-path', key, () => walkPath(kernel, path, root, false, opts));
}

/**
 * Where `path` lies in the file system that holds its namespace's root mount: d_path up to the
 * namespace's root, then on up that mount's root dentry to its superblock's root (the "root" field
 * of /proc/<pid>/mountinfo). For a container's fs->root this is the directory its runtime pivoted
 * into (`/var/lib/…/rootfs`), where d_path would only say "/".
 */
export function dPathInFilesystem(kernel: Kernel, path: KPath, opts: CallOptions = {}): Promise<string> {
  return memoized(kernel, 'd-path-fs', `${path.mnt}:${path.dentry}`, () => walkPath(kernel, path, null, true, opts));
}

async function walkPath(kernel: Kernel, path: KPath, root: KPath | null, beyondNamespaceRoot: boolean, opts: CallOptions): Promise<string> {
  const parts: string[] = [];
  let dentry = path.dentry;
  let vfsmnt = path.mnt;
  let detached = false;
  for (let n = 0; ; n++) {
    if (n > MAX_COMPONENTS) throw new ValidationError(`path longer than ${MAX_COMPONENTS} components`, path.dentry);
    if (root && dentry === root.dentry && vfsmnt === root.mnt) break;
    if (!kernel.isKernelPointer(dentry) || !kernel.isKernelPointer(vfsmnt)) {
      throw new ValidationError(`bad dentry 0x${dentry.toString(16)} or vfsmount 0x${vfsmnt.toString(16)}`, path.dentry);
    }
    const d = await kernel.read('dentry', dentry, { ...opts, upTo: 'd_name' });
    const parent = d.ptr('d_parent');
    if (detached && dentry === parent) break; // the superblock's root
    const mntRoot = detached ? 0n : (await kernel.read('vfsmount', vfsmnt, { ...opts, upTo: 'mnt_root' })).ptr('mnt_root');
    if (dentry === mntRoot || dentry === parent) {
      const mount = containerOf(kernel, vfsmnt, 'mount', 'mnt');
      const m = await kernel.read('mount', mount, { ...opts, upTo: 'mnt_mountpoint' });
      const mntParent = m.ptr('mnt_parent');
      if (mntParent === mount || mntParent === 0n) {
        // the namespace's root
        if (!beyondNamespaceRoot || dentry === parent) break;
        detached = true;
        continue;
      }
      dentry = m.ptr('mnt_mountpoint');
      vfsmnt = mntParent + BigInt(kernel.profile.fieldOffset('mount', 'mnt'));
      continue;
    }
    const len = Math.min(Number(d.u32('d_name.len')), MAX_NAME);
    const name = (await kernel.space.read(d.ptr('d_name.name'), len, opts)).toString('utf8');
    parts.push(name);
    dentry = parent;
  }
  return '/' + parts.reverse().join('/');
}
