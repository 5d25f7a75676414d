/**
 * Output of pause, unpause, kill and stop, which take several containers: each success prints the
 * container as it was given (as docker does), each failure a line on stderr; with --json, an
 * array with one object per container given, in that order, carrying its outcome. `id` is the one
 * `ps --json` prints, so scripts can join the two; `name` is what messages call it (the runtime's
 * name, else its hostname, else its short id).
 */
import type { BatchOutcome, KillResult, PauseResult, SignalOutcome, StopResult } from '../../lib/ops';
import { containerLabel } from '../../lib/ops';
import type { Signal } from '../../lib/ops';
import { escapeForTerminal } from '../../lib/util/escape';
import { errorCode, errorText } from './errors';
import { jsonText } from './json';

export interface ErrorJson {
  /** vmictl's error code (ENOCONTAINER, EAMBIGUOUS, ESTATE…) or the system's */
  code: string;
  message: string;
}

/** What every element of these arrays has. */
export interface ContainerOutcomeJson {
  /** the container as given on the command line */
  container: string;
  /** the id `ps --json` prints; absent when the container was not found */
  id?: string;
  name?: string;
  /** it was done: no error, and (kill 9, stop) none of its processes is left */
  ok: boolean;
  error?: ErrorJson;
}

export interface SignalOutcomeJson {
  signalled: number[];
  gone: number[];
  failed: { pid: number; reason: string }[];
  via?: number;
}

export interface KillJson extends ContainerOutcomeJson {
  signal?: Signal;
  outcome?: SignalOutcomeJson;
  /** host pids of its processes still alive afterwards */
  remaining?: number[];
}

export interface StopJson extends ContainerOutcomeJson {
  endedOnTerm?: boolean;
  term?: SignalOutcomeJson;
  kill?: SignalOutcomeJson;
  remaining?: number[];
}

export interface PauseJson extends ContainerOutcomeJson {
  method?: PauseResult['method'];
  directory?: string;
  pids?: number[];
  via?: number;
}

function signalOutcomeJson(o: SignalOutcome): SignalOutcomeJson {
  return { signalled: [...o.signalled], gone: [...o.gone], failed: o.failed.map((f) => ({ pid: f.pid, reason: f.reason })), ...(o.via !== undefined ? { via: o.via } : {}) };
}

function killFailure(r: KillResult): string | undefined {
  const parts: string[] = [];
  if (r.outcome.failed.length) parts.push(`${r.signal.name} failed for ${r.outcome.failed.map((f) => `pid ${f.pid} (${f.reason})`).join(', ')}`);
  if (r.signal.number === 9 && r.remaining.length) parts.push(`still running: pids ${r.remaining.join(', ')}`);
  return parts.length ? parts.join('; ') : undefined;
}

function stopFailure(r: StopResult): string | undefined {
  return r.remaining.length ? `still running: pids ${r.remaining.join(', ')}` : undefined;
}

/** How each verb's result reads: its JSON fields and, when it did not succeed, why. */
interface Verb<T> {
  fields(r: T): object;
  failure(r: T): string | undefined;
}

export const KILL: Verb<KillResult> = {
  fields: (r) => ({ signal: { name: r.signal.name, number: r.signal.number }, outcome: signalOutcomeJson(r.outcome), remaining: [...r.remaining] }),
  failure: killFailure,
};

export const STOP: Verb<StopResult> = {
  fields: (r) => ({ endedOnTerm: r.endedOnTerm, term: signalOutcomeJson(r.term), ...(r.kill ? { kill: signalOutcomeJson(r.kill) } : {}), remaining: [...r.remaining] }),
  failure: stopFailure,
};

export const PAUSE: Verb<PauseResult> = {
  fields: (r) => ({ method: r.method, ...(r.directory !== undefined ? { directory: r.directory } : {}), ...(r.pids ? { pids: [...r.pids] } : {}), via: r.via }),
  failure: () => undefined,
};

function outcomeJson<T>(o: BatchOutcome<T>, verb: Verb<T>): ContainerOutcomeJson {
  const base = { container: o.spec, ...(o.container ? { id: o.container.id, name: containerLabel(o.container) } : {}) };
  if ('error' in o) return { ...base, ok: false, error: { code: errorCode(o.error), message: errorText(o.error) } };
  const failure = verb.failure(o.result);
  return { ...base, ok: failure === undefined, ...(failure !== undefined ? { error: { code: 'EINCOMPLETE', message: failure } } : {}), ...verb.fields(o.result) };
}

/** Builds the per-container JSON of a batch (the array `--json` prints). */
export function outcomesJson<T>(outcomes: readonly BatchOutcome<T>[], verb: Verb<T>): ContainerOutcomeJson[] {
  return outcomes.map((o) => outcomeJson(o, verb));
}

/** What to print for a batch, and whether any container failed (exit status 1). */
export function renderOutcomes<T>(outcomes: readonly BatchOutcome<T>[], verb: Verb<T>, json: boolean): { stdout: string; stderr: string; failed: boolean } {
  const list = outcomesJson(outcomes, verb);
  let stdout = json ? `${jsonText(list)}\n` : '';
  let stderr = '';
  for (const o of list) {
    if (o.ok) {
      if (!json) stdout += `${escapeForTerminal(o.container)}\n`;
    } else {
      const why = o.error!.message;
      // a message of vmictl's own names the container already; a result that fell short does not
      stderr += `vmictl: ${escapeForTerminal(o.error!.code === 'EINCOMPLETE' ? `${o.container}: ${why}` : why)}\n`;
    }
  }
  return { stdout, stderr, failed: list.some((o) => !o.ok) };
}
