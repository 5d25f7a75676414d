/**
 * A cap on how much guest memory one command reads: every byte fetched from the backend counts
 * (below the page cache, so cached pages are free), and a read that would go past the budget fails
 * with LimitExceededError before it is made. A hostile guest can make a walk look endless in many
 * ways (huge lists, long strings, deep paths); whatever the way, the bytes it costs are bounded here.
 */
import { LimitExceededError } from '../errors';
import type { CallOptions } from '../util/deadline';
import type { PhysicalMemory, PhysicalRange } from './physical';

export class ReadBudgetMemory implements PhysicalMemory {
  readonly inner: PhysicalMemory;
  readonly maxBytes: number;
  /** What the flag that raises the budget is called, for the message. */
  readonly flag: string;
  #used = 0;
  readonly write?: (address: bigint, data: Buffer, opts?: CallOptions) => Promise<void>;

  constructor(inner: PhysicalMemory, maxBytes: number, flag = '--max-read') {
    this.inner = inner;
    this.maxBytes = maxBytes;
    this.flag = flag;
    // only a backend that can write offers write (callers test for it)
    if (typeof inner.write === 'function') this.write = (address, data, opts) => inner.write!(address, data, opts);
  }

  get name(): string {
    return this.inner.name;
  }

  get generation(): number | undefined {
    return this.inner.generation;
  }

  get freshReplies(): boolean | undefined {
    return this.inner.freshReplies;
  }

  /** Bytes read from the backend so far. */
  get used(): number {
    return this.#used;
  }

  #take(n: number): void {
    if (this.#used + n > this.maxBytes) {
      throw new LimitExceededError('guest memory read by this command', Math.round(this.maxBytes / 2 ** 20), this.flag, ' MiB');
    }
    this.#used += n;
  }

  async read(address: bigint, length: number, opts?: CallOptions): Promise<Buffer> {
    this.#take(length);
    return this.inner.read(address, length, opts);
  }

  async readRanges(ranges: readonly PhysicalRange[], opts?: CallOptions): Promise<Buffer[]> {
    this.#take(ranges.reduce((n, r) => n + r.length, 0));
    return this.inner.readRanges(ranges, opts);
  }

  async close(): Promise<void> {
    await this.inner.close?.();
  }
}
