/**
 * An x86-64 instruction length decoder, with just enough meaning for hook detection: the length of
 * each instruction, direct branch targets (CALL/JMP/Jcc), and the handful of forms a hook uses to
 * leave a function (indirect JMP/CALL through a register or RIP-relative memory, PUSH + RET,
 * MOV reg, imm). Without the vmlinux there are no known-good bytes to compare with, so kernel code
 * is read the way the CPU runs it: instruction by instruction from a function's start.
 *
 * Covers the legacy one-, two- and three-byte opcode maps, prefixes, REX, ModRM/SIB/displacement,
 * immediates, and the VEX/EVEX encodings (64-bit mode only: C4/C5/62 are always VEX/EVEX there).
 */

export interface Instruction {
  /** Offset in the buffer. */
  offset: number;
  length: number;
  /** The primary opcode after prefixes: 0x00..0xff, 0x0f00 | op, 0x0f3800 | op, 0x0f3a00 | op. */
  opcode: number;
  kind: 'call' | 'jmp' | 'jcc' | 'ret' | 'call-indirect' | 'jmp-indirect' | 'push-imm' | 'push-reg' | 'mov-imm' | 'int3' | 'nop' | 'endbr' | 'other';
  /** Direct branch target (absolute), or PUSH imm32's sign-extended value, or MOV's immediate. */
  value?: bigint;
  /** Register number (0..15) of push-reg, mov-imm, and register-indirect branches. */
  register?: number;
  /** Absolute address of the memory operand of an indirect branch through [rip + disp32]. */
  memory?: bigint;
}

// legacy one-byte map: bit 0 ModRM; bits 1-3 immediate: 1 imm8, 2 imm16/32 (operand size), 3 imm16, 4 imm16+imm8, 5 imm64/32 (B8+r), 6 moffs; 0x80 invalid
const M = 1, I8 = 2, IZ = 4, I16 = 6, I16_8 = 8, IV = 10, MOFFS = 12, BAD = 0x80;
const ONE = new Uint8Array(256);
for (let op = 0; op < 0x40; op++) {
  const low = op & 7;
  ONE[op] = low < 4 ? M : low === 4 ? I8 : low === 5 ? IZ : BAD;
}
for (const p of [0x26, 0x2e, 0x36, 0x3e]) ONE[p] = 0; // segment prefixes (consumed before lookup)
for (const op of [0x63, 0x69, 0x6b, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0xc4, 0xc5, 0xd0, 0xd1, 0xd2, 0xd3, 0xf6, 0xf7, 0xfe, 0xff]) ONE[op] |= M;
for (let op = 0xd8; op <= 0xdf; op++) ONE[op] = M;
ONE[0x68] = IZ; ONE[0x69] = M | IZ; ONE[0x6a] = I8; ONE[0x6b] = M | I8;
for (let op = 0x70; op <= 0x7f; op++) ONE[op] = I8;
ONE[0x80] = M | I8; ONE[0x81] = M | IZ; ONE[0x82] = BAD; ONE[0x83] = M | I8;
for (let op = 0xa0; op <= 0xa3; op++) ONE[op] = MOFFS;
ONE[0xa8] = I8; ONE[0xa9] = IZ;
for (let op = 0xb0; op <= 0xb7; op++) ONE[op] = I8;
for (let op = 0xb8; op <= 0xbf; op++) ONE[op] = IV;
ONE[0xc0] = M | I8; ONE[0xc1] = M | I8; ONE[0xc2] = I16; ONE[0xc6] = M | I8; ONE[0xc7] = M | IZ; ONE[0xc8] = I16_8; ONE[0xca] = I16; ONE[0xcd] = I8;
for (let op = 0xe0; op <= 0xe7; op++) ONE[op] = I8;
ONE[0xe8] = IZ; ONE[0xe9] = IZ; ONE[0xeb] = I8;
for (const op of [0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x60, 0x61, 0x9a, 0xce, 0xd4, 0xd5, 0xd6, 0xea]) ONE[op] = BAD;

// two-byte map (0F xx): bit 0 ModRM, bit 1 imm8, 0x80 invalid
const TWO = new Uint8Array(256).fill(M);
for (const op of [0x05, 0x06, 0x07, 0x08, 0x09, 0x0b, 0x0e, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x37, 0x77, 0xa0, 0xa1, 0xa2, 0xa8, 0xa9, 0xaa]) TWO[op] = 0;
for (let op = 0x80; op <= 0x8f; op++) TWO[op] = IZ; // Jcc rel32
for (let op = 0xc8; op <= 0xcf; op++) TWO[op] = 0; // BSWAP
for (const op of [0x70, 0x71, 0x72, 0x73, 0xa4, 0xac, 0xba, 0xc2, 0xc4, 0xc5, 0xc6, 0x0f]) TWO[op] = M | I8;
for (const op of [0x04, 0x0a, 0x0c, 0x24, 0x25, 0x26, 0x27, 0x36, 0x39, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x7a, 0x7b]) TWO[op] = BAD;

/** A byte string that is not a decodable instruction (or runs past the buffer). */
export class UndecodableError extends Error {
  constructor(readonly offset: number) {
    super(`undecodable instruction at offset ${offset}`);
    this.name = 'UndecodableError';
  }
}

/** Length of a ModRM operand (ModRM byte, SIB, displacement) at `p`, and whether it is RIP-relative. */
function modrmLength(buf: Buffer, p: number): { length: number; ripRelative: boolean } {
  if (p >= buf.length) throw new UndecodableError(p);
  const modrm = buf[p];
  const mod = modrm >> 6, rm = modrm & 7;
  if (mod === 3) return { length: 1, ripRelative: false };
  let n = 1;
  let ripRelative = false;
  if (rm === 4) {
    if (p + 1 >= buf.length) throw new UndecodableError(p);
    const base = buf[p + 1] & 7;
    n++;
    if (mod === 0 && base === 5) n += 4;
  } else if (mod === 0 && rm === 5) {
    n += 4;
    ripRelative = true;
  }
  if (mod === 1) n += 1;
  else if (mod === 2) n += 4;
  return { length: n, ripRelative };
}

/**
 * Decodes the instruction at `offset` of `buf`, whose first byte is at absolute address `base`.
 * Throws UndecodableError for invalid opcodes and for instructions cut by the buffer's end.
 */
export function decodeAt(buf: Buffer, offset: number, base: bigint): Instruction {
  let p = offset;
  let opsize16 = false, addr32 = false, rex = 0, rep = 0;
  // legacy prefixes (at most 14 in a 15-byte instruction)
  for (;;) {
    if (p >= buf.length || p - offset > 14) throw new UndecodableError(offset);
    const b = buf[p];
    if (b === 0x66) opsize16 = true;
    else if (b === 0x67) addr32 = true;
    else if (b === 0xf2 || b === 0xf3) rep = b;
    else if (b !== 0xf0 && b !== 0x2e && b !== 0x36 && b !== 0x3e && b !== 0x26 && b !== 0x64 && b !== 0x65) break;
    p++;
  }
  if (buf[p] >= 0x40 && buf[p] <= 0x4f) rex = buf[p++];
  if (p >= buf.length) throw new UndecodableError(offset);
  const rexW = (rex & 8) !== 0, rexB = (rex & 1) !== 0;
  const at = (end: number) => base + BigInt(end);
  const done = (end: number, opcode: number, kind: Instruction['kind'], extra: Partial<Instruction> = {}): Instruction => {
    if (end > buf.length || end - offset > 15) throw new UndecodableError(offset);
    return { offset, length: end - offset, opcode, kind, ...extra };
  };
  const op = buf[p];

  // VEX (C5: 2-byte, C4: 3-byte) and EVEX (62): always these in 64-bit mode
  if (op === 0xc4 || op === 0xc5 || op === 0x62) {
    let map: number;
    if (op === 0xc5) { map = 1; p += 2; }
    else if (op === 0xc4) { if (p + 1 >= buf.length) throw new UndecodableError(offset); map = buf[p + 1] & 0x1f; p += 3; }
    else { if (p + 1 >= buf.length) throw new UndecodableError(offset); map = buf[p + 1] & 7; p += 4; }
    if (p >= buf.length || map < 1 || map > 3) throw new UndecodableError(offset);
    const vop = buf[p++];
    const m = modrmLength(buf, p);
    let end = p + m.length;
    if (map === 3 || (map === 1 && ((vop >= 0x70 && vop <= 0x73) || vop === 0xc2 || (vop >= 0xc4 && vop <= 0xc6)))) end += 1;
    return done(end, (map === 1 ? 0x0f00 : map === 2 ? 0x0f3800 : 0x0f3a00) | vop, 'other');
  }

  if (op !== 0x0f) {
    const flags = ONE[op];
    if (flags & BAD) throw new UndecodableError(offset);
    p++;
    let end = p;
    let ripRelative = false;
    if (flags & M) {
      const m = modrmLength(buf, p);
      end += m.length;
      ripRelative = m.ripRelative;
    }
    const imm = flags & 0x7e;
    const immAt = end;
    if (imm === I8) end += 1;
    else if (imm === IZ) end += opsize16 ? 2 : 4;
    else if (imm === I16) end += 2;
    else if (imm === I16_8) end += 3;
    else if (imm === IV) end += rexW ? 8 : opsize16 ? 2 : 4;
    else if (imm === MOFFS) end += addr32 ? 4 : 8;
    // F6/F7 /0 and /1 (TEST) carry an immediate the table cannot say
    if ((op === 0xf6 || op === 0xf7) && ((buf[p] >> 3) & 7) < 2) end += op === 0xf6 ? 1 : opsize16 ? 2 : 4;
    if (end > buf.length) throw new UndecodableError(offset);
    const reg = (op & 7) + (rexB ? 8 : 0);
    switch (op) {
      case 0xe8: return done(end, op, 'call', { value: BigInt.asUintN(64, at(end) + BigInt(buf.readInt32LE(immAt))) });
      case 0xe9: return done(end, op, 'jmp', { value: BigInt.asUintN(64, at(end) + BigInt(buf.readInt32LE(immAt))) });
      case 0xeb: return done(end, op, 'jmp', { value: BigInt.asUintN(64, at(end) + BigInt(buf.readInt8(immAt))) });
      case 0xc3: case 0xc2: return done(end, op, 'ret');
      case 0xcc: return done(end, op, 'int3');
      case 0x90: return done(end, op, rex & 1 ? 'other' : 'nop'); // 41 90 is xchg r8, rax
      case 0x68: return done(end, op, 'push-imm', { value: BigInt.asUintN(64, BigInt(buf.readInt32LE(immAt))) });
      case 0xff: {
        const modrm = buf[p], sub = (modrm >> 3) & 7;
        if (sub === 2 || sub === 4) {
          const kind = sub === 2 ? 'call-indirect' : 'jmp-indirect';
          if (modrm >> 6 === 3) return done(end, op, kind, { register: (modrm & 7) + (rexB ? 8 : 0) });
          if (ripRelative) return done(end, op, kind, { memory: BigInt.asUintN(64, at(end) + BigInt(buf.readInt32LE(p + 1))) });
          return done(end, op, kind);
        }
        if (sub === 6 && modrm >> 6 === 3) return done(end, op, 'push-reg', { register: (modrm & 7) + (rexB ? 8 : 0) });
        return done(end, op, 'other');
      }
      case 0xc7: {
        const modrm = buf[p];
        // mov r/m64, imm32 (sign-extended) into a register
        if (modrm >> 6 === 3 && ((modrm >> 3) & 7) === 0 && !opsize16) {
          const v = BigInt(buf.readInt32LE(immAt));
          return done(end, op, 'mov-imm', { register: (modrm & 7) + (rexB ? 8 : 0), value: rexW ? BigInt.asUintN(64, v) : BigInt.asUintN(32, v) });
        }
        return done(end, op, 'other');
      }
    }
    if (op >= 0x70 && op <= 0x7f) return done(end, op, 'jcc', { value: BigInt.asUintN(64, at(end) + BigInt(buf.readInt8(immAt))) });
    if (op >= 0x50 && op <= 0x57) return done(end, op, 'push-reg', { register: reg });
    if (op >= 0xb8 && op <= 0xbf && !opsize16) {
      const value = rexW ? buf.readBigUInt64LE(immAt) : BigInt(buf.readUInt32LE(immAt));
      return done(end, op, 'mov-imm', { register: reg, value });
    }
    return done(end, op, 'other');
  }

  // 0F: two- and three-byte maps
  p++;
  if (p >= buf.length) throw new UndecodableError(offset);
  const op2 = buf[p++];
  if (op2 === 0x38 || op2 === 0x3a) {
    if (p >= buf.length) throw new UndecodableError(offset);
    const op3 = buf[p++];
    const m = modrmLength(buf, p);
    return done(p + m.length + (op2 === 0x3a ? 1 : 0), (op2 === 0x38 ? 0x0f3800 : 0x0f3a00) | op3, 'other');
  }
  const flags = TWO[op2];
  if (flags & BAD) throw new UndecodableError(offset);
  if (op2 >= 0x80 && op2 <= 0x8f) {
    const end = p + 4;
    if (end > buf.length) throw new UndecodableError(offset);
    return done(end, 0x0f00 | op2, 'jcc', { value: BigInt.asUintN(64, at(end) + BigInt(buf.readInt32LE(p))) });
  }
  let end = p;
  if (flags & M) end += modrmLength(buf, p).length;
  if (flags & I8) end += 1;
  if (end > buf.length) throw new UndecodableError(offset);
  if (op2 === 0x1e && rep === 0xf3 && buf[p] === 0xfa) return done(end, 0x0f00 | op2, 'endbr');
  if (op2 === 0x1f || (op2 >= 0x19 && op2 <= 0x1e)) return done(end, 0x0f00 | op2, 'nop');
  return done(end, 0x0f00 | op2, 'other');
}

/** Decodes `buf` (at absolute `base`) from its start, stopping at `limit` bytes or the first undecodable byte. */
export function decodeAll(buf: Buffer, base: bigint, limit = buf.length): { instructions: Instruction[]; stoppedAt?: number } {
  const out: Instruction[] = [];
  let off = 0;
  const end = Math.min(limit, buf.length);
  while (off < end) {
    try {
      const ins = decodeAt(buf, off, base);
      out.push(ins);
      off += ins.length;
    } catch (err) {
      if (err instanceof UndecodableError) return { instructions: out, stoppedAt: off };
      throw err;
    }
  }
  return { instructions: out };
}
