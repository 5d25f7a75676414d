/**
 * Guest-physical memory through QEMU's gdbstub: `Qqemu.PhyMemMode:1` makes `m`/`M` take physical
 * addresses (QEMU >= 4.1). The mode is a property of the whole stub, so while this backend is open
 * it owns it: virtual-address reads through the same stub would be read as physical. close() puts
 * the stub back in virtual mode.
 *
 * In physical mode QEMU reads with cpu_physical_memory_rw(), which does not fail on holes (they read
 * as whatever the bus returns) and does touch device registers: keep reads to RAM.
 */
import { CommandError, MemoryReadError, VmiError } from '../errors';
import type { CallOptions } from '../util/deadline';
import { checkPhysicalRange, totalLength, type PhysicalMemory, type PhysicalRange } from './physical';

/** The part of the GDB client this backend needs (declared here so memory does not import transport). */
export interface GdbMemoryPort {
  /** Longest single `m` read the stub accepts (2048 bytes with QEMU's PacketSize=1000). */
  readonly maxReadLength: number;
  readMemory(address: bigint, length: number, opts?: CallOptions): Promise<Buffer>;
  readMemoryRanges(ranges: { address: bigint; length: number }[], opts?: CallOptions): Promise<Buffer[]>;
  writeMemory(address: bigint, data: Buffer, opts?: CallOptions): Promise<void>;
  setPhysicalMemoryMode(on: boolean): Promise<void>;
}

/**
 * Failures that say something about the memory (an error reply, a malformed reply) become
 * MemoryReadError; the connection's own failures (timeout, abort, disconnect) pass through so callers
 * can tell "this address is bad" from "the stub is gone".
 */
function isMemoryFailure(err: unknown): boolean {
  return err instanceof CommandError || !(err instanceof VmiError);
}

export class GdbstubPhysicalMemory implements PhysicalMemory {
  readonly name = 'gdbstub';
  readonly #port: GdbMemoryPort;
  #closed = false;

  private constructor(port: GdbMemoryPort) {
    this.#port = port;
  }

  /** Switches the stub to physical addressing and returns the backend that owns that mode. */
  static async open(port: GdbMemoryPort): Promise<GdbstubPhysicalMemory> {
    await port.setPhysicalMemoryMode(true);
    return new GdbstubPhysicalMemory(port);
  }

  async read(address: bigint, length: number, opts?: CallOptions): Promise<Buffer> {
    return (await this.readRanges([{ address, length }], opts))[0];
  }

  async readRanges(ranges: readonly PhysicalRange[], opts?: CallOptions): Promise<Buffer[]> {
    this.#checkOpen();
    totalLength(ranges);
    // Split into pieces the stub accepts, send them all at once (the client pipelines), reassemble.
    const max = Math.max(1, this.#port.maxReadLength);
    const pieces: PhysicalRange[] = [];
    const owner: number[] = [];
    ranges.forEach((r, i) => {
      for (let off = 0; off < r.length; off += max) {
        pieces.push({ address: r.address + BigInt(off), length: Math.min(max, r.length - off) });
        owner.push(i);
      }
    });
    let bufs: Buffer[] = [];
    if (pieces.length > 0) {
      try {
        bufs = await this.#port.readMemoryRanges(pieces, opts);
      } catch (err) {
        if (!isMemoryFailure(err)) throw err;
        throw await this.#locate(pieces, err, opts);
      }
    }
    const parts: Buffer[][] = ranges.map(() => []);
    pieces.forEach((p, k) => {
      if (bufs[k]?.length !== p.length) {
        throw new MemoryReadError(p.address, p.length, `${this.name}: got ${bufs[k]?.length ?? 0} bytes`);
      }
      parts[owner[k]].push(bufs[k]);
    });
    return parts.map((p) => (p.length === 1 ? p[0] : Buffer.concat(p)));
  }

  async write(address: bigint, data: Buffer, opts?: CallOptions): Promise<void> {
    this.#checkOpen();
    checkPhysicalRange(address, data.length);
    const max = Math.max(1, this.#port.maxReadLength);
    for (let off = 0; off < data.length; off += max) {
      const at = address + BigInt(off);
      const piece = data.subarray(off, off + max);
      try {
        await this.#port.writeMemory(at, piece, opts);
      } catch (err) {
        if (!isMemoryFailure(err)) throw err;
        throw new MemoryReadError(at, piece.length, `${this.name}: write failed: ${(err as Error).message}`, { cause: err });
      }
    }
  }

  /** Gives the stub back in virtual-address mode. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#port.setPhysicalMemoryMode(false);
  }

  #checkOpen(): void {
    if (this.#closed) throw new VmiError('ECLOSED', `${this.name}: physical memory backend is closed`);
  }

  /**
   * A batch failed as a whole: name the range that fails, so the error carries the right address.
   * Reading the pieces one by one costs round trips, but only on the failure path.
   */
  async #locate(pieces: PhysicalRange[], batchError: unknown, opts?: CallOptions): Promise<Error> {
    // A client that already says which piece failed (address and length on its error) saves the search.
    const named = batchError as { address?: unknown; length?: unknown; message: string };
    if (typeof named.address === 'bigint' && typeof named.length === 'number') {
      return new MemoryReadError(named.address, named.length, `${this.name}: ${named.message}`, { cause: batchError });
    }
    for (const p of pieces) {
      try {
        await this.#port.readMemory(p.address, p.length, opts);
      } catch (err) {
        if (!isMemoryFailure(err)) return err as Error;
        return new MemoryReadError(p.address, p.length, `${this.name}: ${(err as Error).message}`, { cause: err });
      }
    }
    const first = pieces[0];
    return new MemoryReadError(first.address, first.length, `${this.name}: batch of ${pieces.length} reads failed: ${(batchError as Error).message}`, { cause: batchError });
  }
}
