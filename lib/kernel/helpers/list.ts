/**
 * Linux's circular doubly linked lists (`struct list_head`, include/linux/list.h), walked as the
 * kernel's scripts/gdb does it: every step checks `next->prev == cur` (allowing the one state a
 * list change caught half done leaves), and since the guest is untrusted, every walk also has a
 * cycle check and an upper bound.
 */
import { isFatalReadError, ValidationError } from '../../errors';
import type { CallOptions } from '../../util/deadline';
import type { Kernel } from '../kernel';
import { readU64LE } from '../../util/bytes';

export interface ListWalkOptions extends CallOptions {
  /** Most entries to yield before the walk fails (a corrupt list can be arbitrarily long). */
  max?: number;
  /** Called with a message for a recoverable corruption, after which the walk stops early. */
  onCorruption?: (err: ValidationError) => void;
  /**
   * When an entry is not cached yet, fetch this span around it (`before` bytes ahead of the
   * list_head, `length` in all: the part of the embedding struct a caller reads next) in the same
   * round trip, instead of the 16 bytes of the list_head alone. With `entries`, only for that
   * many entries (one more may be read only to learn that it exists).
   */
  fetchAround?: { before: number; length: number; entries?: number };
}

export const DEFAULT_LIST_MAX = 1_000_000;

/** `container_of(ptr, type, member)`: the struct that embeds `member` at `ptr`. */
export function containerOf(kernel: Kernel, ptr: bigint, type: string, member: string): bigint {
  return ptr - BigInt(kernel.profile.fieldOffset(type, member));
}

/**
 * `list_for_each(pos, head)`: yields the address of every `struct list_head` on the list whose head
 * is at `head` (struct list_head *), the head itself excluded.
 */
export async function* listForEach(kernel: Kernel, head: bigint, opts: ListWalkOptions = {}): AsyncGenerator<bigint> {
  const max = opts.max ?? DEFAULT_LIST_MAX;
  const seen = new Set<bigint>([head]);
  const fail = (msg: string, at: bigint) => {
    const err = new ValidationError(msg, at);
    if (opts.onCorruption) { opts.onCorruption(err); return; }
    throw err;
  };
  // A guest pointer into unmapped memory is corruption like any other (with onCorruption, a
  // warning and the part before it), but aborts, timeouts and lost connections are not.
  const unreadable = (err: unknown, at: bigint): void => {
    if (!opts.onCorruption || isFatalReadError(err)) throw err;
    fail(`list at 0x${head.toString(16)}: cannot read entry 0x${at.toString(16)}: ${(err as Error).message}`, at);
  };
  let prev = head;
  let cur: bigint;
  try {
    cur = await kernel.readU64(head, opts);
  } catch (err) {
    return unreadable(err, head);
  }
  for (let n = 0; cur !== head; n++) {
    if (n >= max) return fail(`list at 0x${head.toString(16)} has more than ${max} entries`, head);
    if (!kernel.isKernelPointer(cur)) return fail(`list at 0x${head.toString(16)}: bad next pointer 0x${cur.toString(16)}`, prev);
    if (seen.has(cur)) return fail(`list at 0x${head.toString(16)} loops back to 0x${cur.toString(16)} without reaching its head`, cur);
    seen.add(cur);
    let link = kernel.space.peek(cur, 16);
    if (!link) {
      try {
        const around = opts.fetchAround;
        if (around && (around.entries === undefined || n < around.entries)) {
          await kernel.prefetch([{ address: cur - BigInt(around.before), length: around.length }], opts);
          link = kernel.space.peek(cur, 16);
        }
        link ??= await kernel.space.read(cur, 16, opts);
      } catch (err) {
        return unreadable(err, cur);
      }
    }
    const next = readU64LE(link, 0);
    const back = readU64LE(link, 8);
    if (back !== prev && !(await linkInFlight(kernel, back, prev, opts))) return fail(`list corrupted: 0x${cur.toString(16)}->prev is 0x${back.toString(16)}, expected 0x${prev.toString(16)}`, cur);
    yield cur;
    prev = cur;
    cur = next;
  }
}

/**
 * Whether `cur->prev` pointing at `back` instead of at `prev` (the entry we came from) is a link
 * change caught half done: the VM stops between any two instructions, and both
 * `__list_del(prev, next)` (next->prev is written before prev->next) and `__list_add_rcu()` at the
 * front (prev->next is published before next->prev) leave `back->next == prev` for that moment.
 * Anything else is corruption.
 */
async function linkInFlight(kernel: Kernel, back: bigint, prev: bigint, opts: CallOptions): Promise<boolean> {
  if (!kernel.isKernelPointer(back)) return false;
  try {
    return (await kernel.readU64(back, opts)) === prev;
  } catch (err) {
    if (isFatalReadError(err)) throw err;
    return false;
  }
}

/**
 * The list_heads on the list at `head`, as listForEach() yields them, when every link is already
 * cached and the list is whole (each prev as expected, no loop, no bad pointer, at most `max`
 * entries) — without a promise; undefined otherwise, and the caller walks it with listForEach(),
 * which reads what is missing and reports what is wrong. A thousand tasks walked from the cache
 * cost more in async-generator steps than in anything else.
 */
export function listEntriesCached(kernel: Kernel, head: bigint, max = DEFAULT_LIST_MAX): bigint[] | undefined {
  const first = kernel.space.peek(head, 8, true);
  if (!first) return undefined;
  const seen = new Set<bigint>([head]);
  const out: bigint[] = [];
  let prev = head;
  let cur = readU64LE(first, 0);
  while (cur !== head) {
    if (out.length >= max || !kernel.isKernelPointer(cur) || seen.has(cur)) return undefined;
    seen.add(cur);
    const link = kernel.space.peek(cur, 16, true);
    if (!link) return undefined;
    const back = readU64LE(link, 8);
    if (back !== prev) {
      const before = kernel.isKernelPointer(back) ? kernel.space.peek(back, 8, true) : undefined;
      if (!before || readU64LE(before, 0) !== prev) return undefined;
    }
    out.push(cur);
    prev = cur;
    cur = readU64LE(link, 0);
  }
  return out;
}

/** `list_for_each_entry(pos, head, member)`: yields the address of every `type` on the list. */
export async function* listForEachEntry(kernel: Kernel, head: bigint, type: string, member: string, opts: ListWalkOptions = {}): AsyncGenerator<bigint> {
  const off = BigInt(kernel.profile.fieldOffset(type, member));
  for await (const node of listForEach(kernel, head, opts)) yield node - off;
}
