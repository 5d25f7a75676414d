/**
 * What both directions of `cp` share: options, the report of what was copied and what was not,
 * and opening the container process whose mount namespace and root the paths are resolved in.
 */
import type { Vm } from '../vm';
import { VmiError } from '../errors';
import { openInjection, InjectionError, type InjectionSession } from '../inject';
import { GuestFs } from './guest-fs';
import { ContainerStateError } from './errors';
import { containerLabel, findContainer, snapshot } from './snapshot';

/** Bytes per injected read or write (through the session's scratch mapping). */
export const CHUNK = 1 << 20;
/** Deepest directory nesting copied. */
export const MAX_DEPTH = 128;
/** Most entries of a tree copied in all. */
export const MAX_ENTRIES = 1_000_000;
/** Most skipped and failed entries a report lists each; the others are counted in `dropped`. */
export const MAX_REPORTED = 1000;
/** Most bytes read from a file whose fstat size is 0 (procfs, sysfs: the size is not known). */
export const UNSIZED_FILE_MAX = 16 * 1024 * 1024;

export interface CopyOptions {
  /** Keep uid/gid (docker's -a): into a container as far as its process may chown, out of one when vmictl is root. */
  archive?: boolean;
  /** Follow a symlink named as the source (docker's -L); else it is copied as a symlink. */
  followLink?: boolean;
  /** With `-`: the bytes of one file rather than a tar stream. */
  raw?: boolean;
  /** Out of a container: replace existing local files. */
  force?: boolean;
  /** Called after each chunk with the bytes copied so far (and the total when known). */
  onProgress?: (bytes: number, total?: number) => void;
  /** Out of a container: most bytes copied in all (each file is bounded by its fstat size anyway). */
  maxBytes?: number;
  /** How long to wait for a thread of the container, ms (default 20 000). */
  timeout?: number;
  callTimeout?: number;
  signal?: AbortSignal;
  journal?: string | false;
}

export interface CopyReport {
  files: number;
  directories: number;
  symlinks: number;
  bytes: number;
  /** Entries not copied on purpose (devices, fifos, sockets, unsafe names), with why. */
  skipped: { path: string; reason: string }[];
  /** Entries that failed (permission, a local name that exists). */
  errors: { path: string; reason: string }[];
  /** Skipped and failed entries beyond MAX_REPORTED, counted but not listed. */
  dropped: { skipped: number; errors: number };
  /** Whether guest paths were resolved with openat2(RESOLVE_IN_ROOT). */
  resolvedInRoot?: boolean;
  /** The host pid of the container process the copy ran in. */
  via?: number;
}

export function emptyReport(): CopyReport {
  return { files: 0, directories: 0, symlinks: 0, bytes: 0, skipped: [], errors: [], dropped: { skipped: 0, errors: 0 } };
}

/** Adds an entry to the report's `skipped` or `errors`, or, past MAX_REPORTED, counts it. */
export function noteEntry(report: CopyReport, list: 'skipped' | 'errors', path: string, reason: string): void {
  if (report[list].length < MAX_REPORTED) report[list].push({ path, reason });
  else report.dropped[list]++;
}

/**
 * Runs `work` with a GuestFs in a process of the container; every fd it opened is closed and the
 * process restored afterwards, whatever happens.
 */
export async function inContainer<T>(vm: Vm, container: string, opts: CopyOptions, work: (fs: GuestFs, s: InjectionSession) => Promise<T>): Promise<T> {
  // a frozen container cannot run the copy, and waking it (freeze then thaw) would unpause it
  const c = findContainer(await snapshot(vm, opts.signal), container);
  if (c.state === 'paused') throw new ContainerStateError(`container ${JSON.stringify(containerLabel(c))} is paused: unpause it to copy (its processes do the copy)`);
  // the caller's signal stops the catch; once caught, GuestFs heeds it between calls, so that an
  // abort still closes every fd opened in the container before the session ends
  const opening = new AbortController();
  const follow = () => opening.abort(opts.signal?.reason);
  if (opts.signal?.aborted) follow();
  opts.signal?.addEventListener('abort', follow, { once: true });
  let s: InjectionSession;
  try {
    s = await openInjection(vm, { container: c.id }, { timeout: opts.timeout ?? 20_000, callTimeout: opts.callTimeout, signal: opening.signal, journal: opts.journal, wake: 'freeze' });
  } finally {
    opts.signal?.removeEventListener('abort', follow);
  }
  const fs = new GuestFs(s, { signal: opts.signal });
  let failure: unknown;
  try {
    return await work(fs, s);
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    let closeError: unknown;
    if (!s.closed) await fs.closeAll().catch((e) => { closeError = e; });
    await s.end().catch((e) => { closeError ??= e; });
    if (closeError && !failure) throw closeError instanceof InjectionError ? closeError : new InjectionError(`ending the copy: ${(closeError as Error).message}`, s.leftState ?? 'unknown', { cause: closeError });
  }
}

/** Whether an error concerns one entry (go on with the next) rather than the engine failing. */
export function isPerEntry(err: unknown): boolean {
  if (err instanceof InjectionError) return false;
  const e = err as { code?: string; syscall?: string };
  if (e?.code === 'ESYSCALL' || e?.code === 'EEXIST' || e?.code === 'EBADDIRENT' || e?.code === 'ENAMETOOLONG' || e?.code === 'EGREW') return true;
  // a local file system error (Node's carry the syscall that failed)
  return typeof e?.syscall === 'string' && !(err instanceof VmiError);
}
