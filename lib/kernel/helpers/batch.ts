/**
 * Reads many structs of one type at once, each distinct address once, through one batched read
 * (pipelined below). Guest pointers are untrusted: one bad address must not sink the batch, so on
 * failure the batch is retried address by address and each bad one gets its own error.
 */
import { isFatalReadError, ValidationError } from '../../errors';
import type { CallOptions } from '../../util/deadline';
import type { Kernel } from '../kernel';
import type { KObject } from '../object';

export type StructMap = Map<bigint, KObject | Error>;

/**
 * Reads `type` at every address (or its prefix up to field `upTo`, or `size` bytes); null and bogus
 * pointers get an error. With `spans` (within `size`), a struct whose spans are cached is taken
 * from the cache as those spans alone; the others are read whole.
 */
export async function readStructs(
  kernel: Kernel, type: string, addresses: Iterable<bigint>,
  opts: CallOptions & { upTo?: string; size?: number; spans?: ReadonlyArray<readonly [number, number]> } = {},
): Promise<StructMap> {
  let size = opts.size ?? kernel.profile.typeSize(type);
  if (opts.upTo) {
    const f = kernel.profile.field(type, opts.upTo);
    size = f.offset + f.size;
  }
  const out: StructMap = new Map();
  const good: bigint[] = [];
  const list = [...addresses];
  // the spans of every struct in one block, not an allocation each (thousands of task_structs)
  const arena = opts.spans ? Buffer.allocUnsafeSlow(size * list.length) : undefined;
  let used = 0;
  for (const a of list) {
    if (out.has(a)) continue;
    if (!kernel.isKernelPointer(a)) { out.set(a, new ValidationError(`bad ${type} pointer 0x${a.toString(16)}`, a)); continue; }
    // already cached (a stage fetched it): no batch needed
    const hit = arena ? kernel.peekSpans(type, a, opts.spans!, arena.subarray(used, used + size)) : kernel.peek(type, a, { size });
    if (hit && arena) used += size;
    if (hit) out.set(a, hit);
    else { out.set(a, new ValidationError('pending')); good.push(a); }
  }
  if (good.length === 0) return out;
  try {
    const objs = await kernel.readMany(type, good, { ...opts, size });
    objs.forEach((o) => out.set(o.address, o));
  } catch (err) {
    if (isFatalReadError(err)) throw err;
    for (const a of good) {
      try {
        out.set(a, await kernel.read(type, a, { ...opts, size }));
      } catch (e) {
        if (isFatalReadError(e)) throw e;
        out.set(a, e as Error);
      }
    }
  }
  return out;
}

/** The object at `address` in `map`, or undefined (with the reason pushed to `warnings`). */
export function objectAt(map: StructMap, address: bigint, what: string, warnings?: string[]): KObject | undefined {
  const o = map.get(address);
  if (o === undefined || o instanceof Error) {
    warnings?.push(`${what}: ${o instanceof Error ? o.message : 'not read'}`);
    return undefined;
  }
  return o;
}
