/**
 * Turns the guest's processes into containers.
 *
 * The root namespaces are those of the init task (pid 1, else the lowest-pid process that is not a
 * kernel thread). A process is in a container when it has a pid namespace of its own below the root
 * one (nspids has a level 1), or when its mount namespace differs from the root's. Members are
 * grouped, in this order of preference, by their pid namespace at level 1 (so nested pid namespaces
 * belong to their outermost container), by the runtime id their cgroup names, or by their mount
 * namespace.
 *
 * A process that shares both the root pid and the root mount namespace is a host process, whatever
 * its cgroup says: a cgroup is only a label the guest can write, and a process sitting in a
 * container's cgroup with the host's namespaces (an escape, or a misplaced helper) must show with
 * the host, where it is visible, and is reported in `warnings`. Kernel threads are always host.
 */
import { createHash } from 'node:crypto';
import type { Container, Namespaces, ProcessInfo } from './model';
import { tasksOf, unknownNamespaces } from './model';
import { matchTaskCgroups, type RuntimeMatch } from './runtime';

export interface GroupOptions {
  /** the pid whose namespaces are the root ones; default: 1, else the lowest pid that is not a kernel thread */
  initPid?: number;
}

export interface GroupResult {
  /** every process outside a container (kernel threads included), as the 'host' pseudo-container */
  host: Container;
  /** sorted by init pid */
  containers: Container[];
  /** what looked wrong while grouping (guest-derived text: escape before printing) */
  warnings: string[];
}

type KeyKind = 'pid' | 'cgroup' | 'mnt' | 'corrupt';

interface Group {
  kind: KeyKind;
  /** pid namespace inode, mount namespace inode, or runtime:id */
  key: string;
  members: ProcessInfo[];
}

/** Length of a derived container id, in hex digits. */
export const DERIVED_ID_LENGTH = 12;

/**
 * The id given to a container no runtime named: stable for as long as the namespace it was grouped
 * by lives (and so across vmictl runs), and unlike any runtime's 64-digit ids.
 */
export function derivedContainerId(kind: 'pid' | 'mnt' | 'task', key: number): string {
  return createHash('sha256').update(`vmictl:${kind}:${key}`).digest('hex').slice(0, DERIVED_ID_LENGTH);
}

/** Two inodes that are both known and different (0 means unknown, which never counts as different). */
function differs(a: number, b: number): boolean {
  return a !== 0 && b !== 0 && a !== b;
}

function byPid(a: { pid: number }, b: { pid: number }): number {
  return a.pid - b.pid;
}

/** Oldest by start time, then lowest pid. */
function oldest(list: ProcessInfo[]): ProcessInfo {
  let best = list[0]!;
  for (const p of list) {
    if (p.startTime < best.startTime || (p.startTime === best.startTime && p.pid < best.pid)) best = p;
  }
  return best;
}

function describe(p: ProcessInfo): string {
  return `pid ${p.pid} (${JSON.stringify(p.comm)})`;
}

function pathWithin(path: string, prefix: string): boolean {
  if (prefix === '/' || prefix === '') return path.startsWith('/');
  return path === prefix || path.startsWith(prefix + '/');
}

/** The longest common prefix, by whole path components. */
function commonCgroupPrefix(paths: string[]): string {
  if (paths.length === 0) return '/';
  let common = paths[0]!.split('/').filter((c) => c.length > 0);
  for (const p of paths.slice(1)) {
    const parts = p.split('/').filter((c) => c.length > 0);
    let i = 0;
    while (i < common.length && i < parts.length && common[i] === parts[i]) i++;
    common = common.slice(0, i);
  }
  return '/' + common.join('/');
}

/** Every live task stopped (job control 'T' or ptrace 't'); zombies and dead tasks do not count. */
function allStopped(members: ProcessInfo[]): boolean {
  let live = 0;
  for (const p of members) {
    for (const t of tasksOf(p)) {
      if (t.state === 'Z' || t.state === 'X') continue;
      live++;
      if (t.state !== 'T' && t.state !== 't') return false;
    }
  }
  return live > 0;
}

function chooseInit(root: ProcessInfo[]): ProcessInfo | undefined {
  const one = root.find((p) => p.pid === 1);
  if (one) return one;
  let best: ProcessInfo | undefined;
  for (const p of root) if (!p.kernelThread && (best === undefined || p.pid < best.pid)) best = p;
  return best;
}

/** The pid namespace at level 1 of a process, when it has one and its inode is known. */
function levelOnePidNs(p: ProcessInfo): number | undefined {
  if (p.nspids.length < 2 || p.pidNamespaces.length < 2) return undefined;
  const ns = p.pidNamespaces[1]!;
  return Number.isSafeInteger(ns) && ns > 0 ? ns : undefined;
}

/** Most warnings one grouping reports; a hostile task list could otherwise make one per task. */
export const MAX_WARNINGS = 100;

export function groupContainers(processes: ProcessInfo[], opts: GroupOptions = {}): GroupResult {
  const warnings: string[] = [];
  let dropped = 0;
  const warn = (w: string): void => {
    if (warnings.length < MAX_WARNINGS) warnings.push(w);
    else dropped++;
  };

  // one entry per pid: a repeated pid is a corrupt or hostile task list
  const unique: ProcessInfo[] = [];
  const seen = new Set<number>();
  for (const p of processes) {
    if (seen.has(p.pid)) {
      warn(`${describe(p)} appears more than once in the task list; the first is used`);
      continue;
    }
    seen.add(p.pid);
    unique.push(p);
  }

  const init =
    opts.initPid !== undefined ? unique.find((p) => p.pid === opts.initPid) : chooseInit(unique);
  if (init === undefined) warn('no init process found: every process is reported with the host');
  const rootNs: Namespaces = init ? { ...init.namespaces } : unknownNamespaces();
  const rootPidNs = init?.pidNamespaces[0] ?? 0;
  if (init && rootNs.mnt === 0) warn('the root mount namespace is unknown: processes are grouped by pid namespace only');

  const hostMembers: ProcessInfo[] = [];
  const groups = new Map<string, Group>();
  const matches = new Map<ProcessInfo, RuntimeMatch | null>();
  // most processes share their cgroup with others: each path is matched once (matches are only read)
  const byPath = new Map<string, RuntimeMatch | null>();
  const matchOf = (p: ProcessInfo): RuntimeMatch | null => {
    let m = matches.get(p);
    if (m !== undefined) return m;
    if (p.cgroupV1 === undefined && typeof p.cgroup === 'string') {
      m = byPath.get(p.cgroup);
      if (m === undefined) byPath.set(p.cgroup, (m = matchTaskCgroups(p)));
    } else m = matchTaskCgroups(p);
    matches.set(p, m);
    return m;
  };
  const add = (kind: KeyKind, key: string, p: ProcessInfo): void => {
    const id = `${kind}:${key}`;
    let g = groups.get(id);
    if (g === undefined) {
      g = { kind, key, members: [] };
      groups.set(id, g);
    }
    g.members.push(p);
  };

  for (const p of unique) {
    if (init === undefined || p === init || p.kernelThread) {
      hostMembers.push(p);
      continue;
    }
    const match = matchOf(p);
    const ownPidNs = levelOnePidNs(p);
    const deeperPid = p.nspids.length >= 2;
    if (ownPidNs !== undefined && ownPidNs === rootPidNs) {
      warn(`${describe(p)} claims the root pid namespace at level 1; its pid namespaces are ignored`);
    }
    const inOwnPidNs = ownPidNs !== undefined && ownPidNs !== rootPidNs;
    const ownMnt = differs(p.namespaces.mnt, rootNs.mnt);
    if (!inOwnPidNs && !ownMnt && !(deeperPid && ownPidNs === undefined)) {
      // the host's pid and mount namespaces: a host process, whatever its cgroup says
      if (match !== null && !match.heuristic) {
        warn(
          `${describe(p)} is in the cgroup of ${match.runtime} container ${match.id} but shares the host's pid and mount namespaces; it is reported with the host`,
        );
      }
      hostMembers.push(p);
      continue;
    }
    if (inOwnPidNs) add('pid', String(ownPidNs), p);
    else {
      if (deeperPid) warn(`${describe(p)} is in a nested pid namespace whose inode is unknown`);
      if (match !== null) add('cgroup', `${match.runtime}:${match.id}`, p);
      else if (ownMnt) add('mnt', String(p.namespaces.mnt), p);
      else add('corrupt', String(p.pid), p);
    }
  }

  // A group keyed by cgroup that names the same container as a pid-namespace group is part of it.
  const built: { group: Group; identity: RuntimeMatch | null }[] = [];
  const byIdentity = new Map<string, { group: Group; identity: RuntimeMatch | null }>();
  const ordered = [...groups.values()].sort((a, b) => rank(a.kind) - rank(b.kind));
  for (const group of ordered) {
    const identity = identify(group, matchOf);
    if (identity !== null) {
      const idKey = `${identity.runtime}:${identity.id}`;
      const prev = byIdentity.get(idKey);
      if (prev !== undefined) {
        if (group.kind === 'pid') {
          warn(`two pid namespaces (${prev.group.key} and ${group.key}) are both in the cgroup of ${identity.runtime} container ${identity.id}`);
        } else {
          prev.group.members.push(...group.members);
          continue;
        }
      } else byIdentity.set(idKey, { group, identity });
    }
    built.push({ group, identity });
  }

  const containers = built.map(({ group, identity }) => buildContainer(group, identity));
  containers.sort((a, b) => a.initPid - b.initPid || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

  hostMembers.sort(byPid);
  const host: Container = {
    id: 'host',
    runtime: 'host',
    hostname: init?.hostname ?? '',
    state: 'running',
    initPid: init?.pid ?? 0,
    initNsPid: init?.pid ?? 0,
    pids: hostMembers.map((p) => p.pid),
    processes: hostMembers,
    cgroup: '/',
    namespaces: rootNs,
    isolation: 'host',
  };
  if (dropped > 0) warnings.push(`… and ${dropped} more warnings`);
  return { host, containers, warnings };
}

function rank(kind: KeyKind): number {
  return kind === 'pid' ? 0 : kind === 'cgroup' ? 1 : kind === 'mnt' ? 2 : 3;
}

function findInit(group: Group): ProcessInfo {
  if (group.kind === 'pid') {
    const ns = Number(group.key);
    let best: ProcessInfo | undefined;
    for (const p of group.members) {
      if (p.nspids[1] === 1 && p.pidNamespaces[1] === ns && (best === undefined || p.pid < best.pid)) best = p;
    }
    if (best) return best;
  }
  return oldest(group.members);
}

/** The container a group is: its init's runtime id, else the one most members' cgroups name. */
function identify(group: Group, matchOf: (p: ProcessInfo) => RuntimeMatch | null): RuntimeMatch | null {
  const fromInit = matchOf(findInit(group));
  if (fromInit !== null) return fromInit;
  const counts = new Map<string, { m: RuntimeMatch; n: number; pid: number }>();
  for (const p of group.members) {
    const m = matchOf(p);
    if (m === null) continue;
    const k = `${m.runtime}:${m.id}`;
    const c = counts.get(k);
    if (c) c.n++;
    else counts.set(k, { m, n: 1, pid: p.pid });
  }
  let best: { m: RuntimeMatch; n: number; pid: number } | undefined;
  for (const c of counts.values()) if (best === undefined || c.n > best.n || (c.n === best.n && c.pid < best.pid)) best = c;
  return best?.m ?? null;
}

function buildContainer(group: Group, identity: RuntimeMatch | null): Container {
  const members = [...group.members].sort(byPid);
  const init = findInit({ ...group, members });
  let id: string;
  if (identity !== null) id = identity.id;
  else if (group.kind === 'pid' || group.kind === 'mnt') id = derivedContainerId(group.kind, Number(group.key));
  else id = derivedContainerId('task', Number(group.key));

  let cgroup = init.cgroup;
  if (identity !== null && !pathWithin(init.cgroup, identity.cgroup)) {
    const inside = members.map((p) => p.cgroup).filter((c) => pathWithin(c, identity.cgroup));
    cgroup = inside.length > 0 ? commonCgroupPrefix(inside) : identity.cgroup;
  } else if (identity === null && !cgroup) {
    cgroup = commonCgroupPrefix(members.map((p) => p.cgroup).filter((c) => c));
  }

  const c: Container = {
    id,
    runtime: identity?.runtime ?? 'unknown',
    hostname: init.hostname,
    state: init.cgroupFrozen === true || allStopped(members) ? 'paused' : 'running',
    initPid: init.pid,
    initNsPid: init.nspids[1] ?? init.pid,
    pids: members.map((p) => p.pid),
    processes: members,
    cgroup,
    namespaces: { ...init.namespaces },
    isolation: group.kind === 'cgroup' ? 'cgroup' : group.kind === 'mnt' ? 'mount-namespace' : 'pid-namespace',
  };
  if (init.root !== undefined) c.root = init.root;
  if (identity?.name !== undefined) c.name = identity.name;
  if (identity?.podUid !== undefined) c.podUid = identity.podUid;
  return c;
}
