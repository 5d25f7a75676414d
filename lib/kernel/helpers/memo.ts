/**
 * Results derived from guest memory, memoized on the Kernel (dropped with kernel.invalidate() when
 * the VM runs). The promise is kept, so concurrent callers asking for the same key share one
 * computation; a failure is forgotten so the next caller tries again (and gets its own error).
 */
import type { Kernel } from '../kernel';

export function memoized<K, V>(kernel: Kernel, table: string, key: K, compute: () => Promise<V>): Promise<V> {
  let m = kernel.cache.get(table) as Map<K, Promise<V>> | undefined;
  if (!m) kernel.cache.set(table, (m = new Map()));
  const hit = m.get(key);
  if (hit) return hit;
  const p = compute();
  m.set(key, p);
  p.catch(() => {
    if (m!.get(key) === p) m!.delete(key);
  });
  return p;
}
