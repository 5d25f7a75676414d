/**
 * What confines a task (include/linux/cred.h, include/linux/seccomp.h, include/linux/sched.h):
 * its credentials (task_struct.real_cred: ids, the five capability sets, securebits, the LSM
 * blob), its seccomp state (task_struct.seccomp) and no_new_privs (task_struct.atomic_flags bit
 * PFA_NO_NEW_PRIVS). A task forked from another inherits all of them.
 */
import type { Kernel } from '../kernel';
import type { CallOptions } from '../../util/deadline';
import { readU64LE } from '../../util/bytes';

/** PFA_NO_NEW_PRIVS: bit 0 of task_struct.atomic_flags. */
const PFA_NO_NEW_PRIVS = 1n;

export interface TaskConfinement {
  uid: number;
  gid: number;
  euid: number;
  egid: number;
  /** kernel_cap_t as one 64-bit mask (u32 cap[2] before 6.3, u64 val after: the same bytes). */
  capInheritable: bigint;
  capPermitted: bigint;
  capEffective: bigint;
  capBset: bigint;
  /** 0 before 4.3 (no ambient set). */
  capAmbient: bigint;
  securebits: number;
  /** The LSM blob (struct cred.security), compared only for identity. */
  security: bigint;
  /** SECCOMP_MODE_*: 0 none, 1 strict, 2 filter; undefined without CONFIG_SECCOMP. */
  seccompMode?: number;
  /** The seccomp filter chain (struct seccomp_filter *), compared only for identity. */
  seccompFilter?: bigint;
  noNewPrivs?: boolean;
}

/** The confinement of the task at `task` (struct task_struct *). */
export async function taskConfinement(kernel: Kernel, task: bigint, opts: CallOptions = {}): Promise<TaskConfinement> {
  const p = kernel.profile;
  const credAt = await kernel.readU64(task + BigInt(p.fieldOffset('task_struct', 'real_cred')), opts);
  const cred = await kernel.read('cred', credAt, opts);
  const raw = cred.bytes;
  const cap = (field: string) => (p.hasField('cred', field) ? readU64LE(raw, p.fieldOffset('cred', field)) : 0n);
  const c: TaskConfinement = {
    uid: cred.u32('uid.val'),
    gid: cred.u32('gid.val'),
    euid: cred.u32('euid.val'),
    egid: cred.u32('egid.val'),
    capInheritable: cap('cap_inheritable'),
    capPermitted: cap('cap_permitted'),
    capEffective: cap('cap_effective'),
    capBset: cap('cap_bset'),
    capAmbient: cap('cap_ambient'),
    securebits: p.hasField('cred', 'securebits') ? raw.readUInt32LE(p.fieldOffset('cred', 'securebits')) : 0,
    security: p.hasField('cred', 'security') ? readU64LE(raw, p.fieldOffset('cred', 'security')) : 0n,
  };
  if (p.hasField('task_struct', 'seccomp.mode')) {
    const at = task + BigInt(p.fieldOffset('task_struct', 'seccomp'));
    c.seccompMode = (await kernel.space.read(at + BigInt(p.fieldOffset('seccomp', 'mode')), 4, opts)).readInt32LE(0);
    if (p.hasField('seccomp', 'filter')) c.seccompFilter = await kernel.readU64(at + BigInt(p.fieldOffset('seccomp', 'filter')), opts);
  }
  if (p.hasField('task_struct', 'atomic_flags')) {
    c.noNewPrivs = ((await kernel.readU64(task + BigInt(p.fieldOffset('task_struct', 'atomic_flags')), opts)) & PFA_NO_NEW_PRIVS) !== 0n;
  }
  return c;
}

/** CAP_SETGID and CAP_SETUID (include/uapi/linux/capability.h). */
export const CAP_SETGID = 6;
export const CAP_SETUID = 7;

export function hasCapability(set: bigint, cap: number): boolean {
  return ((set >> BigInt(cap)) & 1n) === 1n;
}
