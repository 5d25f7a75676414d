/**
 * Where a driven thread's memory arguments go (lib/inject/scratch.ts), over a recorded address
 * space and a fake syscall: the stack area when they fit, else a mapping made by mmap (never of
 * 0 bytes, which the kernel refuses), grown by remapping, and none at all for a call with no
 * memory argument, as `vmictl syscall C pause` into a multi-threaded process (no stack area) is.
 */
import t from 'tap';
import type { AddressSpace } from '../../lib/memory/address-space';
import { MAP_STEP, Scratch, type ScratchMapping } from '../../lib/inject/scratch';
import { SYSCALLS_X86_64 } from '../../lib/inject/syscalls';

function setup() {
  const writes: [bigint, Buffer][] = [];
  const calls: [number, readonly bigint[]][] = [];
  const mappings: (ScratchMapping | undefined)[] = [];
  let next = 0x7f0000000000n;
  const space = {
    write: async (va: bigint, data: Buffer) => { writes.push([va, Buffer.from(data)]); },
    read: async (_va: bigint, n: number) => Buffer.alloc(n),
    invalidate: () => undefined,
  } as unknown as AddressSpace;
  const call = async (nr: number, args: readonly bigint[]) => {
    calls.push([nr, args]);
    if (nr === SYSCALLS_X86_64.mmap) {
      if (args[1] === 0n) return -22n;
      const at = next;
      next += 0x100000n;
      return at;
    }
    return 0n;
  };
  const scratch = new Scratch(space, call, { onMapping: (m) => mappings.push(m && { ...m }) });
  return { scratch, writes, calls, mappings };
}

t.test('no memory argument: no mapping, no call', async (t) => {
  const { scratch, calls } = setup();
  t.same(await scratch.place([]), []);
  t.same(calls, [], 'nothing injected');
  t.equal(scratch.mapping, undefined);
});

t.test('without a stack area: a mapping of at least one step, grown by remapping', async (t) => {
  const { scratch, calls, writes, mappings } = setup();
  const [a, b] = await scratch.place([{ size: 3, data: Buffer.from('abc') }, { size: 0 }]);
  t.equal(calls.length, 1, 'one mmap');
  t.equal(calls[0][0], SYSCALLS_X86_64.mmap);
  t.equal(calls[0][1][1], BigInt(MAP_STEP), `of ${MAP_STEP} bytes`);
  t.equal(a, 0x7f0000000000n, 'the first buffer at the mapping');
  t.equal(b, a + 16n, 'the next one 16-byte aligned after it');
  t.same(writes, [[a, Buffer.from('abc')]], 'only the data given is written');
  await scratch.place([{ size: MAP_STEP + 1 }]);
  t.same(calls.slice(1).map((c) => c[0]), [SYSCALLS_X86_64.munmap, SYSCALLS_X86_64.mmap], 'a larger one unmaps and maps again');
  t.equal(calls[2][1][1], BigInt(2 * MAP_STEP), 'in whole steps');
  t.same(mappings.map((m) => m?.length), [MAP_STEP, undefined, 2 * MAP_STEP], 'every change is told (the journal keeps it)');
  await scratch.unmap();
  t.equal(scratch.mapping, undefined, 'unmapped at the end');
});

t.test('a stack area takes what fits, the mapping the rest', async (t) => {
  const { scratch, calls } = setup();
  scratch.useStack(0x7ffd00000000n, 0x7ffd00000100n);
  t.same(await scratch.place([{ size: 100 }, { size: 100 }]), [0x7ffd00000000n, 0x7ffd00000070n], 'both in the stack area');
  t.same(calls, [], 'without a call');
  t.same(scratch.areas(), [[0x7ffd00000000n, 0x100]]);
  const [big] = await scratch.place([{ size: 0x101 }]);
  t.equal(big, 0x7f0000000000n, 'too large for it: in a mapping');
  t.equal(scratch.areas().length, 2, 'both areas are then in use');
});
