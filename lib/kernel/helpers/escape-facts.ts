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
import { nullUnlessFatal } from '../../errors';
import { containerOf } from './list';

export interface TaskEscapeFacts {
  /** task->files (shared by the threads of a process). */
  files: bigint;
  cred: bigint;
  realCred: bigint;
  /** cred->user_ns of the real cred. */
  userNs: bigint;
  /** nsproxy->mnt_ns, and the mnt_ns of the mount fs->root lies on (0 when unreadable). */
  mntNs: bigint;
  rootMntNs: bigint;
}

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
  const last = ['real_cred', 'cred', 'fs', 'files', 'nsproxy'].filter((f) => p.hasField('task_struct', f)).reduce((a, b) => (p.fieldOffset('task_struct', a) > p.fieldOffset('task_struct', b) ? a : b));
  const t = await nullUnlessFatal(kernel.read('task_struct', task, { ...opts, upTo: last }));
  if (!t) return null;
  const realCred = t.ptr('real_cred');
  const cred = t.ptr('cred');
  const fs = t.ptr('fs');
  const nsproxy = t.ptr('nsproxy');
  if (!kernel.isKernelPointer(realCred) || !kernel.isKernelPointer(fs) || !kernel.isKernelPointer(nsproxy)) return null;
  const [userNs, mntNs, rootMnt] = await Promise.all([
    nullUnlessFatal(kernel.readU64(realCred + BigInt(p.fieldOffset('cred', 'user_ns')), opts)),
    nullUnlessFatal(kernel.readU64(nsproxy + BigInt(p.fieldOffset('nsproxy', 'mnt_ns')), opts)),
    nullUnlessFatal(kernel.readU64(fs + BigInt(p.fieldOffset('fs_struct', 'root') + p.fieldOffset('path', 'mnt')), opts)),
  ]);
  if (userNs === null || mntNs === null || rootMnt === null) return null;
  const rootMntNs = kernel.isKernelPointer(rootMnt)
    ? (await nullUnlessFatal(kernel.readU64(containerOf(kernel, rootMnt, 'mount', 'mnt') + BigInt(p.fieldOffset('mount', 'mnt_ns')), opts))) ?? 0n
    : 0n;
  return { files: p.hasField('task_struct', 'files') ? t.ptr('files') : 0n, cred, realCred, userNs, mntNs, rootMntNs };
}

/** Most descriptors looked at in one table: more than a kernel's default nr_open limit. */
const MAX_FDS = 1 << 20;
/** Most open files read per table (the rest are counted, not read). */
const MAX_FILES_READ = 4096;

export interface OpenFileMount {
  fd: number;
  /** struct file *, and its f_path. */
  file: bigint;
  mnt: bigint;
  dentry: bigint;
  /** The mnt_ns of the mount the file is on: 0 for none, an ERR_PTR for the kernel's internal mounts. */
  mntNs: bigint;
  /** Whether it is a directory (its inode's i_mode), the kind a way out of a root is made with; undefined when unreadable. */
  directory?: boolean;
}

/** S_IFMT and S_IFDIR (include/uapi/linux/stat.h: the POSIX file-type bits of i_mode). */
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

/**
 * The mount (and its namespace) of every file open in the table `files` (struct files_struct *:
 * fdt → fdtable { max_fds, fd[] }); undefined when the table cannot be read.
 */
export async function openFileMounts(kernel: Kernel, files: bigint, opts: CallOptions = {}): Promise<OpenFileMount[] | undefined> {
  const p = kernel.profile;
  if (!kernel.isKernelPointer(files) || !p.hasField('files_struct', 'fdt') || !p.hasField('fdtable', 'fd') || !p.hasField('file', 'f_path')) return undefined;
  const fdt = await nullUnlessFatal(kernel.readU64(files + BigInt(p.fieldOffset('files_struct', 'fdt')), opts));
  if (fdt === null || !kernel.isKernelPointer(fdt)) return undefined;
  const table = await nullUnlessFatal(kernel.read('fdtable', fdt, opts));
  if (!table) return undefined;
  const maxFds = Number(table.uint('max_fds'));
  const array = table.ptr('fd');
  if (maxFds <= 0 || maxFds > MAX_FDS || !kernel.isKernelPointer(array)) return undefined;
  const slots = await nullUnlessFatal(kernel.space.read(array, maxFds * 8, opts));
  if (!slots) return undefined;
  const open: Array<{ fd: number; file: bigint }> = [];
  for (let fd = 0; fd < maxFds && open.length < MAX_FILES_READ; fd++) {
    const file = slots.readBigUInt64LE(fd * 8);
    if (file !== 0n && kernel.isKernelPointer(file)) open.push({ fd, file });
  }
  const pathAt = BigInt(p.fieldOffset('file', 'f_path'));
  const paths = await nullUnlessFatal(kernel.space.readMany(open.map((o) => ({ address: o.file + pathAt, length: 16 })), opts));
  if (!paths) return undefined;
  const mntAt = p.fieldOffset('path', 'mnt'), dentryAt = p.fieldOffset('path', 'dentry');
  const mounts = open.map((o, i) => ({ ...o, mnt: paths[i].readBigUInt64LE(mntAt), dentry: paths[i].readBigUInt64LE(dentryAt) }));
  const nsAt = BigInt(p.fieldOffset('mount', 'mnt_ns'));
  const readable = mounts.filter((m) => kernel.isKernelPointer(m.mnt));
  const ns = await nullUnlessFatal(kernel.space.readMany(readable.map((m) => ({ address: containerOf(kernel, m.mnt, 'mount', 'mnt') + nsAt, length: 8 })), opts));
  if (!ns) return undefined;
  const out: OpenFileMount[] = readable.map((m, i) => ({ ...m, mntNs: ns[i].readBigUInt64LE(0) }));
  if (p.hasField('dentry', 'd_inode') && p.hasField('inode', 'i_mode')) {
    const withDentry = out.filter((m) => kernel.isKernelPointer(m.dentry));
    const inodes = await nullUnlessFatal(kernel.space.readMany(withDentry.map((m) => ({ address: m.dentry + BigInt(p.fieldOffset('dentry', 'd_inode')), length: 8 })), opts));
    const withInode = withDentry.map((m, i) => ({ m, inode: inodes?.[i]?.readBigUInt64LE(0) ?? 0n })).filter((x) => kernel.isKernelPointer(x.inode));
    const modes = await nullUnlessFatal(kernel.space.readMany(withInode.map((x) => ({ address: x.inode + BigInt(p.fieldOffset('inode', 'i_mode')), length: 2 })), opts));
    withInode.forEach((x, i) => { if (modes?.[i]) x.m.directory = (modes[i].readUInt16LE(0) & S_IFMT) === S_IFDIR; });
  }
  return out;
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
  const bytes = await nullUnlessFatal(kernel.space.read(kernel.symbol(name), length, opts));
  if (!bytes) return undefined;
  const nul = bytes.indexOf(0);
  return bytes.subarray(0, nul < 0 ? bytes.length : nul).toString('latin1');
}
