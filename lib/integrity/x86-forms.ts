/**
 * The few x86 instruction forms that boot-time patching writes (arch/x86/kernel/alternative.c,
 * jump_label.c, static_call.c, ftrace.c): NOPs (the kernel's x86_nops table and the 0x90 runs it
 * pads with), INT3 padding, relative CALL/JMP, and indirect CALL/JMP through a register.
 * Recognising only these keeps the "legitimately patched" rule narrow.
 */

/** The NOP encodings Linux uses (include/asm/nops.h BYTES_NOP1..8, P6 forms, and 66 90). */
const NOPS: readonly Buffer[] = [
  [0x90],
  [0x66, 0x90],
  [0x0f, 0x1f, 0x00],
  [0x0f, 0x1f, 0x40, 0x00],
  [0x0f, 0x1f, 0x44, 0x00, 0x00],
  [0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
  [0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
  [0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
  [0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
  [0x66, 0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
  [0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
  [0x2e, 0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
  [0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
].map((b) => Buffer.from(b));

/** Whether `buf` is entirely a sequence of NOP instructions (empty counts). */
export function isNops(buf: Buffer): boolean {
  let i = 0;
  outer: while (i < buf.length) {
    for (const n of NOPS) {
      if (i + n.length <= buf.length && buf.subarray(i, i + n.length).equals(n)) {
        i += n.length;
        continue outer;
      }
    }
    return false;
  }
  return true;
}

/**
 * Whether `buf` is filler the kernel writes after a shorter instruction: NOPs, INT3s, or a short
 * JMP over INT3s (the long-NOP form of later kernels).
 */
export function isPadding(buf: Buffer): boolean {
  if (isNops(buf)) return true;
  if (buf.every((b) => b === 0xcc)) return true;
  if (buf.length >= 2 && buf[0] === 0xeb && buf[1] === buf.length - 2 && buf.subarray(2).every((b) => b === 0xcc)) return true;
  return false;
}

/** Target of a relative CALL (e8) / JMP (e9, eb) at `at` (link-time address of buf[0]), or null. */
export function relativeTarget(buf: Buffer, at: bigint): { op: 'call' | 'jmp'; target: bigint; length: number } | null {
  if (buf.length >= 5 && (buf[0] === 0xe8 || buf[0] === 0xe9)) {
    return { op: buf[0] === 0xe8 ? 'call' : 'jmp', target: BigInt.asUintN(64, at + 5n + BigInt(buf.readInt32LE(1))), length: 5 };
  }
  if (buf.length >= 2 && buf[0] === 0xeb) return { op: 'jmp', target: BigInt.asUintN(64, at + 2n + BigInt(buf.readInt8(1))), length: 2 };
  return null;
}

/**
 * An indirect CALL/JMP through a register (`ff d0+r`, `ff e0+r`, with REX.B 41 for r8–r15),
 * optionally preceded by LFENCE (0f ae e8) and, for a conditional site, by a short Jcc (7x ib):
 * what a retpoline call site becomes when retpolines are not needed. Returns its length or 0.
 */
export function indirectBranchLength(buf: Buffer): number {
  let i = 0;
  if (buf.length >= 2 && buf[0] >= 0x70 && buf[0] <= 0x7f) i = 2;
  if (buf.length >= i + 3 && buf[i] === 0x0f && buf[i + 1] === 0xae && buf[i + 2] === 0xe8) i += 3;
  if (buf[i] === 0x41) i++;
  if (buf.length >= i + 2 && buf[i] === 0xff && ((buf[i + 1] & 0xf8) === 0xd0 || (buf[i + 1] & 0xf8) === 0xe0)) return i + 2;
  return 0;
}
