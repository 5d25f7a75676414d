/**
 * What the containers layer works on and produces. The kernel-reading layer fills one TaskInfo per
 * task (everything in it is guest data, hence untrusted: strings are guest-controlled and must be
 * escaped before they reach a terminal); grouping turns processes into Containers.
 */

export type NamespaceKind = 'pid' | 'mnt' | 'uts' | 'net' | 'ipc' | 'cgroup' | 'user' | 'time';

/** Every namespace kind, in the order output shows them. */
export const NAMESPACE_KINDS: readonly NamespaceKind[] = ['pid', 'mnt', 'uts', 'net', 'ipc', 'cgroup', 'user', 'time'];

/** `ns.inum` of each namespace; 0 when unknown. */
export type Namespaces = Record<NamespaceKind, number>;

/** A Namespaces record with every inode unknown (0). */
export function unknownNamespaces(): Namespaces {
  return { pid: 0, mnt: 0, uts: 0, net: 0, ipc: 0, cgroup: 0, user: 0, time: 0 };
}

export interface TaskInfo {
  /** struct task_struct * */
  address: bigint;
  /** host (init pid namespace) numbers */
  pid: number;
  tgid: number;
  ppid: number;
  /** guest-controlled */
  comm: string;
  /** null for kernel threads or when unreadable */
  cmdline: string[] | null;
  uid: number;
  euid: number;
  gid: number;
  egid: number;
  /** ps-style letter: R S D T t Z X I */
  state: string;
  /** ns since boot */
  startTime: bigint;
  /** pid at each pid-namespace level, outermost (host) first; the last is the pid in its own namespace */
  nspids: number[];
  /** inode of the pid namespace at each level, same order as nspids */
  pidNamespaces: number[];
  /** the task's own namespaces (pid = its own pid namespace, the innermost) */
  namespaces: Namespaces;
  /** cgroup v2 path, e.g. '/system.slice/docker-<id>.scope' */
  cgroup: string;
  /** controller -> path, where v1 hierarchies are mounted */
  cgroupV1?: Record<string, string>;
  /** its cgroup is frozen (v2 cgroup.freeze, v1 freezer) */
  cgroupFrozen?: boolean;
  /** executable path */
  exe: string | null;
  /** where its root directory (fs->root) lies in its file system: "/" on the host, a container's rootfs */
  root?: string;
  /** nodename of its UTS namespace (guest-controlled) */
  hostname: string;
  kernelThread: boolean;
  /** what could not be read for this task */
  warnings?: string[];
}

/** A thread-group leader and its threads (the list may or may not repeat the leader itself). */
export interface ProcessInfo extends TaskInfo {
  threads: TaskInfo[];
}

export type ContainerRuntime = 'docker' | 'containerd' | 'cri-o' | 'podman' | 'runc' | 'lxc' | 'unknown' | 'host';

export interface Container {
  /** the runtime's id (full 64 hex digits where the runtime uses those), a derived id, or 'host' */
  id: string;
  runtime: ContainerRuntime;
  /** the name the user gave, where the cgroup tells it (runc id, LXC name) */
  name?: string;
  /** Kubernetes pod UID (or Podman pod id) */
  podUid?: string;
  /** nodename of the init process's UTS namespace (guest-controlled) */
  hostname: string;
  state: 'running' | 'paused';
  /** host pid of the process that is pid 1 in its pid namespace (or the oldest process when it has no pid namespace of its own) */
  initPid: number;
  /** pid of that process inside the container's pid namespace */
  initNsPid: number;
  /** host pids (thread-group leaders), sorted */
  pids: number[];
  /** sorted by pid */
  processes: ProcessInfo[];
  cgroup: string;
  /** the init process's namespaces */
  namespaces: Namespaces;
  /** its init's root directory within its file system (the rootfs its runtime pivoted into) */
  root?: string;
  /** how the members were found: their own pid namespace, a runtime's cgroup, or only a mount namespace */
  isolation?: 'pid-namespace' | 'cgroup' | 'mount-namespace' | 'host';
}

/** Every task of a process: the leader and its threads, each tid once. */
export function tasksOf(p: ProcessInfo): TaskInfo[] {
  const out: TaskInfo[] = [p];
  const seen = new Set<number>([p.pid]);
  for (const t of p.threads) {
    if (seen.has(t.pid)) continue;
    seen.add(t.pid);
    out.push(t);
  }
  return out;
}
