/**
 * Per-CPU variables in the three ways a kernel links them, told apart by where the symbol lies:
 * zero-based offsets (x86-64 up to 6.14), kernel addresses inside [__per_cpu_start, __per_cpu_end)
 * (7.x), and no per-CPU section at all (!SMP).
 */
import t from 'tap';
import type { Kernel } from '../../lib/kernel/kernel';
import { perCpuAddress, perCpuSlot } from '../../lib/kernel/helpers/percpu';

const SLIDE = 0x34600000n;

/** What perCpuSlot reads of a kernel: its profile's link-time symbols and their runtime addresses. */
function kernelWith(link: Record<string, bigint>): Kernel {
  const profile = {
    symbol: (n: string) => { const v = link[n]; if (v === undefined) throw new Error(`no ${n}`); return v; },
    hasSymbol: (n: string) => n in link,
  };
  return { profile, symbol: (n: string) => profile.symbol(n) + SLIDE } as unknown as Kernel;
}

t.test('zero-based: the symbol is an offset KASLR does not move', async (t) => {
  const k = kernelWith({ current_task: 0x1ea40n, __per_cpu_start: 0n, __per_cpu_end: 0x2c000n });
  const slot = perCpuSlot(k, 'current_task');
  t.same(slot, { offset: 0x1ea40n, absolute: false });
  t.equal(perCpuAddress(slot, 0xffff88801fa00000n), 0xffff88801fa1ea40n, 'the CPU\'s base plus the offset');
});

t.test('linked at kernel addresses (7.x): the slid address, added to the base modulo 2^64', async (t) => {
  const k = kernelWith({ current_task: 0xffffffff83dbd018n, __per_cpu_start: 0xffffffff83da5000n, __per_cpu_end: 0xffffffff83dda000n });
  const slot = perCpuSlot(k, 'current_task');
  t.same(slot, { offset: 0xffffffff83dbd018n + SLIDE, absolute: false });
  // the base is the CPU's area minus the (slid) __per_cpu_start: it wraps around
  const area = 0xffff88801fa00000n;
  const base = BigInt.asUintN(64, area - (0xffffffff83da5000n + SLIDE));
  t.equal(perCpuAddress(slot, base), area + 0x18018n, 'the copy inside the CPU\'s area');
  t.same(perCpuSlot(k, 'current_task', 8n).offset, slot.offset + 8n, 'a field inside the variable');
});

t.test('no per-CPU section: the variable is its only copy', async (t) => {
  const k = kernelWith({ current_task: 0xffffffff82a1b000n, __per_cpu_start: 0xffffffff83000000n, __per_cpu_end: 0xffffffff83000000n });
  const slot = perCpuSlot(k, 'current_task');
  t.same(slot, { offset: 0xffffffff82a1b000n + SLIDE, absolute: true });
  t.equal(perCpuAddress(slot, 0xffff88801fa00000n), 0xffffffff82a1b000n + SLIDE, 'the base does not matter');
});
