/**
 * Recognises the container a cgroup path belongs to, from the names container runtimes give their
 * cgroups. The path is guest data: it is bounded, split into components and each component is
 * matched with anchored patterns only.
 *
 * Layouts recognised (v2 paths, and v1 paths per controller):
 * - Docker: `…/docker-<64hex>.scope` (systemd driver, also rootless under user@N.service),
 *   `/docker/<64hex>` (cgroupfs driver), and Docker in Docker (`/docker/<outer>/docker/<inner>`:
 *   the outermost wins, as it does for every nested layout).
 * - containerd: `…/cri-containerd-<64hex>.scope` (CRI, systemd driver), `/kubepods/<qos>/pod<uid>/<64hex>`
 *   (CRI, cgroupfs driver), `…:cri-containerd:<64hex>` (containerd without SystemdCgroup, seen in the
 *   wild), `containerd-<64hex>.scope`/`nerdctl-<64hex>.scope`, and ctr's per-namespace parents
 *   (`/default/<id>`, `/k8s.io/<id>`, `/moby/<id>`).
 * - CRI-O: `…/crio-<64hex>.scope` and `…/crio-<64hex>`; `crio-conmon-<id>.scope` is conmon, not the container.
 * - Podman: `…/libpod-<64hex>.scope` (machine.slice, user slices, `machine-libpod_pod_<pod>.slice`),
 *   `/libpod_parent/libpod-<64hex>`; `libpod-conmon-<id>.scope` is conmon, not the container.
 * - LXC/LXD: `/lxc/<name>` (LXC ≤ 3), `lxc.payload.<name>` (LXC ≥ 4); `lxc.monitor.<name>` is the monitor.
 * - runc/crun: `runc-<id>.scope` (systemd driver default), and with an empty cgroupsPath the cgroupfs
 *   driver puts the container at `/<id>` right under the root: a single top-level component that is
 *   not a systemd unit is taken as a runc/crun id (marked `heuristic`).
 * Kubernetes pod UIDs come from `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid_with_underscores>.slice`.
 */
import type { ContainerRuntime, TaskInfo } from './model';

export type NamedRuntime = Exclude<ContainerRuntime, 'unknown' | 'host'>;

export interface RuntimeMatch {
  runtime: NamedRuntime;
  /** the runtime's container id: 64 lowercase hex digits, or the runc id / LXC name */
  id: string;
  /** the name the user chose, when the cgroup holds it (runc id, LXC name) */
  name?: string;
  /** Kubernetes pod UID with dashes (or the Podman pod id) */
  podUid?: string;
  /** the cgroup path up to and including the component that names the container */
  cgroup: string;
  /** true when only the weak runc-default rule (a lone top-level component) matched */
  heuristic?: boolean;
}

/** Longest path considered; cgroup paths are built from kernfs names of at most 255 bytes each. */
export const MAX_CGROUP_PATH = 4096;
const MAX_COMPONENTS = 64;
const MAX_NAME = 255;

const HEX64 = /^[0-9a-f]{64}$/;
/** runc's container id rule (libcontainer: `^[\w+-\.]+$`). */
const RUNC_ID = /^[A-Za-z0-9_+.-]+$/;
/** systemd unit suffixes that have cgroups (or could appear as components). */
const SYSTEMD_UNIT = /\.(slice|scope|service|socket|mount|swap|target|device|automount|path|timer)$/;
/** top-level cgroups that are runtime parents or system places, never a container of their own. */
const NOT_A_RUNC_ID = new Set(['docker', 'kubepods', 'libpod_parent', 'lxc', 'lxc.pivot', 'machine', 'podruntime', 'runtime', 'system', 'user', 'default', 'k8s.io', 'moby', 'kubelet', 'besteffort', 'burstable']);
const CTR_NAMESPACES = new Set(['default', 'k8s.io', 'moby']);

const SCOPE_RULES: { re: RegExp; runtime: NamedRuntime }[] = [
  { re: /^docker-([0-9a-f]{64})\.scope$/, runtime: 'docker' },
  { re: /^cri-containerd-([0-9a-f]{64})\.scope$/, runtime: 'containerd' },
  { re: /^(?:containerd|nerdctl)-([0-9a-f]{64})\.scope$/, runtime: 'containerd' },
  { re: /^[^:]*:cri-containerd:([0-9a-f]{64})$/, runtime: 'containerd' },
  { re: /^crio-([0-9a-f]{64})(?:\.scope)?$/, runtime: 'cri-o' },
  { re: /^libpod-([0-9a-f]{64})(?:\.scope)?$/, runtime: 'podman' },
];

/** The pod a component names, if any: `pod<uid>` or `kubepods[-<qos>]-pod<uid_>.slice`; Podman's `machine-libpod_pod_<id>.slice`. */
function podOf(component: string): string | undefined {
  let m = /^(?:kubepods(?:-[a-z]+)*-)?pod([0-9a-fA-F_-]{32,36})(?:\.slice)?$/.exec(component);
  if (m) {
    const uid = m[1]!.replace(/_/g, '-').toLowerCase();
    if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(uid) || /^[0-9a-f]{32}$/.test(uid)) return uid;
    return undefined;
  }
  m = /^machine-libpod_pod_([0-9a-f]{64})\.slice$/.exec(component);
  return m ? m[1] : undefined;
}

/** A name taken from a path component (LXC names, runc ids): printable and bounded. */
function plausibleName(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return s.length > 0 && s.length <= MAX_NAME && s !== '.' && s !== '..' && !/[\x00-\x1f\x7f]/.test(s);
}

/** Splits a cgroup path into its components, bounded. Returns null for something that is not a path. */
function components(path: string): string[] | null {
  if (typeof path !== 'string' || path.length === 0 || path.length > MAX_CGROUP_PATH) return null;
  const parts = path.split('/').filter((c) => c.length > 0);
  if (parts.length > MAX_COMPONENTS) return null;
  return parts;
}

/** Recognises the container a single cgroup path (v2, or one v1 hierarchy) names; null when none does. */
export function matchCgroupPath(path: string): RuntimeMatch | null {
  const parts = components(path);
  if (parts === null || parts.length === 0) return null;
  let podUid: string | undefined;
  const prefix = (i: number): string => '/' + parts.slice(0, i + 1).join('/');
  for (let i = 0; i < parts.length; i++) {
    const c = parts[i]!;
    const next = parts[i + 1];
    const pod = podOf(c);
    if (pod !== undefined) {
      podUid = pod;
      // cgroupfs driver: /kubepods[/<qos>]/pod<uid>/<64hex> (containerd, or Docker under dockershim)
      if (next !== undefined && HEX64.test(next)) return { runtime: 'containerd', id: next, podUid, cgroup: prefix(i + 1) };
      continue;
    }
    // conmon and the LXC monitor sit next to their container, but are not in it
    if (/^(?:libpod|crio)-conmon-/.test(c) || c.startsWith('lxc.monitor.') || c === 'lxc.monitor') return null;
    for (const rule of SCOPE_RULES) {
      const m = rule.re.exec(c);
      // `<slice>:cri-containerd:<id>` carries the pod's slice in the same component
      if (m) return withPod({ runtime: rule.runtime, id: m[1]!, cgroup: prefix(i) }, podUid ?? podOf(c.split(':')[0]!));
    }
    if (c === 'docker' && next !== undefined && HEX64.test(next)) return withPod({ runtime: 'docker', id: next, cgroup: prefix(i + 1) }, podUid);
    const runcScope = /^runc-(.+)\.scope$/.exec(c);
    if (runcScope && RUNC_ID.test(runcScope[1]!) && plausibleName(runcScope[1]!)) {
      return { runtime: 'runc', id: runcScope[1]!, name: runcScope[1]!, cgroup: prefix(i) };
    }
    if (c.startsWith('lxc.payload.')) {
      const name = c.slice('lxc.payload.'.length);
      if (plausibleName(name)) return { runtime: 'lxc', id: name, name, cgroup: prefix(i) };
      return null;
    }
    if (c === 'lxc' && next !== undefined) {
      if (plausibleName(next) && !next.startsWith('lxc.monitor')) return { runtime: 'lxc', id: next, name: next, cgroup: prefix(i + 1) };
      return null;
    }
    if (i === 0 && CTR_NAMESPACES.has(c) && next !== undefined && RUNC_ID.test(next) && plausibleName(next)) {
      // ctr/containerd without a cgroups parent: /<containerd namespace>/<id>
      return { runtime: 'containerd', id: next, cgroup: prefix(1) };
    }
  }
  if (parts.length === 1) {
    const c = parts[0]!;
    if (!SYSTEMD_UNIT.test(c) && !NOT_A_RUNC_ID.has(c) && !c.startsWith('lxc.') && RUNC_ID.test(c) && plausibleName(c)) {
      return { runtime: 'runc', id: c, name: c, cgroup: prefix(0), heuristic: true };
    }
  }
  return null;
}

function withPod(m: RuntimeMatch, podUid: string | undefined): RuntimeMatch {
  return podUid === undefined ? m : { ...m, podUid };
}

/** v1 hierarchies in the order they are asked: the ones every runtime places processes in first. */
const V1_ORDER = ['name=systemd', 'pids', 'memory', 'cpu,cpuacct', 'cpu', 'cpuacct', 'devices', 'freezer', 'blkio'];

function v1Paths(v1: Record<string, string> | undefined): string[] {
  if (v1 === undefined || v1 === null || typeof v1 !== 'object') return [];
  const keys = Object.keys(v1).slice(0, 32);
  keys.sort((a, b) => {
    const ia = V1_ORDER.indexOf(a);
    const ib = V1_ORDER.indexOf(b);
    return (ia < 0 ? V1_ORDER.length : ia) - (ib < 0 ? V1_ORDER.length : ib) || (a < b ? -1 : a > b ? 1 : 0);
  });
  return keys.map((k) => v1[k]).filter((p): p is string => typeof p === 'string');
}

/**
 * The container a task's cgroups name: the v2 path first, then the v1 hierarchies. A layout that
 * names a runtime beats the lone-top-level-component (runc default) rule wherever each was found.
 */
export function matchTaskCgroups(task: Pick<TaskInfo, 'cgroup' | 'cgroupV1'>): RuntimeMatch | null {
  let weak: RuntimeMatch | null = null;
  for (const path of [task.cgroup, ...v1Paths(task.cgroupV1)]) {
    const m = matchCgroupPath(path);
    if (m === null) continue;
    if (!m.heuristic) return m;
    weak ??= m;
  }
  return weak;
}

/** True for a full 64-hex-digit container id (Docker, containerd, CRI-O, Podman). */
export function isFullHexId(id: string): boolean {
  return HEX64.test(id);
}
