/**
 * What the memory layer needs from the gdbstub, and nothing more: GdbClient implements it, and a
 * test can implement it over a Buffer.
 */
import type { CallOptions } from '../../util/deadline';

export interface MemoryRange {
  address: bigint;
  length: number;
}

export interface ReadOptions extends CallOptions {
  /**
   * How many `m` requests may be in flight at once (default: the connection's maxInFlight, 32;
   * 1 turns pipelining off). With `timeout`, the timeout covers the whole call; without, the call
   * fails when the stub has sent no reply for the connection's request timeout (10 s).
   */
  window?: number;
}

export interface GdbMemoryPort {
  /**
   * Reads `length` bytes at `address` (guest-virtual through the current vCPU's page tables, or
   * guest-physical after setPhysicalMemoryMode(true)). Split into `maxReadLength` pieces that are
   * pipelined. Fails with GdbMemoryAccessError (address and length of the failing piece) when the
   * stub answers E14 (unmapped page in virtual mode, beyond RAM in QEMU's virtual mode).
   */
  readMemory(address: bigint, length: number, opts?: ReadOptions): Promise<Buffer>;
  /**
   * Reads several ranges with their pieces pipelined (a bounded window of `m` requests in flight)
   * and returns one Buffer per range, in order. All or nothing: the first failing piece fails the
   * call with a GdbMemoryAccessError whose `request.index` names the range.
   */
  readMemoryRanges(ranges: readonly MemoryRange[], opts?: ReadOptions): Promise<Buffer[]>;
  /** Writes `data` at `address` (`M` packets of at most maxWriteLength bytes, in order). */
  writeMemory(address: bigint, data: Uint8Array, opts?: CallOptions): Promise<void>;
  /**
   * Switches `m`/`M` between guest-virtual (false) and guest-physical (true) addresses
   * (`Qqemu.PhyMemMode`, QEMU ≥ 4.1). The mode is global to the QEMU process: it outlives this
   * connection and is seen by the next one.
   */
  setPhysicalMemoryMode(on: boolean, opts?: CallOptions): Promise<void>;
  /** The largest read one `m` packet can do (2048 bytes on QEMU 7.2). */
  readonly maxReadLength: number;
}
