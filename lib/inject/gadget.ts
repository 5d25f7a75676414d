/**
 * A `syscall; ret` gadget (0f 05 c3) in the target's own code, for catching injected calls by a
 * read watchpoint instead of a breakpoint (see InjectionSession): the `ret` reads a stack slot
 * holding R, so the thread stops at R right after the call, through an 8-byte watchpoint that no
 * other process touches. Libc and static binaries have such bytes in their syscall wrappers
 * (`mov eax, N; syscall; ret`). The bytes need not be an instruction of the program's own stream:
 * jumped to directly, they decode as `syscall` then `ret`.
 */
import { PageFaultError } from '../errors';
import type { AddressSpace } from '../memory/address-space';
import type { CallOptions } from '../util/deadline';

export const SYSCALL_RET = Buffer.from([0x0f, 0x05, 0xc3]);

/** Watchpoint mode: the slot holding R that the gadget's `ret` reads, just below the call's stack pointer. */
export function watchSlotOf(callSp: bigint): bigint {
  return callSp - 8n;
}
const PAGE = 4096n;
/** Pages looked at on each side of the return address's page (code near it is its own library's). */
export const GADGET_SEARCH_PAGES = 16;

/**
 * The address of a `syscall; ret` in a present, user, executable page near `near` (its page first,
 * then outwards), or undefined. Pages that are not present or not executable are skipped, never
 * faulted in.
 */
export async function findSyscallRet(space: AddressSpace, near: bigint, opts: CallOptions = {}): Promise<bigint | undefined> {
  const home = near & ~(PAGE - 1n);
  for (let d = 0; d <= GADGET_SEARCH_PAGES; d++) {
    for (const page of d === 0 ? [home] : [home - BigInt(d) * PAGE, home + BigInt(d) * PAGE]) {
      if (page < 0n) continue;
      const at = await searchPage(space, page, opts);
      if (at !== undefined) return at;
    }
  }
  return undefined;
}

async function searchPage(space: AddressSpace, page: bigint, opts: CallOptions): Promise<bigint | undefined> {
  let code: Buffer;
  try {
    const t = await space.translate(page, opts);
    if (!t.user || t.nx) return undefined;
    code = await space.read(page, Number(PAGE), opts);
  } catch (err) {
    if (err instanceof PageFaultError) return undefined;
    throw err;
  }
  const i = code.indexOf(SYSCALL_RET);
  return i < 0 ? undefined : page + BigInt(i);
}
