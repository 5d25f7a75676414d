import { AbortError, TimeoutError } from '../errors';

export interface CallOptions {
  /** Milliseconds before the call fails with a TimeoutError. */
  timeout?: number;
  /** Aborting fails the call with an AbortError. */
  signal?: AbortSignal;
}

/**
 * Races `work` against a timeout and an AbortSignal. `onCancel` runs when the timeout or the abort
 * wins, so the caller can forget the pending request. The timer never keeps the process alive.
 */
export function withDeadline<T>(
  operation: string,
  work: Promise<T>,
  opts: CallOptions & { onCancel?: (err: Error) => void } = {},
): Promise<T> {
  const { timeout, signal, onCancel } = opts;
  if (signal?.aborted) {
    const err = new AbortError(operation, { cause: signal.reason });
    onCancel?.(err);
    work.catch(() => undefined);
    return Promise.reject(err);
  }
  if (timeout === undefined && signal === undefined) return work;
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const cleanup = () => {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    const cancel = (err: Error) => {
      cleanup();
      onCancel?.(err);
      reject(err);
    };
    const onAbort = () => cancel(new AbortError(operation, { cause: signal?.reason }));
    if (timeout !== undefined && Number.isFinite(timeout)) {
      timer = setTimeout(() => cancel(new TimeoutError(operation, timeout)), timeout);
      timer.unref();
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => { cleanup(); resolve(v); },
      (e) => { cleanup(); reject(e); },
    );
  });
}

/** Resolves after `ms`, or rejects with an AbortError when `signal` fires first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return withDeadline('sleep', new Promise<void>((resolve) => setTimeout(resolve, ms).unref()), { signal });
}
