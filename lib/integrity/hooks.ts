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
import { earlyExit } from './prologue';

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
  /** Whether an address lies in the trampoline of a registered ftrace_ops (ftrace builds those outside core text). */
  isOpsTrampoline?(address: bigint): boolean;
}

/** What the kernel's ftrace record says of a function's site. */
export interface FtraceSite {
  /** Offset of the site in the function. */
  offset: number;
  /** FTRACE_FL_ENABLED: the site must call a trampoline; clear: it must be the NOP. */
  enabled: boolean;
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

/** Whether the 4 bytes at the start are ENDBR64, or the 4-byte NOP the kernel seals an unused one with. */
function endbrAt(code: Buffer): boolean {
  return code.length >= 4 && (code.subarray(0, 4).equals(ENDBR64) || (code[0] === 0x0f && code[1] === 0x1f && code[2] === 0x40));
}

/** Where the function's ftrace site is: after ENDBR64 (or the 4-byte NOP FineIBT puts there), else at 0. */
function fentrySlot(code: Buffer): number {
  return code.length >= 9 && endbrAt(code) ? 4 : 0;
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
  if (at === 0 && slot <= 4 && ins.length === 5 && code.length >= 9 && code.subarray(5, 9).equals(tail)) return Buffer.concat([ENDBR64, FTRACE_NOP.subarray(0, 1)]);
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
 * CALL/JMP there can be put back as the ftrace NOP; `site` is the kernel's own record of that
 * site, which says where it is and which state it must be in. A traceable function is a syscall
 * handler, whose first instruction after the site must not return or leave at once (prologue.ts).
 */
export async function scanFunction(code: Buffer, address: bigint, ctx: ScanContext, opts: { traceable?: boolean; site?: FtraceSite } = {}): Promise<FunctionScan> {
  const { symbols } = ctx;
  const { instructions, stoppedAt } = decodeAll(code, address);
  const hooks: Hook[] = [];
  const callees = new Set<bigint>();
  const traceable = opts.traceable === true || opts.site !== undefined;
  const slot = opts.site?.offset ?? fentrySlot(code);
  const bytesOf = (ins: Instruction, extra = 0) => Buffer.from(code.subarray(ins.offset, ins.offset + ins.length + extra));
  const add = (ins: Instruction, how: string, target?: bigint, extra = 0) => {
    const good = knownGood(code, ins.offset, slot, ins, traceable);
    hooks.push({ address: address + BigInt(ins.offset), bytes: bytesOf(ins, extra), target, how, good, fentry: ins.offset === slot || (ins.offset === 0 && good !== undefined) });
  };
  const outside = (t: bigint) => !symbols.inCoreText(t);
  const isTrampoline = (t: bigint) => symbols.namesAt(t).some((n) => FTRACE_TRAMPOLINE.test(n)) || ctx.isOpsTrampoline?.(t) === true;
  /** What the state of the ftrace site must be, in words. */
  const siteState = opts.site === undefined ? 'the ftrace NOP or a call to an ftrace trampoline' : opts.site.enabled ? 'a call to an ftrace trampoline (its record: enabled)' : 'the ftrace NOP (its record: not enabled)';
  let prologueAt = -1;
  let prologue: Hook | undefined;
  for (let i = 0; i < instructions.length; i++) {
    const ins = instructions[i];
    const next = instructions[i + 1];
    const atEntry = ins.offset <= slot;
    if (traceable && ins.offset < slot) {
      // before the site only ENDBR64 (or its sealed NOP) belongs; an instruction there that is
      // something else, or that runs into the site, was written over them
      if ((ins.offset === 0 && !endbrAt(code)) || ins.offset + ins.length > slot) {
        const exit = earlyExit(code, instructions, i, symbols);
        const target = ins.kind === 'jmp' || ins.kind === 'call' ? ins.value : undefined;
        add(ins, target !== undefined && outside(target) ? `${ins.kind} to ${hex(target)} over the entry` : `the entry before the ftrace site holds ${bytesOf(ins).toString('hex')}${exit ? `: ${exit}` : ''}`, target);
        break;
      }
      continue;
    }
    if (traceable && ins.offset === slot && ins.kind !== 'int3') {
      const nop = code.length >= slot + 5 && code.subarray(slot, slot + 5).equals(FTRACE_NOP);
      const call = ins.kind === 'call' && ins.length === 5 && ins.value !== undefined && isTrampoline(ins.value);
      const ok = opts.site === undefined ? nop || call : opts.site.enabled ? call : nop;
      if (ok) {
        prologueAt = i + 1;
        continue;
      }
      const inside = ins.value !== undefined && ins.value >= address && ins.value < address + BigInt(code.length);
      if ((ins.kind === 'call' || ins.kind === 'jmp') && ins.length === 5 && ins.value !== undefined && !inside) {
        if (outside(ins.value)) add(ins, `${ins.kind} to ${hex(ins.value)}${call ? `, where the ftrace site must be ${siteState}` : ''}`, ins.value);
        else add(ins, `ftrace site ${ins.kind === 'call' ? 'calls' : 'jumps to'} ${symbols.describe(ins.value)}, not an ftrace trampoline`, ins.value);
        continue;
      }
      const exit = earlyExit(code, instructions, i, symbols);
      add(ins, `the ftrace site holds ${bytesOf(ins).toString('hex')} where it must be ${siteState}${exit ? `: ${exit}` : ''}`, ins.kind === 'jmp' ? ins.value : undefined);
      continue;
    }
    if (traceable && i === prologueAt) {
      // reported after the other rules, which say more of a jump that leaves core text
      const exit = earlyExit(code, instructions, i, symbols);
      if (exit) {
        const extra = next && (next.kind === 'ret' || next.kind === 'jmp') && !(ins.kind === 'jmp' || ins.kind === 'ret' || ins.kind === 'jmp-indirect') ? next.length : 0;
        prologue = { address: address + BigInt(ins.offset), bytes: bytesOf(ins, extra), target: ins.kind === 'jmp' ? ins.value : undefined, how: `the handler ${exit}`, fentry: false };
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
  if (prologue && !hooks.some((x) => x.address === prologue.address)) hooks.push(prologue);
  return { hooks, callees: [...callees], decoded: stoppedAt ?? code.length };
}
