/**
 * An in-memory PhysicalMemory for tests: `ramSize` bytes of zeroed RAM (pages allocated on first
 * write), reads beyond it fail like a hole. Counts and logs backend calls so tests can prove what
 * the layers above asked for.
 */
import { MemoryReadError } from '../../lib/errors';
import type { PhysicalMemory, PhysicalRange } from '../../lib/memory/physical';

export class SparseMemory implements PhysicalMemory {
  readonly name = 'sparse';
  readonly ramSize: bigint;
  readonly pages = new Map<bigint, Buffer>();
  /** Every range asked for, one inner array per backend call. */
  readonly calls: PhysicalRange[][] = [];
  writes: { address: bigint; length: number }[] = [];
  /** Addresses (page numbers) that fail to read, to simulate backend errors. */
  readonly failPages = new Set<bigint>();
  /** Delay (ms) before answering, to let tests overlap calls. */
  delayMs = 0;

  constructor(ramSize: bigint) {
    this.ramSize = ramSize;
  }

  get callCount(): number {
    return this.calls.length;
  }

  readSync(address: bigint, length: number): Buffer {
    if (address < 0n || address + BigInt(length) > this.ramSize) throw new MemoryReadError(address, length, 'outside RAM');
    const out = Buffer.alloc(length);
    for (let done = 0; done < length; ) {
      const at = address + BigInt(done);
      if (this.failPages.has(at >> 12n)) throw new MemoryReadError(address, length, `page 0x${(at >> 12n).toString(16)} fails`);
      const off = Number(at & 0xfffn);
      const n = Math.min(4096 - off, length - done);
      this.pages.get(at >> 12n)?.copy(out, done, off, off + n);
      done += n;
    }
    return out;
  }

  writeSync(address: bigint, data: Buffer): void {
    if (address < 0n || address + BigInt(data.length) > this.ramSize) throw new MemoryReadError(address, data.length, 'outside RAM');
    for (let done = 0; done < data.length; ) {
      const at = address + BigInt(done);
      const key = at >> 12n;
      let page = this.pages.get(key);
      if (!page) this.pages.set(key, (page = Buffer.alloc(4096)));
      const off = Number(at & 0xfffn);
      const n = Math.min(4096 - off, data.length - done);
      data.copy(page, off, done, done + n);
      done += n;
    }
  }

  writeU64(address: bigint, value: bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, value));
    this.writeSync(address, b);
  }

  readU64(address: bigint): bigint {
    return this.readSync(address, 8).readBigUInt64LE(0);
  }

  async read(address: bigint, length: number): Promise<Buffer> {
    return (await this.readRanges([{ address, length }]))[0];
  }

  async readRanges(ranges: readonly PhysicalRange[]): Promise<Buffer[]> {
    this.calls.push(ranges.map((r) => ({ ...r })));
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    return ranges.map((r) => this.readSync(r.address, r.length));
  }

  async write(address: bigint, data: Buffer): Promise<void> {
    this.writes.push({ address, length: data.length });
    this.writeSync(address, data);
  }
}
