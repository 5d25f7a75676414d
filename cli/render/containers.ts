/**
 * Output of `ps` and `top`. Text goes through renderTable (which escapes every cell); JSON through
 * jsonText (json.ts), which escapes what a terminal would act on.
 *
 * JSON shapes are an interface (docs/schemas/): fields may be added, never renamed or removed.
 */
import type { Container, NamespaceKind, ProcessInfo } from '../../lib/containers/model';
import { NAMESPACE_KINDS, tasksOf } from '../../lib/containers/model';
import { renderTable, type Column, type TableOptions } from './table';
import { jsonText } from './json';

export interface PsOptions extends TableOptions {
  /** also list groups that share only a mount namespace and that no runtime named (sandboxed daemons and the like) */
  all?: boolean;
  /** also list the host (runtime 'host') when it is in the list */
  host?: boolean;
  json?: boolean;
  /** whole ids in the CONTAINER ID column (`--no-trunc`), not docker's 12 characters */
  fullIds?: boolean;
}

export interface TopOptions extends TableOptions {
  json?: boolean;
}

export interface PsJson {
  id: string;
  runtime: Container['runtime'];
  name?: string;
  podUid?: string;
  hostname: string;
  state: Container['state'];
  initPid: number;
  initNsPid: number;
  pids: number[];
  processes: number;
  cgroup: string;
  namespaces: Record<NamespaceKind, number>;
}

export interface TopJson {
  pid: number;
  nspid: number;
  nspids: number[];
  ppid: number;
  comm: string;
  cmdline: string[];
  uid: number;
  state: string;
  threads: number;
  startTime: string;
}

function ownPidNamespace(c: Container): boolean {
  return c.processes.some((p) => p.nspids.length > 1);
}

/** Shown by default: the host only with `host`, mount-namespace-only groups no runtime named only with `all`. */
function shown(c: Container, opts: PsOptions): boolean {
  if (c.runtime === 'host') return opts.host === true;
  if (opts.all) return true;
  const mountOnly = c.isolation !== undefined ? c.isolation === 'mount-namespace' : !ownPidNamespace(c);
  return !(c.runtime === 'unknown' && mountOnly);
}

function namespacesJson(c: Container): Record<NamespaceKind, number> {
  const out = {} as Record<NamespaceKind, number>;
  for (const k of NAMESPACE_KINDS) out[k] = c.namespaces[k] ?? 0;
  return out;
}

export function psJson(c: Container): PsJson {
  return {
    id: c.id,
    runtime: c.runtime,
    ...(c.name !== undefined ? { name: c.name } : {}),
    ...(c.podUid !== undefined ? { podUid: c.podUid } : {}),
    hostname: c.hostname,
    state: c.state,
    initPid: c.initPid,
    initNsPid: c.initNsPid,
    pids: [...c.pids],
    processes: c.processes.length,
    cgroup: c.cgroup,
    namespaces: namespacesJson(c),
  };
}

/** The CONTAINER ID column: 64-hex ids cut to 12 like docker, other ids (names) whole up to 12 columns. */
export function shortId(id: string): string {
  if (/^[0-9a-f]{64}$/.test(id)) return id.slice(0, 12);
  return id.length > 12 ? id.slice(0, 11) + '…' : id;
}

const PS_COLUMNS: Column[] = [
  { header: 'CONTAINER ID' },
  { header: 'RUNTIME' },
  { header: 'HOSTNAME', maxWidth: 24 },
  { header: 'STATE' },
  { header: 'INIT PID', align: 'right' },
  { header: 'PROCESSES', align: 'right' },
  { header: 'CGROUP' },
];

/** The containers `ps` lists with these options, in their order. */
export function shownInPs(containers: readonly Container[], opts: Pick<PsOptions, 'all' | 'host'> = {}): Container[] {
  return containers.filter((c) => shown(c, opts));
}

/** `vmictl ps`: one row (or JSON object) per container. */
export function renderPs(containers: Container[], opts: PsOptions = {}): string {
  const list = shownInPs(containers, opts);
  if (opts.json) return jsonText(list.map(psJson)) + '\n';
  const rows = list.map((c) => [opts.fullIds ? c.id : shortId(c.id), c.runtime, c.hostname, c.state, String(c.initPid), String(c.processes.length), c.cgroup]);
  return renderTable(PS_COLUMNS, rows, opts);
}

function threadCount(p: ProcessInfo): number {
  return tasksOf(p).length;
}

export function topJson(p: ProcessInfo): TopJson {
  return {
    pid: p.pid,
    nspid: p.nspids[1] ?? p.pid,
    nspids: [...p.nspids],
    ppid: p.ppid,
    comm: p.comm,
    cmdline: p.cmdline ? [...p.cmdline] : [],
    uid: p.uid,
    state: p.state,
    threads: threadCount(p),
    startTime: p.startTime.toString(10),
  };
}

const TOP_COLUMNS: Column[] = [
  { header: 'PID', align: 'right' },
  { header: 'NSPID', align: 'right' },
  { header: 'PPID', align: 'right' },
  { header: 'UID', align: 'right' },
  { header: 'STATE' },
  { header: 'CMD' },
];

/** `vmictl top`: the processes of one container; NSPID is the pid inside the container's pid namespace. */
export function renderTop(container: Container, opts: TopOptions = {}): string {
  const procs = [...container.processes].sort((a, b) => a.pid - b.pid);
  if (opts.json) return jsonText(procs.map(topJson)) + '\n';
  const rows = procs.map((p) => {
    const j = topJson(p);
    const cmd = p.cmdline && p.cmdline.length > 0 ? p.cmdline.join(' ') : `[${p.comm}]`;
    return [String(j.pid), String(j.nspid), String(j.ppid), String(j.uid), j.state, cmd];
  });
  return renderTable(TOP_COLUMNS, rows, opts);
}
