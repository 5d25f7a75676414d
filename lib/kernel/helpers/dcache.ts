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
  return memoized(kernel, 'd-path', key, () => walkPath(kernel, path, root, opts));
}

/**
 * `dentry_path_raw(dentry)`: the path of a dentry from its superblock's root, crossing no mounts
 * (the "root" field of /proc/<pid>/mountinfo for a mount's root). For a container's fs->root this
 * names the directory its runtime bind-mounted as the root (`/var/lib/…/rootfs`), where d_path —
 * which stops at the namespace's root — would only say "/".
 */
export function dentryPath(kernel: Kernel, dentry: bigint, opts: CallOptions = {}): Promise<string> {
  return memoized(kernel, 'dentry-path', dentry, async () => {
    const parts: string[] = [];
    let cur = dentry;
    for (let n = 0; ; n++) {
      if (n > MAX_COMPONENTS) throw new ValidationError(`path longer than ${MAX_COMPONENTS} components`, dentry);
      if (!kernel.isKernelPointer(cur)) throw new ValidationError(`bad dentry 0x${cur.toString(16)}`, dentry);
      const d = await kernel.read('dentry', cur, { ...opts, upTo: 'd_name' });
      const parent = d.ptr('d_parent');
      if (parent === cur) break; // the superblock's root
      const len = Math.min(Number(d.u32('d_name.len')), MAX_NAME);
      parts.push((await kernel.space.read(d.ptr('d_name.name'), len, opts)).toString('utf8'));
      cur = parent;
    }
    return '/' + parts.reverse().join('/');
  });
}

async function walkPath(kernel: Kernel, path: KPath, root: KPath | null, opts: CallOptions): Promise<string> {
  const parts: string[] = [];
  let dentry = path.dentry;
  let vfsmnt = path.mnt;
  for (let n = 0; ; n++) {
    if (n > MAX_COMPONENTS) throw new ValidationError(`path longer than ${MAX_COMPONENTS} components`, path.dentry);
    if (root && dentry === root.dentry && vfsmnt === root.mnt) break;
    if (!kernel.isKernelPointer(dentry) || !kernel.isKernelPointer(vfsmnt)) {
      throw new ValidationError(`bad dentry 0x${dentry.toString(16)} or vfsmount 0x${vfsmnt.toString(16)}`, path.dentry);
    }
    const d = await kernel.read('dentry', dentry, { ...opts, upTo: 'd_name' });
    const parent = d.ptr('d_parent');
    const mntRoot = (await kernel.read('vfsmount', vfsmnt, { ...opts, upTo: 'mnt_root' })).ptr('mnt_root');
    if (dentry === mntRoot || dentry === parent) {
      const mount = containerOf(kernel, vfsmnt, 'mount', 'mnt');
      const m = await kernel.read('mount', mount, { ...opts, upTo: 'mnt_mountpoint' });
      const mntParent = m.ptr('mnt_parent');
      if (mntParent === mount || mntParent === 0n) break; // the namespace's root
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
