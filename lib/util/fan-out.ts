/**
 * One internal abort signal standing for a caller's, for work that hands it to many concurrent
 * reads: each of them listens to it, and Node warns of a leak past ten listeners on one signal.
 * The caller's signal keeps a single listener, removed by release().
 */
import { setMaxListeners } from 'node:events';

export interface FannedSignal {
  signal: AbortSignal;
  /** Stops following the caller's signal (call once the work is over). */
  release(): void;
}

export function fanOutSignal(outer: AbortSignal | undefined): FannedSignal {
  const inner = new AbortController();
  setMaxListeners(0, inner.signal);
  const onAbort = () => inner.abort(outer?.reason);
  if (outer?.aborted) onAbort();
  else outer?.addEventListener('abort', onAbort, { once: true });
  return { signal: inner.signal, release: () => outer?.removeEventListener('abort', onAbort) };
}
