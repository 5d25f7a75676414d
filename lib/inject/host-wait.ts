/**
 * Waiting on the host (stdin, a consumer of stdout) while a thread is held: the VM must not stay
 * stopped for it. When the host's work is not done at once, the held thread sleeps in
 * poll(NULL, 0, slice), a harmless blocking call of its own, while the VM runs, and is caught
 * again after each slice until the work is done. A sleeping thread costs no vCPU and nothing
 * else of the guest notices.
 */
import { errnoOf } from './errno';

/** How long a wait on the host may keep the VM stopped before the thread is put to sleep (ms). */
export const HOST_WAIT_GRACE_MS = 2;
/** One sleep of the thread while the host is waited for (ms): the most a ready host then waits. */
export const HOST_WAIT_SLICE_MS = 100;
const EINTR = 4;

/**
 * Resolves with `work`'s value once it is done; `sleep(ms)` runs poll(NULL, 0, ms) in the held
 * thread (the raw result, −errno). A thread whose filter refuses poll cannot sleep: `onRefused`
 * is told, and the VM waits stopped. `open()` says whether the thread can still be used.
 */
export async function whileHostWorks<T>(
  work: Promise<T> | T,
  sleep: (ms: bigint) => Promise<bigint>,
  opts: { open?: () => boolean; onRefused?: (errno: number) => void } = {},
): Promise<T> {
  const p = Promise.resolve(work);
  let settled = false;
  const done = p.then(() => { settled = true; }, () => { settled = true; });
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([done, new Promise<void>((r) => { timer = setTimeout(r, HOST_WAIT_GRACE_MS); })]);
  clearTimeout(timer);
  while (!settled && (opts.open?.() ?? true)) {
    const errno = errnoOf(await sleep(BigInt(HOST_WAIT_SLICE_MS)));
    if (errno && errno !== EINTR) {
      opts.onRefused?.(errno);
      await done;
    }
  }
  return p;
}
