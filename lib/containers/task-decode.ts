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
  /**
   * What decode() made of each shared object it met, so that the threads of a process and the
   * processes of a container decode theirs once (struct cred *, struct nsproxy *, struct css_set *).
   */
  creds: Map<bigint, DecodedCred>;
  nsproxies: Map<bigint, DecodedNsproxy>;
  csets: Map<bigint, DecodedCset>;
}

interface DecodedCred {
  uid: number;
  gid: number;
  euid: number;
  egid: number;
  user: number;
}

interface DecodedNsproxy {
  ns: Partial<Namespaces>;
  hostname: string;
}

interface DecodedCset {
  path: string;
  frozen: boolean;
  v1: Record<string, string>;
}

export function emptyTables(): SharedTables {
  return { inums: new Map(), hostnames: new Map(), frozen: new Map(), v1: new Map(), creds: new Map(), nsproxies: new Map(), csets: new Map() };
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

  // pids (each task its own struct pid)
  const pidAt = t.ptr('thread_pid');
  const nspids: number[] = [];
  const pidNamespaces: number[] = [];
  if (pidAt === 0n) nspids.push(info.pid);
  else {
    if (!kernel.isKernelPointer(pidAt)) return false;
    const numbers = pidNumbersCached(kernel, pidAt);
    if (!numbers) return false;
    const { raw, base, level } = numbers;
    const upSize = p.typeSize('upid');
    const nrOff = base + p.fieldOffset('upid', 'nr');
    const nsOff = base + p.fieldOffset('upid', 'ns');
    for (let i = 0; i <= level; i++) {
      const n = inum('pid_namespace', readU64LE(raw, i * upSize + nsOff));
      if (n === undefined) return false;
      nspids.push(raw.readInt32LE(i * upSize + nrOff));
      pidNamespaces.push(n);
    }
  }

  const credAt = t.ptr('real_cred');
  const cred = tables.creds.get(credAt) ?? decodeCred(kernel, credAt, tables, inum);
  if (!cred) return false;
  let nsp: DecodedNsproxy | undefined = NO_NSPROXY;
  const nsproxy = t.ptr('nsproxy');
  if (nsproxy !== 0n) nsp = tables.nsproxies.get(nsproxy) ?? decodeNsproxy(kernel, nsproxy, tables, inum);
  if (!nsp) return false;
  const csetAt = t.ptr('cgroups');
  const cset = tables.csets.get(csetAt) ?? decodeCset(kernel, csetAt, tables);
  if (!cset) return false;

  info.ppid = ppid;
  info.nspids = nspids;
  info.pidNamespaces = pidNamespaces;
  if (pidAt !== 0n) info.namespaces.pid = pidNamespaces[pidNamespaces.length - 1];
  info.uid = cred.uid;
  info.gid = cred.gid;
  info.euid = cred.euid;
  info.egid = cred.egid;
  info.namespaces.user = cred.user;
  Object.assign(info.namespaces, nsp.ns);
  info.hostname = nsp.hostname;
  info.cgroup = cset.path;
  if (Object.keys(cset.v1).length > 0) info.cgroupV1 = { ...cset.v1 };
  info.cgroupFrozen = cset.frozen;
  return true;
}

type Inum = (type: string, at: bigint) => number | undefined;

/** Levels whose numbers come in the same peek as the struct pid itself (the collection fetched that much). */
const NUMBERS_WITH_HEAD = 4;

/**
 * The cached bytes holding `pid->numbers[0..level]` of the struct pid at `pidAt` (numbers[i] at
 * `base + i * sizeof(struct upid)`), and its level; undefined when not cached or level > 32. Most
 * tasks' take one peek, the struct and its first levels together.
 */
export function pidNumbersCached(kernel: Kernel, pidAt: bigint): { raw: Buffer; base: number; level: number } | undefined {
  const p = kernel.profile;
  const upSize = p.typeSize('upid');
  const numbersOff = p.fieldOffset('pid', 'numbers');
  const level = p.field('pid', 'level');
  const short = numbersOff + upSize * NUMBERS_WITH_HEAD;
  const both = level.offset + 4 <= short ? kernel.space.peek(pidAt, short, true) : undefined;
  let n: number;
  if (both) n = both.readUInt32LE(level.offset);
  else {
    const head = kernel.peek('pid', pidAt, { upTo: 'level' });
    if (!head) return undefined;
    n = head.u32('level');
  }
  if (n > 32) return undefined;
  if (both && n < NUMBERS_WITH_HEAD) return { raw: both, base: numbersOff, level: n };
  const raw = kernel.space.peek(pidAt + BigInt(numbersOff), upSize * (n + 1), true);
  return raw && { raw, base: 0, level: n };
}

/** A task with no nsproxy (exiting) keeps unknown namespaces and no hostname. */
const NO_NSPROXY: DecodedNsproxy = { ns: {}, hostname: '' };

/** The credentials at `credAt` (struct cred *) from the cache, remembered in `tables`. */
function decodeCred(kernel: Kernel, credAt: bigint, tables: SharedTables, inum: Inum): DecodedCred | undefined {
  if (!kernel.isKernelPointer(credAt)) return undefined;
  const cred = kernel.peek('cred', credAt);
  if (!cred) return undefined;
  const user = inum('user_namespace', cred.ptr('user_ns'));
  if (user === undefined) return undefined;
  const d = { uid: cred.u32('uid.val'), gid: cred.u32('gid.val'), euid: cred.u32('euid.val'), egid: cred.u32('egid.val'), user };
  tables.creds.set(credAt, d);
  return d;
}

/** The namespaces and hostname of the nsproxy at `at` (struct nsproxy *, not null), remembered in `tables`. */
function decodeNsproxy(kernel: Kernel, at: bigint, tables: SharedTables, inum: Inum): DecodedNsproxy | undefined {
  if (!kernel.isKernelPointer(at)) return undefined;
  const nsp = kernel.peek('nsproxy', at);
  if (!nsp) return undefined;
  const ns: Partial<Namespaces> = {};
  for (const [kind, field, type] of nsproxyFields(kernel)) {
    const n = inum(type, nsp.ptr(field));
    if (n === undefined) return undefined;
    ns[kind] = n;
  }
  let hostname = '';
  const uts = nsp.ptr('uts_ns');
  if (kernel.isKernelPointer(uts)) {
    const h = tables.hostnames.get(uts);
    if (h === undefined) return undefined;
    hostname = h;
  }
  const d = { ns, hostname };
  tables.nsproxies.set(at, d);
  return d;
}

/** The v2 cgroup path, frozen state and v1 paths of the css_set at `at`, remembered in `tables`. */
function decodeCset(kernel: Kernel, at: bigint, tables: SharedTables): DecodedCset | undefined {
  if (!kernel.isKernelPointer(at)) return undefined;
  const cset = kernel.peek('css_set', at, { upTo: 'dfl_cgrp' });
  if (!cset) return undefined;
  const cgrp = cset.ptr('dfl_cgrp');
  const frozen = tables.frozen.get(cgrp);
  const v1 = tables.v1.get(at);
  const cg = kernel.isKernelPointer(cgrp) ? kernel.peek('cgroup', cgrp, { upTo: 'kn' }) : undefined;
  const path = cg && kernfsPathCached(kernel, cg.ptr('kn'));
  if (frozen === undefined || v1 === undefined || path === undefined) return undefined;
  const d = { path, frozen, v1 };
  tables.csets.set(at, d);
  return d;
}
