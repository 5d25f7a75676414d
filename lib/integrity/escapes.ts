/**
 * `check --containers`: what contradicts each container's confinement, seen from outside.
 *   - a process in a container's cgroup that has the host's pid and mount namespaces, or a task of
 *     a container that joined one of the host's namespaces its container does not share (setns,
 *     nsenter);
 *   - a container task running with `init_cred` itself (the `commit_creds(prepare_kernel_cred(0))`
 *     shape), or with the initial user namespace's full capabilities in a container whose init
 *     does not have them (not started privileged);
 *   - a container task whose root directory lies on a mount of another mount namespace than its
 *     own (a chroot through a directory fd leaked in from the host), or that holds a directory of the
 *     host's mount namespace open (the leaked fd itself);
 *   - core_pattern, modprobe_path or uevent_helper naming a path inside a container (its rootfs,
 *     a runtime's overlay directories, or /proc/<pid>/root), which the kernel runs as root on the host.
 * What a container was started with (privileged, the host's pid, network or cgroup namespace) is
 * configuration: said once per container, never an escape.
 */
import type { CallOptions } from '../util/deadline';
import type { Kernel } from '../kernel/kernel';
import type { Container, NamespaceKind, TaskInfo } from '../containers/model';
import { tasksOf } from '../containers/model';
import type { ContainerList } from '../containers/list';
import { matchTaskCgroups } from '../containers/runtime';
import { hasEscapeFacts, kernelString, openFileMounts, taskEscapeFacts, type TaskEscapeFacts } from '../kernel/helpers/escape-facts';
import { dentryPath } from '../kernel/helpers/dcache';
import { taskConfinement } from '../kernel/helpers/cred';
import { nullUnlessFatal } from '../errors';
import type { Finding } from './finding';

export interface EscapeReport {
  findings: Finding[];
  /** What containers were started with, one line each (guest-derived text: escape before printing). */
  configuration: string[];
  containers: number;
  tasks: number;
}

/** The host namespaces a container task may not join unless its container shares them. */
const JOINABLE: readonly NamespaceKind[] = ['pid', 'mnt', 'net', 'user', 'ipc', 'uts', 'cgroup'];
/** Where runtimes keep container file systems on the host: a helper there runs a container's file. */
const RUNTIME_DIRS = /\/var\/lib\/docker\/(overlay2|btrfs|zfs|vfs|aufs)\/|\/var\/lib\/containers\/storage\/(overlay|vfs|btrfs)\/|\/run\/containerd\/io\.containerd\.runtime\.v[12]\.task\/|\/var\/lib\/containerd\/io\.containerd\.snapshotter\.|\/var\/lib\/lxc\/[^/]+\/rootfs\//;
const PROC_ROOT = /\/proc\/(\d+|self|thread-self|%[pP])\/(root|cwd)\//;
/** The helper strings the kernel runs programs from, as root, in the host's namespaces. */
const HELPERS: ReadonlyArray<{ name: string; size: number }> = [
  { name: 'core_pattern', size: 128 },
  { name: 'modprobe_path', size: 256 },
  { name: 'uevent_helper', size: 256 },
];

function label(c: Container): string {
  return c.name ?? (c.id.length > 12 ? c.id.slice(0, 12) : c.id);
}

function who(c: Container, t: TaskInfo): string {
  return `${label(c)}: pid ${t.pid} (${t.comm})`;
}

/**
 * Why a helper path the kernel runs (`value`) names a container's files, or undefined: it lies
 * in one of `roots` (a container's root directory as its file system names it; "/" says nothing),
 * goes through /proc/<pid>/root, or into a runtime's file-system directories.
 */
export function helperPathConcern(value: string, roots: ReadonlyArray<{ label: string; root: string }>): string | undefined {
  for (const r of roots) {
    if (r.root.length <= 1) continue;
    const dir = r.root.endsWith('/') ? r.root : `${r.root}/`;
    if (value.includes(dir)) return `inside ${r.label}'s root file system (${dir})`;
  }
  if (PROC_ROOT.test(value)) return 'a path through /proc/<pid>/root: a process\'s root, a container\'s as well';
  if (RUNTIME_DIRS.test(value)) return 'a container runtime\'s file-system directory';
  return undefined;
}

export async function checkContainerEscapes(kernel: Kernel, list: ContainerList, opts: CallOptions = {}): Promise<EscapeReport> {
  const findings: Finding[] = [];
  const configuration: string[] = [];
  const hostInit = list.host.processes.find((p) => p.pid === 1 && !p.kernelThread) ?? list.host.processes.find((p) => !p.kernelThread);
  const hostNs = hostInit?.namespaces;
  let tasks = 0;

  // a host process in a container's cgroup: the other side of a setns escape
  for (const p of list.host.processes) {
    if (p.kernelThread) continue;
    const m = matchTaskCgroups(p);
    const c = m && list.containers.find((x) => x.runtime === m.runtime && x.id === m.id);
    if (!c) continue;
    findings.push({
      kind: 'container-escape',
      address: p.address,
      symbol: `${label(c)}: pid ${p.pid} (${p.comm})`,
      expected: `only tasks in ${label(c)}'s namespaces in its cgroup`,
      found: `a process with the host's pid and mount namespaces in its cgroup ${c.cgroup}`,
      detail: 'a process that joined the host\'s namespaces (setns, nsenter) from the container, or was placed in its cgroup from the host',
    });
  }

  const initCred = kernel.hasSymbol('init_cred') ? kernel.symbol('init_cred') : undefined;
  const initUserNs = kernel.hasSymbol('init_user_ns') ? kernel.symbol('init_user_ns') : undefined;
  const facts = hasEscapeFacts(kernel);
  const hostCaps = hostInit ? (await nullUnlessFatal(taskConfinement(kernel, hostInit.address, opts)))?.capEffective : undefined;
  const fullCaps = (caps: bigint | undefined, f: TaskEscapeFacts | null) => hostCaps !== undefined && hostCaps !== 0n && caps !== undefined && (caps & hostCaps) === hostCaps && f !== null && f.userNs === initUserNs;

  const hostMntNs = hostInit && facts ? (await taskEscapeFacts(kernel, hostInit.address, opts))?.mntNs : undefined;
  const filesSeen = new Set<bigint>();
  for (const c of list.containers) {
    const init = c.processes.find((p) => p.pid === c.initPid);
    const initFacts = init && facts ? await taskEscapeFacts(kernel, init.address, opts) : null;
    const initCaps = init ? (await nullUnlessFatal(taskConfinement(kernel, init.address, opts)))?.capEffective : undefined;
    const privileged = fullCaps(initCaps, initFacts);
    const shared: string[] = [];
    if (privileged) shared.push('privileged (the initial user namespace\'s full capabilities)');
    if (hostNs) {
      if (c.namespaces.pid === hostNs.pid) shared.push('the host\'s pid namespace');
      if (c.namespaces.net === hostNs.net) shared.push('the host\'s network namespace');
      if (c.namespaces.cgroup === hostNs.cgroup) shared.push('the host\'s cgroup namespace');
    }
    // a service in a private mount namespace no runtime started is no container configuration
    const serviceOnly = c.runtime === 'unknown' && c.isolation === 'mount-namespace';
    if (shared.length > 0 && !serviceOnly) configuration.push(`${label(c)}: ${shared.join(', ')}`);

    for (const p of c.processes) {
      for (const t of tasksOf(p)) {
        if (t.kernelThread || t.state === 'Z' || t.state === 'X') continue;
        tasks++;
        if (hostNs) {
          const joined = JOINABLE.filter((k) => t.namespaces[k] !== 0 && t.namespaces[k] === hostNs[k] && c.namespaces[k] !== hostNs[k]);
          if (joined.length > 0) {
            findings.push({
              kind: 'container-escape',
              address: t.address,
              symbol: who(c, t),
              expected: `the namespaces of ${label(c)}`,
              found: `the host's ${joined.join(', ')} namespace${joined.length > 1 ? 's' : ''}`,
              detail: 'joined the host\'s namespaces (setns, nsenter), which its container does not share',
            });
          }
        }
        if (!facts) continue;
        const f = await taskEscapeFacts(kernel, t.address, opts);
        if (!f) continue;
        if (initCred !== undefined && (f.cred === initCred || f.realCred === initCred)) {
          findings.push({ kind: 'container-escape', address: t.address, symbol: who(c, t), expected: 'credentials of its own', found: `the kernel's init_cred (0x${initCred.toString(16)})`, detail: 'the commit_creds(prepare_kernel_cred(0)) shape: root of the host, every capability' });
        } else if (!privileged) {
          const caps = (await nullUnlessFatal(taskConfinement(kernel, t.address, opts)))?.capEffective;
          if (fullCaps(caps, f)) {
            findings.push({ kind: 'container-escape', address: t.address, symbol: who(c, t), expected: `no more capabilities than ${label(c)}'s init`, found: `the initial user namespace's full capabilities (CapEff ${caps!.toString(16).padStart(16, '0')})`, detail: 'its container was not started privileged' });
          }
        }
        if (hostMntNs !== undefined && f.mntNs !== hostMntNs && f.files !== 0n && !filesSeen.has(f.files)) {
          // threads share one table: looked at once
          filesSeen.add(f.files);
          for (const m of (await openFileMounts(kernel, f.files, opts)) ?? []) {
            // stdio a runtime passed in (a log file, /dev/null) is no way out; a directory is
            if (m.mntNs !== hostMntNs || m.directory !== true) continue;
            const path = await nullUnlessFatal(dentryPath(kernel, m.dentry, opts));
            findings.push({ kind: 'container-escape', address: t.address, symbol: who(c, t), expected: 'no directory of the host\'s mounts open', found: `fd ${m.fd} open on a directory of the host's mount namespace${path === null ? '' : ` (${path})`}`, detail: 'a directory of the host carried into the container (a leaked descriptor): a way out of its root' });
          }
        }
        if (f.rootMntNs !== 0n && f.rootMntNs !== f.mntNs) {
          findings.push({ kind: 'container-escape', address: t.address, symbol: who(c, t), expected: 'a root directory in its own mount namespace', found: `a root directory on a mount of another mount namespace (0x${f.rootMntNs.toString(16)}, its own 0x${f.mntNs.toString(16)})`, detail: 'a chroot through a directory of the host (a leaked file descriptor)' });
        }
      }
    }
  }

  // helper programs the kernel runs as root on the host, pointed into a container
  const roots = list.containers.map((c) => ({ label: label(c), root: c.root ?? '' }));
  for (const h of HELPERS) {
    const value = await kernelString(kernel, h.name, h.size, opts);
    if (!value) continue;
    const why = helperPathConcern(value, roots);
    if (!why) continue;
    findings.push({ kind: 'container-escape', address: kernel.symbol(h.name), symbol: h.name, expected: 'a helper in the host\'s own file system', found: value, detail: `the kernel runs it as root on the host, and it names ${why}` });
  }
  return { findings, configuration, containers: list.containers.length, tasks };
}
