/**
 * Guest-physical memory for the injection engine: reads through the VM's page cache (the fastest
 * backend it has), writes through a path that keeps QEMU coherent. The local /proc/<pid>/mem fast
 * path is read-only on purpose (a write there bypasses TCG's translated-code invalidation), so
 * writes go through the gdbstub's `M` packet in physical mode (QEMU's cpu_physical_memory_write,
 * which does invalidate), with the stub's previous mode put back afterwards. Every write drops the
 * page cache, so nothing stale is read back.
 */
import type { CallOptions } from '../util/deadline';
import type { PageCache } from '../memory/page-cache';
import type { PhysicalMemory, PhysicalRange } from '../memory/physical';
import type { GdbClient } from '../transport/gdb';
import { AddressSpace } from '../memory/address-space';
import type { Kernel } from '../kernel/kernel';

/** A virtual address space over `memory` rooted at the physical page table `root`. */
export function spaceAt(kernel: Kernel, memory: PhysicalMemory, root: bigint, name: string): AddressSpace {
  return AddressSpace.fromCr3(memory, root, { format: kernel.layout.format, keepKptiBit: true, name });
}

export class InjectionMemory implements PhysicalMemory {
  readonly name: string;
  readonly #cache: PageCache;
  readonly #gdb: GdbClient;
  /** Whether the cache's own backend can write (the gdbstub backend can). */
  readonly #direct: boolean;

  constructor(cache: PageCache, gdb: GdbClient) {
    this.#cache = cache;
    this.#gdb = gdb;
    this.#direct = typeof cache.backend.write === 'function' && cache.backend.name === 'gdbstub';
    this.name = `${cache.name} (writes through the gdbstub)`;
  }

  get generation(): number {
    return this.#cache.generation;
  }

  read(address: bigint, length: number, opts?: CallOptions): Promise<Buffer> {
    return this.#cache.read(address, length, opts);
  }

  readRanges(ranges: readonly PhysicalRange[], opts?: CallOptions): Promise<Buffer[]> {
    return this.#cache.readRanges(ranges, opts);
  }

  async write(address: bigint, data: Buffer, opts?: CallOptions): Promise<void> {
    if (data.length === 0) return;
    if (this.#direct) return this.#cache.write(address, data, opts);
    const wasPhysical = this.#gdb.physicalMemoryMode === true;
    try {
      if (!wasPhysical) await this.#gdb.setPhysicalMemoryMode(true, opts);
      await this.#gdb.writeMemory(address, data, opts);
    } finally {
      this.#cache.invalidate();
      if (!wasPhysical) await this.#gdb.setPhysicalMemoryMode(false, opts);
    }
  }
}
