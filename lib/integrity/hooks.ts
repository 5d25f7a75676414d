/**
 * Inline hooks found without known-good bytes: a function's code is decoded as the CPU runs it,
 * and every way out of core kernel text (_stext.._etext) is a hook: a direct CALL/JMP/Jcc whose
 * target lies elsewhere (module or vmalloc space, where a rootkit's code lives), an indirect one
 * whose target the bytes themselves give (MOVABS + JMP reg, PUSH imm + RET, JMP [rip+x]), and the
 * forms no compiler emits (PUSH + RET). The ftrace site at the entry (`call __fentry__`, 5 bytes
 * right at the start or after ENDBR64) must be the ftrace NOP or a call to one of the kernel's
 * ftrace trampolines; a breakpoint at the entry is reported too (a kprobe, or a hook).
 *
 * Boot-time patching (alternatives, jump labels, static calls, retpolines, return thunks) writes
 * only code that stays in core text, so it never matches these rules.
 */
import { decodeAll, type Instruction } from './x86-decode';
import type { SymbolMap } from './symbol-map';

/** The 5-byte NOP ftrace writes over `call __fentry__` at boot (ftrace_nop_replace). */
export const FTRACE_NOP = Buffer.from([0x0f, 0x1f, 0x44, 0x00, 0x00]);
const ENDBR64 = Buffer.from([0xf3, 0x0f, 0x1e, 0xfa]);
/** The kernel's own ftrace entry trampolines (arch/x86/kernel/ftrace_64.S). */
const FTRACE_TRAMPOLINE = /^(ftrace_caller|ftrace_regs_caller|ftrace_stub|ftrace_stub_graph|__fentry__|return_to_handler)$/;
/** Shared code every function reaches (thunks, tracing): not followed as callees. */
const SHARED = /^(__fentry__|ftrace_|__x86_return_thunk|__x86_indirect_thunk_|__x86_indirect_its_thunk_|__x86_indirect_call_thunk_|__x86_indirect_jump_thunk_|__stack_chk_fail|__SCT__|__static_call_return|__cfi_|__pfx_|srso_|retbleed_|__ubsan_|__warn_|warn_|__x86_return_skl)/;

export interface Hook {
  /** Run-time address of the instruction that leaves core text. */
  address: bigint;
  /** The instruction's bytes as found. */
  bytes: Buffer;
  /** Where it goes, when the bytes tell. */
  target?: bigint;
  /** How it leaves, for the report ("jmp rel32", "push imm32; ret", "ftrace site calls ..."). */
  how: string;
  /** The known-good bytes for these addresses when they can be told without a vmlinux (the ftrace NOP). */
  good?: Buffer;
  /** Whether the change is at the function's ftrace site. */
  fentry: boolean;
}

export interface ScanContext {
  symbols: SymbolMap;
  /** Reads kernel virtual memory; null where unmapped. */
  read(address: bigint, length: number): Promise<Buffer | null>;
}

export interface FunctionScan {
  hooks: Hook[];
  /** Functions this one calls directly (run-time addresses of symbol starts in core text). */
  callees: bigint[];
  /** Bytes decoded before the function's end or the first undecodable byte. */
  decoded: number;
}

/**
 * Whether the code at a module-space target is only an indirect-branch thunk (`jmp *%reg`,
 * then INT3): what the ITS mitigation allocates outside core text for the kernel's own indirect
 * calls; it goes nowhere the register did not already say.
 */
function isIndirectThunk(code: Buffer | null): boolean {
  if (!code) return false;
  let i = code[0] === 0x41 ? 1 : 0;
  if (code[i] !== 0xff || (code[i + 1] & 0xf8) !== 0xe0) return false;
  i += 2;
  return code[i] === 0xcc;
}

/** Where the function's ftrace site is: after ENDBR64 (or the 4-byte NOP FineIBT puts there), else at 0. */
function fentrySlot(code: Buffer): number {
  if (code.length >= 9 && (code.subarray(0, 4).equals(ENDBR64) || (code[0] === 0x0f && code[1] === 0x1f && code[2] === 0x40))) return 4;
  return 0;
}

/**
 * The known-good bytes of a hooked ftrace site, when the bytes left around it tell them:
 *   a 5-byte CALL/JMP written over the site (traceable functions only: `traceable`) → the NOP;
 *   only its first byte changed (INT3) and the rest is the NOP's tail → the NOP;
 *   a JMP at offset 0 over ENDBR64 whose last 4 bytes are still the NOP's tail → ENDBR64 + NOP's first byte.
 */
function knownGood(code: Buffer, at: number, slot: number, ins: Instruction, traceable: boolean): Buffer | undefined {
  const tail = FTRACE_NOP.subarray(1);
  // 1f cannot start an instruction in 64-bit mode: bytes 5..8 equal to the NOP's tail are one
  if (at === 0 && slot === 0 && ins.length === 5 && code.length >= 9 && code.subarray(5, 9).equals(tail)) return Buffer.concat([ENDBR64, FTRACE_NOP.subarray(0, 1)]);
  if (at === slot && code.length >= slot + 5 && code.subarray(slot + 1, slot + 5).equals(tail)) return FTRACE_NOP.subarray(0, 1);
  if (at === slot && ins.length === 5 && (ins.kind === 'call' || ins.kind === 'jmp') && traceable) return FTRACE_NOP;
  return undefined;
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/**
 * Scans one function (`code`: its bytes at run-time address `address`). `traceable` says its
 * ftrace site is known to exist (SYSCALL_DEFINE wrappers are always traced), so that a 5-byte
 * CALL/JMP there can be put back as the ftrace NOP.
 */
export async function scanFunction(code: Buffer, address: bigint, ctx: ScanContext, opts: { traceable?: boolean } = {}): Promise<FunctionScan> {
  const { symbols } = ctx;
  const { instructions, stoppedAt } = decodeAll(code, address);
  const hooks: Hook[] = [];
  const callees = new Set<bigint>();
  const slot = fentrySlot(code);
  const bytesOf = (ins: Instruction, extra = 0) => Buffer.from(code.subarray(ins.offset, ins.offset + ins.length + extra));
  const add = (ins: Instruction, how: string, target?: bigint, extra = 0) => {
    const good = knownGood(code, ins.offset, slot, ins, opts.traceable === true);
    hooks.push({ address: address + BigInt(ins.offset), bytes: bytesOf(ins, extra), target, how, good, fentry: ins.offset === slot || (ins.offset === 0 && good !== undefined) });
  };
  const outside = (t: bigint) => !symbols.inCoreText(t);
  for (let i = 0; i < instructions.length; i++) {
    const ins = instructions[i];
    const next = instructions[i + 1];
    const atEntry = ins.offset <= slot;
    if (ins.offset === slot && ins.length === 5 && (ins.kind === 'call' || ins.kind === 'jmp') && ins.value !== undefined && symbols.inCoreText(ins.value)) {
      // the ftrace site of a traced function: the NOP, or a call to the kernel's own trampolines
      const trampoline = ins.kind === 'call' && symbols.namesAt(ins.value).some((n) => FTRACE_TRAMPOLINE.test(n));
      if (trampoline) continue;
      const inside = ins.value >= address && ins.value < address + BigInt(code.length);
      if (opts.traceable && !inside) {
        add(ins, `ftrace site ${ins.kind === 'call' ? 'calls' : 'jumps to'} ${symbols.describe(ins.value)}, not an ftrace trampoline`, ins.value);
        continue;
      }
    }
    if (ins.kind === 'int3' && atEntry) {
      add(ins, 'breakpoint (INT3) at the entry: a kprobe, or a hook');
      continue;
    }
    if ((ins.kind === 'call' || ins.kind === 'jmp' || ins.kind === 'jcc') && ins.value !== undefined) {
      if (outside(ins.value)) {
        if (isIndirectThunk(await ctx.read(ins.value, 4))) continue;
        add(ins, `${ins.kind} to ${hex(ins.value)}`, ins.value);
      } else if (ins.kind === 'call' || (ins.kind === 'jmp' && (ins.value < address || ins.value >= address + BigInt(code.length)))) {
        const names = symbols.namesAt(ins.value);
        if (names.length > 0 && !names.some((n) => SHARED.test(n))) callees.add(ins.value);
      }
      continue;
    }
    if (ins.kind === 'push-imm' && next?.kind === 'ret') {
      add(ins, `push ${hex(ins.value!)}; ret`, ins.value, next.length);
      continue;
    }
    if (ins.kind === 'push-reg' && next?.kind === 'ret') {
      const prev = instructions[i - 1];
      const target = prev?.kind === 'mov-imm' && prev.register === ins.register ? prev.value : undefined;
      add(ins, `push %r${ins.register}; ret${target !== undefined ? ` to ${hex(target)}` : ''}`, target, next.length);
      continue;
    }
    if ((ins.kind === 'jmp-indirect' || ins.kind === 'call-indirect') && ins.register !== undefined) {
      const prev = instructions[i - 1];
      if (prev?.kind === 'mov-imm' && prev.register === ins.register && prev.value !== undefined && outside(prev.value)) {
        hooks.push({ address: address + BigInt(prev.offset), bytes: Buffer.from(code.subarray(prev.offset, ins.offset + ins.length)), target: prev.value, how: `mov ${hex(prev.value)} to %r${ins.register}; ${ins.kind === 'jmp-indirect' ? 'jmp' : 'call'} *%r${ins.register}`, fentry: prev.offset === slot });
      }
      continue;
    }
    if ((ins.kind === 'jmp-indirect' || ins.kind === 'call-indirect') && ins.memory !== undefined) {
      const ptr = await ctx.read(ins.memory, 8);
      const target = ptr?.readBigUInt64LE(0);
      if (target !== undefined && outside(target) && !isIndirectThunk(await ctx.read(target, 4))) add(ins, `${ins.kind === 'jmp-indirect' ? 'jmp' : 'call'} *${hex(ins.memory)} (= ${hex(target)})`, target);
    }
  }
  return { hooks, callees: [...callees], decoded: stoppedAt ?? code.length };
}
