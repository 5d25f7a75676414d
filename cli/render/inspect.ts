/**
 * `vmictl inspect`'s public model: what a docker user expects of a container (id, name, runtime,
 * state, init pid, hostname, cgroup, namespaces, root, processes), not vmictl's internal one. Kernel
 * addresses (each task_struct) are there only when asked for (`--kernel-addresses`): they are for
 * someone who goes on in a debugger, and they say where the kernel lies (KASLR).
 */
import type { Container, ProcessInfo } from '../../lib/containers/model';
import { tasksOf } from '../../lib/containers/model';
import { psJson, topJson, type PsJson, type TopJson } from './containers';
import { jsonText } from './json';

export interface InspectProcessJson extends TopJson {
  /** effective ids and groups, as /proc/PID/status has them */
  euid: number;
  gid: number;
  egid: number;
  /** the executable's path, null for a kernel thread or when it could not be read */
  exe: string | null;
  /** where its root directory lies in its file system */
  root?: string;
  /** host tids of its tasks, the leader first */
  tids: number[];
  /** with --kernel-addresses: each task's struct task_struct, in the order of tids */
  taskStructs?: string[];
  /** what of it could not be read whole (a command line cut at --max-cmdline, an unreadable exe): the data above is partial */
  warnings?: string[];
}

/** ps's fields (the same names and values: scripts join on `id`), with the processes listed rather than counted. */
export interface InspectJson extends Omit<PsJson, 'processes'> {
  /** the init's root directory within its file system (the rootfs its runtime pivoted into) */
  root?: string;
  /** how its processes were told apart from the rest */
  isolation?: NonNullable<Container['isolation']>;
  processes: InspectProcessJson[];
}

export interface InspectOptions {
  kernelAddresses?: boolean;
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

function processJson(p: ProcessInfo, opts: InspectOptions): InspectProcessJson {
  const tasks = tasksOf(p);
  return {
    ...topJson(p),
    euid: p.euid,
    gid: p.gid,
    egid: p.egid,
    exe: p.exe,
    ...(p.root !== undefined ? { root: p.root } : {}),
    tids: tasks.map((t) => t.pid),
    ...(opts.kernelAddresses ? { taskStructs: tasks.map((t) => hex(t.address)) } : {}),
    ...(p.warnings?.length ? { warnings: p.warnings } : {}),
  };
}

export function inspectJson(c: Container, opts: InspectOptions = {}): InspectJson {
  return {
    ...psJson(c),
    processes: [...c.processes].sort((a, b) => a.pid - b.pid).map((p) => processJson(p, opts)),
    ...(c.root !== undefined ? { root: c.root } : {}),
    ...(c.isolation !== undefined ? { isolation: c.isolation } : {}),
  };
}

/** One container: an object; several: an array of the same objects, in the order given. Pretty-printed. */
export function renderInspect(containers: Container | Container[], opts: InspectOptions = {}): string {
  const out = Array.isArray(containers) ? containers.map((c) => inspectJson(c, opts)) : inspectJson(containers, opts);
  return jsonText(out, 2) + '\n';
}
