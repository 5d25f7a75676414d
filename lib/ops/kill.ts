/**
 * kill and stop, with docker's meaning: `kill` sends a signal (SIGKILL by default) to the
 * container's init, or to every process with `all` (always so for SIGKILL: a container without a
 * pid namespace of its own does not end with its init); `stop` sends SIGTERM to the init, waits
 * for the grace period, then SIGKILL to whatever of the container is left. The signals come from
 * a root-namespace root process (signal.ts: only processes listed in the container are reached),
 * and the result is checked on a fresh task list: which of the container's processes remain.
 */
import type { Vm } from '../vm';
import type { Container, ProcessInfo } from '../containers/model';
import { openRootHelper, type HelperOptions } from './helper';
import { signalProcesses, type SignalOutcome } from './signal';
import { parseSignal, SIGNALS, type Signal } from './signals';
import { containerLabel, findContainer, snapshot, stillAlive } from './snapshot';
import { eachContainer, type BatchOutcome } from './batch';

/** How often the task list is read again while waiting for processes to end, ms. */
const POLL_MS = 500;

export interface KillOptions extends HelperOptions {
  /** Name or number (default SIGKILL). */
  signalName?: string | number;
  /** Every process of the container, not only its init. */
  all?: boolean;
  /** How long to wait for the signalled processes to end, ms (SIGKILL only; default 10 000). */
  waitMs?: number;
}

export interface KillResult {
  /** the container's id, as the listing has it */
  id: string;
  container: string;
  signal: Signal;
  outcome: SignalOutcome;
  /** Host pids of the container's processes still alive when the result was taken. */
  remaining: number[];
}

export interface StopOptions extends HelperOptions {
  /** Grace period between SIGTERM and SIGKILL, ms (default 10 000). */
  graceMs?: number;
  /** How long to wait after SIGKILL, ms (default 10 000). */
  waitMs?: number;
}

export interface StopResult {
  id: string;
  container: string;
  /** Whether the container ended on SIGTERM within the grace period. */
  endedOnTerm: boolean;
  term: SignalOutcome;
  kill?: SignalOutcome;
  remaining: number[];
}

function userProcesses(c: Container): ProcessInfo[] {
  const live = c.processes.filter((p) => !p.kernelThread && p.state !== 'Z' && p.state !== 'X');
  // the init first: once it is gone a pid namespace takes the rest with it
  return [...live.filter((p) => p.pid === c.initPid), ...live.filter((p) => p.pid !== c.initPid)];
}

async function send(vm: Vm, c: Container, targets: ProcessInfo[], sig: number, opts: HelperOptions): Promise<SignalOutcome> {
  if (targets.length === 0) return { signalled: [], gone: [], failed: [] };
  const list = await snapshot(vm, opts.signal);
  const helper = await openRootHelper(vm, list, opts);
  try {
    return await signalProcesses(vm, helper, c, targets, sig, opts.signal);
  } finally {
    await helper.end();
  }
}

/** Waits until none of `procs` lives, or `ms` passed; returns those still alive. */
async function waitGone(vm: Vm, procs: readonly ProcessInfo[], ms: number, signal?: AbortSignal): Promise<ProcessInfo[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const alive = stillAlive(await snapshot(vm, signal), procs);
    if (alive.length === 0 || Date.now() >= deadline) return alive;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

export async function killContainer(vm: Vm, spec: string, opts: KillOptions = {}): Promise<KillResult> {
  return killFound(vm, findContainer(await snapshot(vm, opts.signal), spec), opts);
}

/** kill of each container `specs` name, in one listing (batch.ts). */
export function killContainers(vm: Vm, specs: readonly string[], opts: KillOptions = {}): Promise<BatchOutcome<KillResult>[]> {
  parseSignal(opts.signalName ?? 'SIGKILL');
  return eachContainer(vm, specs, opts.signal, (c) => killFound(vm, c, opts));
}

async function killFound(vm: Vm, c: Container, opts: KillOptions): Promise<KillResult> {
  const sig = parseSignal(opts.signalName ?? 'SIGKILL');
  const procs = userProcesses(c);
  const everyone = opts.all || sig.number === SIGNALS.SIGKILL;
  const targets = everyone ? procs : procs.filter((p) => p.pid === c.initPid);
  const outcome = await send(vm, c, targets, sig.number, opts);
  const alive = sig.number === SIGNALS.SIGKILL ? await waitGone(vm, targets, opts.waitMs ?? 10_000, opts.signal) : stillAlive(await snapshot(vm, opts.signal), procs);
  return { id: c.id, container: containerLabel(c), signal: sig, outcome, remaining: alive.map((p) => p.pid) };
}

export async function stopContainer(vm: Vm, spec: string, opts: StopOptions = {}): Promise<StopResult> {
  return stopFound(vm, findContainer(await snapshot(vm, opts.signal), spec), opts);
}

/** stop of each container `specs` name, in one listing (batch.ts). */
export function stopContainers(vm: Vm, specs: readonly string[], opts: StopOptions = {}): Promise<BatchOutcome<StopResult>[]> {
  return eachContainer(vm, specs, opts.signal, (c) => stopFound(vm, c, opts));
}

async function stopFound(vm: Vm, c: Container, opts: StopOptions): Promise<StopResult> {
  const procs = userProcesses(c);
  const term = await send(vm, c, procs.filter((p) => p.pid === c.initPid), SIGNALS.SIGTERM, opts);
  let alive = await waitGone(vm, procs, opts.graceMs ?? 10_000, opts.signal);
  if (alive.length === 0) return { id: c.id, container: containerLabel(c), endedOnTerm: true, term, remaining: [] };
  const kill = await send(vm, c, alive, SIGNALS.SIGKILL, opts);
  alive = await waitGone(vm, alive, opts.waitMs ?? 10_000, opts.signal);
  return { id: c.id, container: containerLabel(c), endedOnTerm: false, term, kill, remaining: alive.map((p) => p.pid) };
}
