/**
 * The bottom of the memory layering: guest-physical memory, whatever holds it (a live QEMU through
 * the gdbstub or /proc/<tid>/mem, or a dump file). Everything above (page cache, page-table walker,
 * address spaces) is written against this interface only, so any backend can sit under any view.
 */
import { MemoryReadError } from '../errors';
import type { CallOptions } from '../util/deadline';

/** A span of guest-physical memory. */
export interface PhysicalRange {
  address: bigint;
  length: number;
}

export interface PhysicalMemory {
  /** Says where the bytes come from, for messages ("gdbstub", "procmem:/proc/123/mem", "dump:/x.elf"). */
  readonly name: string;
  /**
   * Changes whenever views built on this memory must drop what they derived from it (a cache sets it
   * when the VM runs again). Absent on live backends that cache nothing: then nothing above may cache.
   */
  readonly generation?: number;
  /** Reads exactly `length` bytes or throws MemoryReadError naming the range. */
  read(address: bigint, length: number, opts?: CallOptions): Promise<Buffer>;
  /** Reads several ranges in one go where the backend can (pipelining, one syscall batch); all or nothing. */
  readRanges(ranges: readonly PhysicalRange[], opts?: CallOptions): Promise<Buffer[]>;
  /**
   * The bytes if they are already held in memory (a cache), with no I/O and no await; undefined
   * when any of them is not. Only caches have it; it lets hot paths skip the promise machinery.
   * With `view`, the result may share memory with the cache: read it, never write to it.
   */
  peek?(address: bigint, length: number, view?: boolean): Buffer | undefined;
  /** peek() of bytes [offset, offset + length) of the page whose number (address >> 12) is `page`, all within it. */
  peekPage?(page: bigint, offset: number, length: number, view?: boolean): Buffer | undefined;
  /**
   * True when readRanges() answers with memory of its own: buffers nothing else holds or will write,
   * shared between replies only in blocks of at most REPLY_BLOCK bytes. A cache may keep such
   * replies as they are rather than copy them (megabytes per listing).
   */
  readonly freshReplies?: boolean;
  /** Present only on backends that can change guest memory. */
  write?(address: bigint, data: Buffer, opts?: CallOptions): Promise<void>;
  close?(): Promise<void>;
}

/**
 * Largest block several replies of a freshReplies backend may share: a page a cache keeps alone then
 * holds little else alive.
 */
export const REPLY_BLOCK = 256 * 1024;

/** x86-64 physical addresses have at most 52 bits; anything above is a caller's bug or guest garbage. */
export const MAX_PHYSICAL_ADDRESS = 1n << 52n;

/**
 * The largest single read we accept. Lengths often come from guest data; a corrupt one must fail
 * here rather than allocate gigabytes.
 */
export const MAX_READ_LENGTH = 256 * 1024 * 1024;

/** Throws MemoryReadError if a range is malformed (negative, fractional, huge, beyond 2^52). */
export function checkPhysicalRange(address: bigint, length: number): void {
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_READ_LENGTH) {
    throw new MemoryReadError(address, Number.isFinite(length) ? length : 0, `invalid length ${length}`);
  }
  if (address < 0n || address + BigInt(length) > MAX_PHYSICAL_ADDRESS) {
    throw new MemoryReadError(address, length, 'outside the 52-bit physical address space');
  }
}

/** Sum of the lengths of `ranges`, checking each. */
export function totalLength(ranges: readonly PhysicalRange[]): number {
  let n = 0;
  for (const r of ranges) {
    checkPhysicalRange(r.address, r.length);
    n += r.length;
  }
  return n;
}
