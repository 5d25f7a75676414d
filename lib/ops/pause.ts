/**
 * pause / unpause: freeze and thaw a container's cgroup (v2 `cgroup.freeze`, else the v1
 * freezer's `freezer.state`) by writes injected into a root-namespace root process, found where
 * the guest mounts the hierarchy (its /proc/self/mountinfo), not where it usually is. A container
 * with no cgroup of its own (in the root cgroup, or sharing one with processes outside it) is
 * paused by SIGSTOP to each of its processes and resumed by SIGCONT, as a freezer cannot be used
 * without touching others. A freeze that does not complete is written back: all or nothing.
 */
import type { Vm } from '../vm';
import type { Container } from '../containers/model';
import type { ContainerList } from '../containers/list';
import { cgroupDir, waitCgroupFrozen, writeFileIn } from '../inject/open';
import type { InjectionSession } from '../inject';
import { ContainerStateError, OperationError } from './errors';
import { openRootHelper, type HelperOptions } from './helper';
import { cgroupPathUnder, parseCgroupMounts, type CgroupMounts } from './mounts';
import { signalProcesses } from './signal';
import { containerLabel, findContainer, snapshot } from './snapshot';
import { SIGNALS } from './signals';
import { eachContainer, type BatchOutcome } from './batch';

export type PauseMethod = { kind: 'cgroup2'; dir: string } | { kind: 'freezer'; dir: string } | { kind: 'signals' };

export interface PauseResult {
  /** the container's id, as the listing has it */
  id: string;
  container: string;
  method: PauseMethod['kind'];
  /** The cgroup directory written, in the guest's root mount namespace. */
  directory?: string;
  /** For the signal method: the host pids stopped or continued. */
  pids?: number[];
  /** Host pid of the root-namespace process the writes or signals came from. */
  via: number;
}

/** Whether a cgroup path holds processes outside the container (itself or below it). */
function shared(list: ContainerList, c: Container, path: string, of: (p: Container['processes'][number]) => string | undefined): boolean {
  if (path === '/' || path === '') return true;
  for (const other of [...list.containers, list.host]) {
    if (other.id === c.id) continue;
    for (const p of other.processes) {
      const q = of(p);
      if (q !== undefined && (q === path || q.startsWith(`${path}/`))) return true;
    }
  }
  return false;
}

/** How this container can be paused, given where the guest mounts its cgroup hierarchies. */
export function pauseMethod(list: ContainerList, c: Container, mounts: CgroupMounts): PauseMethod {
  const init = c.processes.find((p) => p.pid === c.initPid) ?? c.processes[0];
  if (mounts.v2 && !shared(list, c, c.cgroup, (p) => p.cgroup)) {
    const rel = cgroupPathUnder(mounts.v2, c.cgroup);
    if (rel && rel !== '/') return { kind: 'cgroup2', dir: cgroupDir(rel, mounts.v2.mountPoint) };
  }
  const v1 = init?.cgroupV1?.freezer;
  if (mounts.freezer && v1 && !shared(list, c, v1, (p) => p.cgroupV1?.freezer)) {
    const rel = cgroupPathUnder(mounts.freezer, v1);
    if (rel && rel !== '/') return { kind: 'freezer', dir: cgroupDir(rel, mounts.freezer.mountPoint) };
  }
  return { kind: 'signals' };
}

async function readText(helper: InjectionSession, path: string): Promise<string> {
  return (await helper.readFile(path, 4096)).toString('latin1');
}

/** Waits (bounded) for the v1 freezer to say `want` (FROZEN goes through FREEZING). */
async function waitFreezerState(helper: InjectionSession, dir: string, want: string, tries = 50): Promise<boolean> {
  for (let i = 0; i < tries; i++) if ((await readText(helper, `${dir}/freezer.state`)).trim() === want) return true;
  return false;
}

async function setFrozen(vm: Vm, helper: InjectionSession, list: ContainerList, c: Container, method: PauseMethod, freeze: boolean, signal?: AbortSignal): Promise<number[] | undefined> {
  const label = JSON.stringify(containerLabel(c));
  const verb = freeze ? 'freeze' : 'thaw';
  if (method.kind === 'cgroup2') {
    const file = `${method.dir}/cgroup.freeze`;
    await writeFileIn(helper, file, freeze ? '1' : '0');
    if (await waitCgroupFrozen(helper, method.dir, freeze)) return undefined;
    // all or nothing: put the old value back
    await writeFileIn(helper, file, freeze ? '0' : '1');
    throw new OperationError(`${label}: ${method.dir} did not ${verb}`, { done: [`wrote ${freeze ? 1 : 0} to ${file}, then ${freeze ? 0 : 1} back`], notDone: [verb] });
  }
  if (method.kind === 'freezer') {
    const file = `${method.dir}/freezer.state`;
    await writeFileIn(helper, file, freeze ? 'FROZEN' : 'THAWED');
    if (await waitFreezerState(helper, method.dir, freeze ? 'FROZEN' : 'THAWED')) return undefined;
    await writeFileIn(helper, file, freeze ? 'THAWED' : 'FROZEN');
    throw new OperationError(`${label}: ${method.dir} did not ${verb}`, { done: [`wrote ${freeze ? 'FROZEN' : 'THAWED'} to ${file}, then put it back`], notDone: [verb] });
  }
  const live = c.processes.filter((p) => !p.kernelThread);
  const sig = freeze ? SIGNALS.SIGSTOP : SIGNALS.SIGCONT;
  const r = await signalProcesses(vm, helper, c, live, sig, signal);
  if (r.failed.length > 0) {
    // undo: continue what was stopped (or stop again what was continued)
    if (r.signalled.length > 0) await signalProcesses(vm, helper, c, live.filter((p) => r.signalled.includes(p.pid)), freeze ? SIGNALS.SIGCONT : SIGNALS.SIGSTOP, signal);
    throw new OperationError(`${label}: could not ${freeze ? 'stop' : 'continue'} every process`, {
      done: r.signalled.length ? [`${freeze ? 'stopped and continued' : 'continued and stopped'} again pids ${r.signalled.join(', ')}`] : [],
      notDone: r.failed.map((f) => `pid ${f.pid}: ${f.reason}`),
    });
  }
  return r.signalled;
}

/** Freezes or thaws `c`, whose state is `state` (the listing's, or what this batch made it). */
async function pauseFound(vm: Vm, list: ContainerList, c: Container, state: Container['state'], freeze: boolean, opts: HelperOptions): Promise<PauseResult> {
  const label = containerLabel(c);
  if (freeze && state === 'paused') throw new ContainerStateError(`container ${JSON.stringify(label)} is already paused`);
  if (!freeze && state !== 'paused') throw new ContainerStateError(`container ${JSON.stringify(label)} is not paused`);
  const helper = await openRootHelper(vm, list, opts);
  try {
    const mounts = parseCgroupMounts(await helper.readFile('/proc/self/mountinfo', 1 << 20).then((b) => b.toString('utf8')));
    const method = pauseMethod(list, c, mounts);
    const pids = await setFrozen(vm, helper, list, c, method, freeze, opts.signal);
    return { id: c.id, container: label, method: method.kind, directory: 'dir' in method ? method.dir : undefined, pids, via: helper.target.tgid };
  } finally {
    await helper.end();
  }
}

/**
 * Pauses (or thaws) each container `specs` name, in one listing (batch.ts). A container named
 * twice is paused once: the second finds it in the state the first left it in.
 */
function pauseEach(vm: Vm, specs: readonly string[], freeze: boolean, opts: HelperOptions): Promise<BatchOutcome<PauseResult>[]> {
  const done = new Map<string, Container['state']>();
  return eachContainer(vm, specs, opts.signal, async (c, list) => {
    const r = await pauseFound(vm, list, c, done.get(c.id) ?? c.state, freeze, opts);
    done.set(c.id, freeze ? 'paused' : 'running');
    return r;
  });
}

/** Freezes the container (see the file comment for how). */
export async function pauseContainer(vm: Vm, spec: string, opts: HelperOptions = {}): Promise<PauseResult> {
  const list = await snapshot(vm, opts.signal);
  const c = findContainer(list, spec);
  return pauseFound(vm, list, c, c.state, true, opts);
}

/** Thaws a container paused by pauseContainer (or by its runtime). */
export async function unpauseContainer(vm: Vm, spec: string, opts: HelperOptions = {}): Promise<PauseResult> {
  const list = await snapshot(vm, opts.signal);
  const c = findContainer(list, spec);
  return pauseFound(vm, list, c, c.state, false, opts);
}

/** pauseContainer for each container `specs` name. */
export function pauseContainers(vm: Vm, specs: readonly string[], opts: HelperOptions = {}): Promise<BatchOutcome<PauseResult>[]> {
  return pauseEach(vm, specs, true, opts);
}

/** unpauseContainer for each container `specs` name. */
export function unpauseContainers(vm: Vm, specs: readonly string[], opts: HelperOptions = {}): Promise<BatchOutcome<PauseResult>[]> {
  return pauseEach(vm, specs, false, opts);
}
