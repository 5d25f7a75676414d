/**
 * The fast path of task decoding: once a collection's stages are in the page cache and the objects
 * tasks share (namespaces, cgroups, hostnames) are resolved, most tasks decode synchronously — no
 * promise per field, which with a thousand tasks was most of the time. Anything not at hand, or
 * not as expected, makes decode() return false, and the task goes the careful (async) way, which
 * also produces the warnings; the results are the same either way.
 */
import type { Kernel } from '../kernel/kernel';
import type { KObject } from '../kernel/object';
import { kernfsPathCached } from '../kernel/helpers/kernfs';
import type { Namespaces, TaskInfo } from './model';
import { readU64LE } from '../util/bytes';

/** The shared objects, resolved: ns pointer → inum per namespace type, and so on. */
export interface SharedTables {
  inums: Map<string, Map<bigint, number>>;
  hostnames: Map<bigint, string>;
  /** struct cgroup * → frozen */
  frozen: Map<bigint, boolean>;
  /** struct css_set * → v1 paths */
  v1: Map<bigint, Record<string, string>>;
}

export function emptyTables(): SharedTables {
  return { inums: new Map(), hostnames: new Map(), frozen: new Map(), v1: new Map() };
}

const NS_FIELDS: Array<[keyof Namespaces, string, string]> = [
  ['uts', 'uts_ns', 'uts_namespace'], ['ipc', 'ipc_ns', 'ipc_namespace'], ['mnt', 'mnt_ns', 'mnt_namespace'],
  ['net', 'net_ns', 'net'], ['cgroup', 'cgroup_ns', 'cgroup_namespace'], ['time', 'time_ns', 'time_namespace'],
];

/** The namespace fields this kernel's nsproxy has (time namespaces arrived in 5.6). */
export function nsproxyFields(kernel: Kernel): Array<[keyof Namespaces, string, string]> {
  return NS_FIELDS.filter(([, field]) => field !== 'time_ns' || kernel.profile.hasField('nsproxy', 'time_ns'));
}

/**
 * Fills parent, pids, credentials, namespaces and cgroup of `info` from cached memory and `tables`;
 * false (with `info` untouched) when something is missing or odd.
 */
export function decodeCached(kernel: Kernel, t: KObject, info: TaskInfo, tables: SharedTables, tasks: ReadonlyMap<bigint, KObject>): boolean {
  const p = kernel.profile;
  const inum = (type: string, at: bigint): number | undefined => (kernel.isKernelPointer(at) ? tables.inums.get(type)?.get(at) : 0);

  // parent
  let ppid = 0;
  const parent = t.ptr('real_parent');
  if (parent !== t.address) {
    const known = tasks.get(parent);
    if (!known) return false;
    ppid = known.i32('tgid');
  }

  // pids
  const pidAt = t.ptr('thread_pid');
  const nspids: number[] = [];
  const pidNamespaces: number[] = [];
  if (pidAt === 0n) nspids.push(info.pid);
  else {
    if (!kernel.isKernelPointer(pidAt)) return false;
    const head = kernel.peek('pid', pidAt, { upTo: 'level' });
    if (!head) return false;
    const level = head.u32('level');
    if (level > 32) return false;
    const upSize = p.typeSize('upid');
    const raw = kernel.space.peek(pidAt + BigInt(p.fieldOffset('pid', 'numbers')), upSize * (level + 1), true);
    if (!raw) return false;
    const nrOff = p.fieldOffset('upid', 'nr');
    const nsOff = p.fieldOffset('upid', 'ns');
    for (let i = 0; i <= level; i++) {
      const n = inum('pid_namespace', readU64LE(raw, i * upSize + nsOff));
      if (n === undefined) return false;
      nspids.push(raw.readInt32LE(i * upSize + nrOff));
      pidNamespaces.push(n);
    }
  }

  // credentials
  const credAt = t.ptr('real_cred');
  if (!kernel.isKernelPointer(credAt)) return false;
  const cred = kernel.peek('cred', credAt);
  if (!cred) return false;
  const user = inum('user_namespace', cred.ptr('user_ns'));
  if (user === undefined) return false;

  // namespaces and hostname
  const ns: Partial<Namespaces> = {};
  let hostname = '';
  const nsproxy = t.ptr('nsproxy');
  if (nsproxy !== 0n) {
    if (!kernel.isKernelPointer(nsproxy)) return false;
    const nsp = kernel.peek('nsproxy', nsproxy);
    if (!nsp) return false;
    for (const [kind, field, type] of nsproxyFields(kernel)) {
      const n = inum(type, nsp.ptr(field));
      if (n === undefined) return false;
      ns[kind] = n;
    }
    const uts = nsp.ptr('uts_ns');
    if (kernel.isKernelPointer(uts)) {
      const h = tables.hostnames.get(uts);
      if (h === undefined) return false;
      hostname = h;
    }
  }

  // cgroup
  const csetAt = t.ptr('cgroups');
  if (!kernel.isKernelPointer(csetAt)) return false;
  const cset = kernel.peek('css_set', csetAt, { upTo: 'dfl_cgrp' });
  if (!cset) return false;
  const cgrp = cset.ptr('dfl_cgrp');
  const frozen = tables.frozen.get(cgrp);
  const v1 = tables.v1.get(csetAt);
  const cg = kernel.isKernelPointer(cgrp) ? kernel.peek('cgroup', cgrp, { upTo: 'kn' }) : undefined;
  const path = cg && kernfsPathCached(kernel, cg.ptr('kn'));
  if (frozen === undefined || v1 === undefined || path === undefined) return false;

  info.ppid = ppid;
  info.nspids = nspids;
  info.pidNamespaces = pidNamespaces;
  if (pidAt !== 0n) info.namespaces.pid = pidNamespaces[pidNamespaces.length - 1];
  info.uid = cred.u32('uid.val');
  info.gid = cred.u32('gid.val');
  info.euid = cred.u32('euid.val');
  info.egid = cred.u32('egid.val');
  info.namespaces.user = user;
  Object.assign(info.namespaces, ns);
  info.hostname = hostname;
  info.cgroup = path;
  if (Object.keys(v1).length > 0) info.cgroupV1 = { ...v1 };
  info.cgroupFrozen = frozen;
  return true;
}
