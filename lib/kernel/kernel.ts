/**
 * The guest kernel as a program (drgn's Program): its profile, where KASLR put it, its own address
 * space, and caches of derived tables. Kernel helpers are free functions taking a Kernel.
 */
import { ValidationError } from '../errors';
import type { CallOptions } from '../util/deadline';
import type { PhysicalMemory, PhysicalRange } from '../memory/physical';
import { AddressSpace } from '../memory/address-space';
import { pagingFormatForLevels } from '../memory/x86-64/paging-format';
import { findKaslr, type KaslrResult } from './kaslr';
import { readKernelLayout, type KernelLayout } from './layout';
import { KObject } from './object';
import type { Profile } from './profile';

export interface OpenKernelOptions extends CallOptions {
  /** Guest RAM ranges, to bound the search for the kernel image. */
  ram?: readonly PhysicalRange[];
}

export class Kernel {
  /** Tables derived from memory, valid while the VM stays stopped (helpers key them by topic). */
  readonly cache = new Map<string, unknown>();

  private constructor(
    readonly profile: Profile,
    readonly physical: PhysicalMemory,
    readonly kaslr: KaslrResult,
    /** The kernel's own address space, from init_top_pgt (never a process's CR3). */
    readonly space: AddressSpace,
    /** Its address ranges (user top, direct map, vmalloc, vmemmap), read once at open. */
    readonly layout: KernelLayout,
  ) {}

  /** Finds the kernel in `physical` with `profile`, and checks the result on init_task. */
  static async open(physical: PhysicalMemory, profile: Profile, opts: OpenKernelOptions = {}): Promise<Kernel> {
    const kaslr = await findKaslr(physical, profile, { ...opts, expectBanner: profile.banner });
    const space = AddressSpace.fromCr3(physical, kaslr.pageTableRoot, {
      format: pagingFormatForLevels(kaslr.pagingLevels),
      keepKptiBit: true,
      name: 'kernel',
    });
    const layout = await readKernelLayout({
      hasSymbol: (n) => profile.hasSymbol(n),
      symbol: (n) => profile.symbol(n) + kaslr.virtualSlide,
      readU64: (a, o) => space.readU64(a, o),
      pageStructSize: profile.hasType('page') ? profile.typeSize('page') : undefined,
    }, kaslr.pagingLevels, opts);
    const kernel = new Kernel(profile, physical, kaslr, space, layout);
    await kernel.#verify(opts);
    return kernel;
  }

  async #verify(opts: CallOptions): Promise<void> {
    const init = await this.read('task_struct', this.symbol('init_task'), opts);
    const comm = init.chars('comm');
    if (!comm.startsWith('swapper')) {
      throw new ValidationError(`init_task.comm is ${JSON.stringify(comm)}, not swapper: the profile does not fit this kernel`, init.address);
    }
  }

  get pagingLevels(): 4 | 5 {
    return this.kaslr.pagingLevels;
  }

  /** The runtime (slid) address of a symbol. */
  symbol(name: string): bigint {
    return this.profile.symbol(name) + this.kaslr.virtualSlide;
  }

  hasSymbol(name: string): boolean {
    return this.profile.hasSymbol(name);
  }

  /** Drops everything derived from memory; call when the VM ran. */
  invalidate(): void {
    this.cache.clear();
    this.space.invalidate();
  }

  /**
   * Reads a struct at `address`. With `upTo` (a field path), only the prefix of the struct up to
   * and including that field is read — enough for the fields a caller needs.
   */
  async read(type: string, address: bigint, opts: CallOptions & { upTo?: string; size?: number } = {}): Promise<KObject> {
    let size = opts.size ?? this.profile.typeSize(type);
    if (opts.upTo) {
      const f = this.profile.field(type, opts.upTo);
      size = f.offset + f.size;
    }
    const bytes = await this.space.read(address, size, opts);
    return new KObject(this.profile, type, address, bytes);
  }

  /** The struct at `address` if its bytes are already cached (no I/O, no await), else undefined. */
  peek(type: string, address: bigint, opts: { upTo?: string; size?: number } = {}): KObject | undefined {
    let size = opts.size ?? this.profile.typeSize(type);
    if (opts.upTo) {
      const f = this.profile.field(type, opts.upTo);
      size = f.offset + f.size;
    }
    // a view of the cache: a KObject only decodes its bytes
    const bytes = this.space.peek(address, size, true);
    return bytes && new KObject(this.profile, type, address, bytes);
  }

  /**
   * The struct at `address` if the parts `spans` names ([start, end) offsets, ascending) are
   * cached, else undefined: a KObject that decodes the fields within them and refuses the rest.
   * For a big struct whose fields used lie in a few far-apart clusters (task_struct). With `into`,
   * the bytes go there (one block for many structs saves an allocation each).
   */
  peekSpans(type: string, address: bigint, spans: ReadonlyArray<readonly [number, number]>, into?: Buffer): KObject | undefined {
    const size = spans.length > 0 ? spans[spans.length - 1][1] : 0;
    const bytes = into && into.length >= size ? into.subarray(0, size) : Buffer.allocUnsafe(size);
    for (const [start, end] of spans) {
      const part = this.space.peek(address + BigInt(start), end - start, true);
      if (!part) return undefined;
      part.copy(bytes, start);
    }
    return new KObject(this.profile, type, address, bytes, spans);
  }

  /**
   * Brings kernel virtual ranges into the page cache in one batch (unmapped ones skipped): a stage
   * of a collection fetches every object it will need at once, then reads them from the cache.
   */
  async prefetch(ranges: ReadonlyArray<{ address: bigint; length: number }>, opts?: CallOptions): Promise<void> {
    await this.space.prefetch(ranges.filter((r) => this.isKernelPointer(r.address)), opts);
  }

  /** Reads many structs of one type in one batch (pipelined through the layers below). */
  async readMany(type: string, addresses: readonly bigint[], opts: CallOptions & { size?: number } = {}): Promise<KObject[]> {
    const size = opts.size ?? this.profile.typeSize(type);
    const bufs = await this.space.readMany(addresses.map((address) => ({ address, length: size })), opts);
    return bufs.map((b, i) => new KObject(this.profile, type, addresses[i], b));
  }

  /** A u64 at a kernel virtual address. */
  async readU64(address: bigint, opts?: CallOptions): Promise<bigint> {
    return this.space.readU64(address, opts);
  }

  /** Whether `p` is a plausible pointer to kernel memory (at or above the direct map; see KernelLayout). */
  isKernelPointer(p: bigint): boolean {
    return this.layout.isKernelPointer(p);
  }
}
