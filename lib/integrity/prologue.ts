/**
 * Whether a syscall handler's first instruction (after its ftrace site) is one no compiler puts
 * there: a SYSCALL_DEFINE wrapper always reads its arguments or saves registers before it
 * returns or tail-calls, so code that returns at once (`ret`, a jump to the return thunk, a value
 * put in %rax and then a return) or leaves at once (`jmp` anywhere, even within core text) is the
 * shape of the two cheapest rootkit patches: "return early" and "go elsewhere".
 */
import type { Instruction } from './x86-decode';
import type { SymbolMap } from './symbol-map';

/** The kernel's return thunks: a JMP to one is a RET. */
const RETURN_THUNK = /^(__x86_return_thunk|srso_return_thunk|srso_alias_return_thunk|retbleed_return_thunk|__x86_return_skl|srso_untrain_ret|entry_untrain_ret|zen_untrain_ret)$/;

/** What a value in %rax reads as: an errno (-1..-4095) by number, else its value. */
function valueWords(v: bigint, wide: boolean): string {
  const signed = wide ? BigInt.asIntN(64, v) : BigInt.asIntN(32, v);
  if (signed < 0n && signed >= -4095n) return `${signed} (an errno)`;
  return signed.toString();
}

function isReturn(ins: Instruction | undefined, symbols: SymbolMap): boolean {
  if (!ins) return false;
  if (ins.kind === 'ret') return true;
  return ins.kind === 'jmp' && ins.value !== undefined && symbols.namesAt(ins.value).some((n) => RETURN_THUNK.test(n));
}

/**
 * The value the instruction `ins` (bytes in `code`) puts in %rax/%eax, when it only sets one:
 * `mov $imm, %eax/%rax`, `xor %eax,%eax`, `or $-1, %rax`.
 */
function setsReturnValue(code: Buffer, ins: Instruction): { value: bigint; wide: boolean } | undefined {
  if (ins.kind === 'mov-imm' && ins.register === 0 && ins.value !== undefined) return { value: ins.value, wide: ins.length === 7 || ins.length === 10 };
  const b = code.subarray(ins.offset, ins.offset + ins.length);
  const rex = b[0] >= 0x40 && b[0] <= 0x4f ? b[0] : 0;
  const body = rex ? b.subarray(1) : b;
  // xor/sub %eax,%eax (31 c0, 33 c0, 29 c0, 2b c0): zero
  if (body.length === 2 && [0x31, 0x33, 0x29, 0x2b].includes(body[0]) && body[1] === 0xc0 && (rex & 5) === 0) return { value: 0n, wide: false };
  // or $-1, %rax (48 83 c8 ff)
  if (body.length === 3 && body[0] === 0x83 && body[1] === 0xc8 && body[2] === 0xff && (rex & 5) === 0) return { value: -1n, wide: (rex & 8) !== 0 };
  return undefined;
}

/**
 * Describes the code at `instructions[i]` when it returns or leaves at once (see the file's
 * comment), or undefined when it starts the way compiled handlers start.
 */
export function earlyExit(code: Buffer, instructions: readonly Instruction[], i: number, symbols: SymbolMap): string | undefined {
  const ins = instructions[i];
  if (!ins) return undefined;
  if (isReturn(ins, symbols)) return 'returns at once, before any of its work';
  if (ins.kind === 'jmp' && ins.value !== undefined) return `jumps away at once, to ${symbols.describe(ins.value)}`;
  if (ins.kind === 'jmp-indirect') return 'jumps away at once, through a register or memory';
  const set = setsReturnValue(code, ins);
  if (set && isReturn(instructions[i + 1], symbols)) return `returns ${valueWords(set.value, set.wide)} at once, before any of its work`;
  return undefined;
}
