/**
 * Where a driven thread's memory arguments go: the unused stack below its red zone when they fit
 * (a session of a single-threaded process), else an anonymous mapping made with an injected
 * mmap(MAP_POPULATE), grown by remapping and unmapped at the end. Each placement starts afresh at
 * the base: what one placed is only good until the next.
 */
import type { AddressSpace } from '../memory/address-space';
import { errnoOf } from './errno';
import { SyscallError } from './errors';
import { SYSCALLS_X86_64 } from './syscalls';

/** Size step of the scratch mapping. */
export const MAP_STEP = 64 * 1024;
const PROT_READ_WRITE = 3n;
const MAP_PRIVATE_ANONYMOUS_POPULATE = 0x02n | 0x20n | 0x8000n;

/** One buffer to place: `size` bytes, with `data` written at its start. */
export interface Placement {
  size: number;
  data?: Buffer;
}

/** A syscall made in the thread the scratch belongs to (rax, signed). */
export type RawCall = (nr: number, args: readonly bigint[]) => Promise<bigint>;

export interface ScratchMapping {
  address: bigint;
  length: number;
}

export class Scratch {
  readonly #space: AddressSpace;
  readonly #call: RawCall;
  readonly #onMapping: ((m: ScratchMapping | undefined) => void) | undefined;
  /** The stack area: [low, high), below the red zone. */
  #stack: { low: bigint; high: bigint } | undefined;
  #map: ScratchMapping | undefined;

  constructor(space: AddressSpace, call: RawCall, opts: { onMapping?: (m: ScratchMapping | undefined) => void } = {}) {
    this.#space = space;
    this.#call = call;
    this.#onMapping = opts.onMapping;
  }

  /** Uses [low, high) of the thread's stack for buffers that fit there. */
  useStack(low: bigint, high: bigint): void {
    this.#stack = high > low ? { low, high } : undefined;
  }

  get mapping(): ScratchMapping | undefined {
    return this.#map;
  }

  /** The areas buffers may be in (the stack area, the mapping): address and length. */
  areas(): [bigint, number][] {
    const out: [bigint, number][] = [];
    if (this.#stack) out.push([this.#stack.low, Number(this.#stack.high - this.#stack.low)]);
    if (this.#map) out.push([this.#map.address, this.#map.length]);
    return out;
  }

  /** Places buffers, 16-byte aligned, and returns the address of each; their `data` is written. */
  async place(parts: readonly Placement[]): Promise<bigint[]> {
    // a call with no memory argument needs no mapping (mmap of 0 bytes is EINVAL)
    if (parts.length === 0) return [];
    const sizes = parts.map((p) => (p.size + 15) & ~15);
    const total = sizes.reduce((a, b) => a + b, 0);
    const base = this.#stack && total <= Number(this.#stack.high - this.#stack.low) ? this.#stack.low : await this.#mapping(total);
    const out: bigint[] = [];
    let at = base;
    for (let i = 0; i < parts.length; i++) {
      out.push(at);
      const d = parts[i].data;
      if (d && d.length > 0) await this.#space.write(at, d);
      at += BigInt(sizes[i]);
    }
    return out;
  }

  /** `length` bytes at `address`, read back after a call wrote them. */
  async readBack(address: bigint, length: number): Promise<Buffer> {
    return length > 0 ? this.#space.read(address, length) : Buffer.alloc(0);
  }

  /** Unmaps the mapping (`call`: how, when not the usual way); the next placement maps a fresh one. */
  async unmap(call: RawCall = this.#call): Promise<void> {
    const old = this.#map;
    if (!old) return;
    this.#map = undefined;
    this.#onMapping?.(undefined);
    const r = await call(SYSCALLS_X86_64.munmap, [old.address, BigInt(old.length)]);
    if (errnoOf(r)) throw new SyscallError('munmap', errnoOf(r), '(scratch mapping)');
    this.#space.invalidate();
  }

  async #mapping(size: number): Promise<bigint> {
    if (this.#map && this.#map.length >= size) return this.#map.address;
    await this.unmap();
    const length = Math.max(MAP_STEP, Math.ceil(size / MAP_STEP) * MAP_STEP);
    const r = await this.#call(SYSCALLS_X86_64.mmap, [0n, BigInt(length), PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS_POPULATE, BigInt.asUintN(64, -1n), 0n]);
    if (errnoOf(r)) throw new SyscallError('mmap', errnoOf(r), `(scratch mapping of ${length} bytes)`);
    this.#map = { address: BigInt.asUintN(64, r), length };
    this.#onMapping?.(this.#map);
    return this.#map.address;
  }
}
