/**
 * The register layout of a target, built from its target description (never from a fixed table):
 * each register's name, number (for `p`/`P` and stop replies), size, and offset in the `g`
 * packet. Following gdb, registers are ordered by number and packed without gaps; a stub may
 * send a `g` reply shorter than the full layout, in which case the missing registers are left out.
 * Values are little-endian (x86); registers of any width (80-bit x87, 128-bit xmm) are bigints.
 */
import { ProtocolError } from '../../errors';
import { GdbArgumentError } from './errors';
import { readUIntLE, writeUIntLE } from './hex';

export interface RegisterInfo {
  readonly name: string;
  /** Register number: the index in `p`/`P` packets and in stop replies. */
  readonly regnum: number;
  readonly bitsize: number;
  /** Size in bytes in the `g` packet and in `p` replies. */
  readonly size: number;
  /** Byte offset in the decoded `g` packet. */
  readonly offset: number;
  readonly type?: string;
  readonly group?: string;
  /** The `<feature name=…>` that declared it, e.g. org.gnu.gdb.i386.core. */
  readonly feature?: string;
}

export interface RegisterDeclaration {
  name: string;
  bitsize: number;
  regnum?: number;
  type?: string;
  group?: string;
  feature?: string;
}

export type RegisterValues = ReadonlyMap<string, bigint> | Readonly<Record<string, bigint>>;

export class RegisterLayout {
  readonly registers: readonly RegisterInfo[];
  /** Size in bytes of a complete `g` packet (decoded). */
  readonly size: number;
  readonly #byName = new Map<string, RegisterInfo>();
  readonly #byNumber = new Map<number, RegisterInfo>();

  /**
   * Numbers registers as gdb does (a `regnum` attribute sets the number, the others follow the
   * previous one), then lays them out by increasing number.
   */
  constructor(declarations: readonly RegisterDeclaration[]) {
    let next = 0;
    const numbered: Omit<RegisterInfo, 'offset'>[] = [];
    const seen = new Set<number>();
    for (const d of declarations) {
      const regnum = d.regnum ?? next;
      next = regnum + 1;
      if (!Number.isInteger(d.bitsize) || d.bitsize <= 0 || d.bitsize % 8 !== 0 || d.bitsize > 4096) {
        throw new ProtocolError(`register ${d.name}: unusable bitsize ${d.bitsize}`);
      }
      if (!Number.isInteger(regnum) || regnum < 0 || seen.has(regnum)) {
        throw new ProtocolError(`register ${d.name}: register number ${regnum} is invalid or declared twice`);
      }
      seen.add(regnum);
      numbered.push({ name: d.name, regnum, bitsize: d.bitsize, size: d.bitsize / 8, type: d.type, group: d.group, feature: d.feature });
    }
    numbered.sort((a, b) => a.regnum - b.regnum);
    let offset = 0;
    const regs: RegisterInfo[] = [];
    for (const r of numbered) {
      const info: RegisterInfo = { ...r, offset };
      offset += r.size;
      regs.push(info);
      this.#byNumber.set(info.regnum, info);
      if (!this.#byName.has(info.name)) this.#byName.set(info.name, info);
      const lower = info.name.toLowerCase();
      if (!this.#byName.has(lower)) this.#byName.set(lower, info);
    }
    this.registers = regs;
    this.size = offset;
  }

  /** Looks a register up by name (exact, then lowercase). */
  get(name: string): RegisterInfo | undefined {
    return this.#byName.get(name) ?? this.#byName.get(name.toLowerCase());
  }

  /** Like `get`, but a missing register is a GdbArgumentError listing a few that exist. */
  require(name: string): RegisterInfo {
    const info = this.get(name);
    if (!info) {
      const known = this.registers.slice(0, 12).map((r) => r.name).join(', ');
      throw new GdbArgumentError(`no register ${JSON.stringify(name)} in the target description (has ${known}, …)`);
    }
    return info;
  }

  byNumber(regnum: number): RegisterInfo | undefined {
    return this.#byNumber.get(regnum);
  }

  /**
   * Decodes a `g` reply. `unavailable` marks bytes the stub sent as `xx`; a register touching
   * one of them, or past the end of a short reply, is left out of the result.
   */
  decode(block: Buffer, unavailable?: Uint8Array): Map<string, bigint> {
    const out = new Map<string, bigint>();
    for (const r of this.registers) {
      if (r.offset + r.size > block.length) break;
      if (unavailable && unavailable.subarray(r.offset, r.offset + r.size).some((x) => x !== 0)) continue;
      out.set(r.name, readUIntLE(block.subarray(r.offset, r.offset + r.size)));
    }
    return out;
  }

  /**
   * Returns a copy of `block` with `values` written in. Unknown names, values that do not fit the
   * register, and registers beyond the end of `block` are GdbArgumentErrors.
   */
  encode(block: Buffer, values: RegisterValues): Buffer {
    const out = Buffer.from(block);
    for (const [name, value] of entries(values)) {
      const r = this.require(name);
      if (r.offset + r.size > out.length) {
        throw new GdbArgumentError(`register ${r.name} is not in the stub's g packet (${out.length} bytes); write it with P`);
      }
      out.set(this.encodeValue(r, value), r.offset);
    }
    return out;
  }

  /** One register's value as target bytes; negative values are two's complement. */
  encodeValue(r: RegisterInfo, value: bigint): Buffer {
    const bits = BigInt(r.bitsize);
    if (typeof value !== 'bigint' || value >= 1n << bits || value < -(1n << (bits - 1n))) {
      throw new GdbArgumentError(`value ${String(value)} does not fit ${r.bitsize}-bit register ${r.name}`);
    }
    return writeUIntLE(value, r.size);
  }
}

export function entries(values: RegisterValues): [string, bigint][] {
  return values instanceof Map ? [...values.entries()] : Object.entries(values);
}
