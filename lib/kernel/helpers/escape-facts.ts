/**
 * The facts about a task that tell whether it left its container, read from the kernel's own
 * structures: which struct cred it runs with (task_struct.cred, .real_cred; `init_cred` is the
 * kernel's own, which no forked process keeps), in which user namespace its capabilities count,
 * and in which mount namespace the mount of its root directory (fs->root.mnt → struct mount
 * .mnt_ns) lies, beside the mount namespace its nsproxy names: a root on a mount of another
 * namespace is what a chroot through a leaked directory fd leaves.
 * Also the strings the kernel runs helpers from (core_pattern, modprobe_path, uevent_helper).
 */
import type { CallOptions } from '../../util/deadline';
import type { Kernel } from '../kernel';
import { isFatalReadError } from '../../errors';
import { containerOf } from './list';

export interface TaskEscapeFacts {
  cred: bigint;
  realCred: bigint;
  /** cred->user_ns of the real cred. */
  userNs: bigint;
  /** nsproxy->mnt_ns, and the mnt_ns of the mount fs->root lies on (0 when unreadable). */
  mntNs: bigint;
  rootMntNs: bigint;
}

const orNull = <T>(p: Promise<T>): Promise<T | null> => p.catch((e: unknown) => { if (isFatalReadError(e)) throw e; return null; });

/** Whether the profile describes every field these facts come from. */
export function hasEscapeFacts(kernel: Kernel): boolean {
  const p = kernel.profile;
  return p.hasField('task_struct', 'cred') && p.hasField('task_struct', 'real_cred') && p.hasField('cred', 'user_ns') &&
    p.hasField('task_struct', 'fs') && p.hasField('fs_struct', 'root') && p.hasField('mount', 'mnt_ns') && p.hasField('mount', 'mnt') &&
    p.hasField('task_struct', 'nsproxy') && p.hasField('nsproxy', 'mnt_ns');
}

/** The facts of the task at `task`; null when its structures cannot be read (it is exiting, or they are corrupt). */
export async function taskEscapeFacts(kernel: Kernel, task: bigint, opts: CallOptions = {}): Promise<TaskEscapeFacts | null> {
  const p = kernel.profile;
  const last = ['real_cred', 'cred', 'fs', 'nsproxy'].reduce((a, b) => (p.fieldOffset('task_struct', a) > p.fieldOffset('task_struct', b) ? a : b));
  const t = await orNull(kernel.read('task_struct', task, { ...opts, upTo: last }));
  if (!t) return null;
  const realCred = t.ptr('real_cred');
  const cred = t.ptr('cred');
  const fs = t.ptr('fs');
  const nsproxy = t.ptr('nsproxy');
  if (!kernel.isKernelPointer(realCred) || !kernel.isKernelPointer(fs) || !kernel.isKernelPointer(nsproxy)) return null;
  const [userNs, mntNs, rootMnt] = await Promise.all([
    orNull(kernel.readU64(realCred + BigInt(p.fieldOffset('cred', 'user_ns')), opts)),
    orNull(kernel.readU64(nsproxy + BigInt(p.fieldOffset('nsproxy', 'mnt_ns')), opts)),
    orNull(kernel.readU64(fs + BigInt(p.fieldOffset('fs_struct', 'root') + p.fieldOffset('path', 'mnt')), opts)),
  ]);
  if (userNs === null || mntNs === null || rootMnt === null) return null;
  const rootMntNs = kernel.isKernelPointer(rootMnt)
    ? (await orNull(kernel.readU64(containerOf(kernel, rootMnt, 'mount', 'mnt') + BigInt(p.fieldOffset('mount', 'mnt_ns')), opts))) ?? 0n
    : 0n;
  return { cred, realCred, userNs, mntNs, rootMntNs };
}

/** Most bytes read of a kernel string variable whose size the profile does not give. */
const MAX_KERNEL_STRING = 4096;

/**
 * The NUL-terminated string in the kernel variable `name` (a char array), or undefined when the
 * kernel has no such variable. `size` bounds it where the profile has no array type for it.
 */
export async function kernelString(kernel: Kernel, name: string, size: number | undefined, opts: CallOptions = {}): Promise<string | undefined> {
  if (!kernel.hasSymbol(name)) return undefined;
  const type = kernel.profile.symbolType(name);
  const length = type?.kind === 'array' && typeof type.count === 'number' && type.count > 0 ? Math.min(type.count, MAX_KERNEL_STRING) : Math.min(size ?? 256, MAX_KERNEL_STRING);
  const bytes = await orNull(kernel.space.read(kernel.symbol(name), length, opts));
  if (!bytes) return undefined;
  const nul = bytes.indexOf(0);
  return bytes.subarray(0, nul < 0 ? bytes.length : nul).toString('latin1');
}
