/**
 * The integrity checks that need no vmlinux, on byte fixtures: the instruction decoder against
 * objdump on a gcc -O2 fixture; the hook detector on hand-assembled functions (clean entries,
 * ftrace sites, every way out of core text, and what can be restored); the syscall table and
 * IDT rules on synthetic tables and a synthetic symbol map.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeAll, decodeAt } from '../../lib/integrity/x86-decode';
import { SymbolMap, type CodeSymbol } from '../../lib/integrity/symbol-map';
import { FTRACE_NOP, scanFunction, type ScanContext } from '../../lib/integrity/hooks';
import { idtFindings, tableFindings } from '../../lib/integrity/kallsyms-checks';
import { SYSCALLS_X86_64 } from '../../lib/inject/syscalls';
import { KernelLayout } from '../../lib/kernel/layout';

const TEXT = 0xffffffff81000000n;
const ETEXT = TEXT + 0x100000n;
const MODULE = 0xffffffffc0400000n;
/** A kernel without the layout variables: only module space and the halves are told apart. */
const LAYOUT = new KernelLayout(4, undefined);
const h = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const rel32 = (from: bigint, length: number, to: bigint) => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(Number(to - (from + BigInt(length))));
  return b.toString('hex');
};

t.test('the decoder agrees with objdump on a gcc -O2 fixture', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-x86-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const src = join(dir, 'f.c');
  writeFileSync(src, `
    #include <string.h>
    struct s { long a[8]; int b; double d; };
    long f1(struct s *p, int i) { return p->a[i & 7] * 3 + p->b; }
    double f2(struct s *p, double x) { return p->d * x + (double)p->b; }
    long f3(long (*fn)(long), long v) { return fn(v) + fn(v + 0x12345678); }
    void f4(char *d, const char *s, unsigned long n) { memcpy(d, s, n); d[n] = 0; }
    unsigned f5(unsigned x) { switch (x) { case 1: return 7; case 2: return 9; case 300: return 4; default: return x * 0x1001; } }
    long f6(volatile long *p) { __atomic_fetch_add(p, 5, __ATOMIC_SEQ_CST); return __builtin_popcountl(*p) + __builtin_ctzl(*p | 1); }
    float f7(float *v, int n) { float s = 0; for (int i = 0; i < n; i++) s += v[i] * v[i]; return s; }
    long f8(long a, long b) { return a > b ? a / (b | 1) : (a << (b & 63)) ^ 0x123456789abcdef0L; }
  `);
  const obj = join(dir, 'f.o');
  try {
    execFileSync('gcc', ['-O2', '-mavx2', '-fcf-protection=full', '-c', src, '-o', obj]);
  } catch (err) {
    t.pass(`gcc is not usable here: ${(err as Error).message}`, { skip: true });
    t.end();
    return;
  }
  const dump = execFileSync('objdump', ['-d', '--no-show-raw-insn', '-j', '.text', obj]).toString();
  const want = [...dump.matchAll(/^\s+([0-9a-f]+):/gm)].map((m) => parseInt(m[1], 16));
  execFileSync('objcopy', ['-O', 'binary', '--only-section=.text', obj, join(dir, 'text.bin')]);
  const text = readFileSync(join(dir, 'text.bin'));
  const got = decodeAll(text, 0n);
  t.equal(got.stoppedAt, undefined, 'every byte decodes');
  t.same(got.instructions.map((i) => i.offset), want, `${want.length} instruction boundaries as objdump has them`);
  t.end();
});

t.test('decoded meanings', (t) => {
  const at = 0x1000n;
  t.match(decodeAt(h('e9 10000000'), 0, at), { kind: 'jmp', length: 5, value: 0x1015n });
  t.match(decodeAt(h('e8 fbffffff'), 0, at), { kind: 'call', value: 0x1000n });
  t.match(decodeAt(h('0f 84 00010000'), 0, at), { kind: 'jcc', length: 6, value: 0x1106n });
  t.match(decodeAt(h('48 b8 0000 40c0 ffff ffff'), 0, at), { kind: 'mov-imm', register: 0, value: MODULE, length: 10 });
  t.match(decodeAt(h('49 c7 c3 00 00 40 c0'), 0, at), { kind: 'mov-imm', register: 11, value: MODULE });
  t.match(decodeAt(h('68 00 00 40 c0'), 0, at), { kind: 'push-imm', value: MODULE });
  t.match(decodeAt(h('41 ff e3'), 0, at), { kind: 'jmp-indirect', register: 11 });
  t.match(decodeAt(h('ff 25 10000000'), 0, at), { kind: 'jmp-indirect', memory: 0x1016n });
  t.match(decodeAt(h('f3 0f 1e fa'), 0, at), { kind: 'endbr', length: 4 });
  t.match(decodeAt(FTRACE_NOP, 0, at), { kind: 'nop', length: 5 });
  t.match(decodeAt(h('c5 fd 6f 04 24'), 0, at), { length: 5 }, 'VEX vmovdqa (%rsp),%ymm0');
  t.match(decodeAt(h('f7 c7 00 01 00 00'), 0, at), { length: 6 }, 'test $imm32 (F7 /0 has an immediate)');
  t.throws(() => decodeAt(h('e9 0000'), 0, at), /undecodable/, 'cut by the end of the buffer');
  t.throws(() => decodeAt(h('06'), 0, at), /undecodable/, 'push %es is invalid in 64-bit mode');
  t.end();
});

/** A little core text: handlers, the ftrace trampolines, a thunk; the functions under test start at FN. */
const FN = TEXT + 0x1000n;
function symbolMap(extra: CodeSymbol[] = []): SymbolMap {
  const syms: CodeSymbol[] = [
    { name: '_stext', address: TEXT },
    { name: 'ftrace_caller', address: TEXT + 0x100n },
    { name: 'ftrace_regs_caller', address: TEXT + 0x200n },
    { name: 'helper', address: TEXT + 0x300n },
    { name: '__x86_return_thunk', address: TEXT + 0x400n },
    { name: 'fn', address: FN },
    { name: 'after_fn', address: FN + 0x100n },
    { name: '_etext', address: ETEXT },
    ...extra,
  ];
  return new SymbolMap(syms, TEXT, ETEXT);
}

function context(symbols: SymbolMap, memory: Array<[bigint, Buffer]> = []): ScanContext {
  return {
    symbols,
    read: async (a, n) => {
      for (const [at, b] of memory) if (a >= at && a + BigInt(n) <= at + BigInt(b.length)) return b.subarray(Number(a - at), Number(a - at) + n);
      return null;
    },
  };
}

/** A function body: prologue, a call to `helper`, a jump-label JMP inside itself, epilogue. */
function body(at: bigint): string {
  return `55 48 89 e5 e8 ${rel32(at + 4n, 5, TEXT + 0x300n)} eb 01 90 5d e9 ${rel32(at + 12n, 5, TEXT + 0x400n)} cc cc cc`;
}

t.test('the hook detector', async (t) => {
  const symbols = symbolMap();
  const ctx = context(symbols);
  const scan = (hexCode: string, traceable = true) => scanFunction(h(hexCode), FN, ctx, { traceable });

  let r = await scan(`0f1f440000 ${body(FN + 5n)}`);
  t.same(r.hooks, [], 'a clean entry: the ftrace NOP, then code that stays in core text');
  t.same(r.callees, [TEXT + 0x300n], 'its direct callee is found (the return thunk is not followed)');
  r = await scan(`f30f1efa 0f1f440000 ${body(FN + 9n)}`);
  t.same(r.hooks, [], 'ENDBR64 then the ftrace NOP (an IBT kernel)');
  r = await scan(`e8 ${rel32(FN, 5, TEXT + 0x200n)} ${body(FN + 5n)}`);
  t.same(r.hooks, [], 'the ftrace site calling ftrace_regs_caller (a tracer attached)');

  r = await scan(`e9 ${rel32(FN, 5, MODULE)} ${body(FN + 5n)}`);
  t.equal(r.hooks.length, 1, 'a JMP into module space over the ftrace site');
  t.match(r.hooks[0], { address: FN, target: MODULE, fentry: true, how: /^jmp to 0xffffffffc0400000/ });
  t.same(r.hooks[0].good, FTRACE_NOP, 'on a traced function its original bytes are the ftrace NOP');
  r = await scan(`e9 ${rel32(FN, 5, MODULE)} ${body(FN + 5n)}`, false);
  t.equal(r.hooks[0].good, undefined, 'on a function not known to be traced, nothing can be restored');
  r = await scan(`e9 ${rel32(FN, 5, MODULE)} 1f440000 ${body(FN + 9n)}`);
  t.same(r.hooks[0].good, h('f30f1efa 0f'), 'a JMP over ENDBR64 whose tail is the ftrace NOP\'s: ENDBR64 and the NOP\'s first byte');
  r = await scan(`cc 1f440000 ${body(FN + 5n)}`);
  t.match(r.hooks[0], { how: /breakpoint/, fentry: true });
  t.same(r.hooks[0].good, h('0f'), 'an INT3 over the ftrace NOP: its first byte');
  r = await scan(`e8 ${rel32(FN, 5, TEXT + 0x300n)} ${body(FN + 5n)}`);
  t.match(r.hooks[0], { how: /ftrace site calls helper, not an ftrace trampoline/ }, 'the ftrace site calling other kernel code');

  r = await scan(`0f1f440000 48b8 0000 40c0 ffff ffff ffe0 ${body(FN + 17n)}`);
  t.match(r.hooks, [{ address: FN + 5n, target: MODULE, how: /mov 0xffffffffc0400000 to %r0; jmp \*%r0/ }], 'MOVABS + JMP reg');
  r = await scan(`0f1f440000 68 000040c0 c3 ${body(FN + 11n)}`);
  t.match(r.hooks, [{ target: MODULE, how: /push 0xffffffffc0400000; ret/ }], 'PUSH imm32 + RET');
  r = await scan(`0f1f440000 50 c3 ${body(FN + 7n)}`);
  t.match(r.hooks, [{ how: /push %r0; ret/ }], 'PUSH reg + RET, target unknown');
  const slot = FN + 0x80n;
  const ptr = Buffer.alloc(8);
  ptr.writeBigUInt64LE(MODULE);
  r = await scanFunction(h(`0f1f440000 ff25 ${rel32(FN + 5n, 6, slot)} ${body(FN + 11n)}`), FN, context(symbols, [[slot, ptr]]), { traceable: true });
  t.match(r.hooks, [{ target: MODULE, how: /jmp \*0xffffffff81001080 \(= 0xffffffffc0400000\)/ }], 'JMP through a RIP-relative pointer into module space');
  r = await scan(`0f1f440000 55 48 89 e5 e8 ${rel32(FN + 9n, 5, MODULE)} 5d c3`);
  t.match(r.hooks, [{ address: FN + 9n, target: MODULE, fentry: false }], 'a CALL bent into module space in the middle of the function');
  t.equal(r.hooks[0].good, undefined, 'its original bytes cannot be told');
  r = await scanFunction(h(`0f1f440000 e8 ${rel32(FN + 5n, 5, MODULE)} c3`), FN, context(symbols, [[MODULE, h('41 ff e3 cc')]]), { traceable: true });
  t.same(r.hooks, [], 'a CALL to an indirect-branch thunk outside core text (ITS) is not a hook');
  t.end();
});

t.test('the ftrace site as its record says, and a handler that returns or leaves at once', async (t) => {
  const symbols = symbolMap();
  const tramp = 0xffffffffc0800000n;
  const ctx: ScanContext = { ...context(symbols), isOpsTrampoline: (a) => a >= tramp && a < tramp + 0x1000n };
  const site = (offset: number, enabled: boolean) => ({ site: { offset, enabled } });
  const scan = (hexCode: string, opts: Parameters<typeof scanFunction>[3] = { traceable: true }) => scanFunction(h(hexCode), FN, ctx, opts);
  // the entries of Debian's 6.1 __x64_sys_kill and 7.x __x64_sys_getpid, as objdump shows them
  const kill61 = `0f1f440000 4154 b905000000 be01000000 ${body(FN + 15n)}`;
  t.same((await scan(kill61, site(0, false))).hooks, [], 'a clean 6.1 handler: the NOP its record says, then its prologue');
  t.same((await scan(`f30f1efa 0f1f440000 31d2 be01000000 ${body(FN + 16n)}`, site(4, false))).hooks, [], 'a clean IBT handler: ENDBR64, the site at +4');

  let r = await scan(`48c7c0ffffffff c3 ${body(FN + 8n)}`, site(0, false));
  t.equal(r.hooks.length, 1, '"mov $-1, %rax; ret" over the entry (the acceptance check): one hook');
  t.match(r.hooks[0], { address: FN, fentry: true, how: /the ftrace site holds 48c7c0ffffffff where it must be the ftrace NOP \(its record: not enabled\): returns -1 \(an errno\) at once/ });
  t.equal(r.hooks[0].good, undefined, 'the bytes after the site are gone too: nothing to put back');
  r = await scan(`48c7c0ffffffff c3 ${body(FN + 8n)}`);
  t.match(r.hooks, [{ address: FN, how: /must be the ftrace NOP or a call to an ftrace trampoline: returns -1/ }], 'found from the bytes alone too, where the kernel keeps no record');
  r = await scan(`48c7c0ffffffff c3 0f1f440000 ${body(FN + 13n)}`, site(4, false));
  t.match(r.hooks, [{ address: FN, how: /the entry before the ftrace site holds 48c7c0ffffffff: returns -1/ }], 'over ENDBR64 and into the site of an IBT kernel');
  r = await scan(`c3 90 90 90 0f1f440000 ${body(FN + 9n)}`, site(4, false));
  t.match(r.hooks, [{ address: FN, how: /the entry before the ftrace site holds c3: returns at once/ }], 'a RET over ENDBR64');

  r = await scan(`0f1f440000 c3 ${body(FN + 6n)}`, site(0, false));
  t.match(r.hooks, [{ address: FN + 5n, fentry: false, how: 'the handler returns at once, before any of its work' }], 'a RET right after the site');
  t.equal(r.hooks[0].good, undefined);
  r = await scan(`0f1f440000 31c0 e9 ${rel32(FN + 7n, 5, TEXT + 0x400n)} ${body(FN + 12n)}`, site(0, false));
  t.match(r.hooks, [{ address: FN + 5n, how: 'the handler returns 0 at once, before any of its work' }], 'xor %eax,%eax then the return thunk');
  t.equal(r.hooks[0].bytes.length, 7, 'the hook\'s bytes are both instructions');
  r = await scan(`0f1f440000 b8f3ffffff c3 ${body(FN + 11n)}`, site(0, false));
  t.match(r.hooks, [{ how: /returns -13 \(an errno\) at once/ }], 'an errno (-EACCES) in %eax, then RET');
  r = await scan(`0f1f440000 e9 ${rel32(FN + 5n, 5, TEXT + 0x300n)} ${body(FN + 10n)}`, site(0, false));
  t.match(r.hooks, [{ address: FN + 5n, target: TEXT + 0x300n, how: 'the handler jumps away at once, to helper' }], 'a JMP within core text, right after the site');
  r = await scan(`0f1f440000 e9 ${rel32(FN + 5n, 5, MODULE)} ${body(FN + 10n)}`, site(0, false));
  t.match(r.hooks, [{ address: FN + 5n, how: /^jmp to 0xffffffffc0400000$/ }], 'a JMP out of core text is said as such, once');
  t.equal(r.hooks.length, 1);

  r = await scan(`e8 ${rel32(FN, 5, TEXT + 0x100n)} ${body(FN + 5n)}`, site(0, true));
  t.same(r.hooks, [], 'an enabled site calling ftrace_caller');
  r = await scan(`e8 ${rel32(FN, 5, tramp + 0x40n)} ${body(FN + 5n)}`, site(0, true));
  t.same(r.hooks, [], 'an enabled site calling the trampoline of a registered ftrace_ops (outside core text)');
  r = await scan(`e8 ${rel32(FN, 5, tramp + 0x40n)} ${body(FN + 5n)}`, site(0, false));
  t.match(r.hooks, [{ address: FN, how: /^call to 0xffffffffc0800040, where the ftrace site must be the ftrace NOP \(its record: not enabled\)$/ }], 'the same call where the record says the NOP');
  t.same(r.hooks[0].good, FTRACE_NOP, 'and the NOP is put back');
  r = await scan(`0f1f440000 ${body(FN + 5n)}`, site(0, true));
  t.match(r.hooks, [{ address: FN, how: /holds 0f1f440000 where it must be a call to an ftrace trampoline \(its record: enabled\)/ }], 'the NOP where the record says the site is enabled');
  r = await scan(`e8 ${rel32(FN, 5, MODULE)} ${body(FN + 5n)}`, site(0, true));
  t.match(r.hooks, [{ address: FN, how: /^call to 0xffffffffc0400000$/ }], 'an enabled site calling module code that is no trampoline');
  t.end();
});

t.test('syscall tables', (t) => {
  const kill = TEXT + 0x2000n, getpid = TEXT + 0x2100n, uname = TEXT + 0x2200n, olduname = TEXT + 0x2280n, ni = TEXT + 0x2300n, x32ish = TEXT + 0x2400n;
  const symbols = symbolMap([
    { name: '__x64_sys_kill', address: kill },
    { name: '__x64_sys_getpid', address: getpid },
    { name: '__x64_sys_newuname', address: uname },
    { name: '__x64_sys_uname', address: olduname },
    { name: '__x64_sys_ni_syscall', address: ni },
    { name: '__x64_sys_sethostname', address: x32ish },
    { name: '__ia32_sys_kill', address: TEXT + 0x2500n },
  ]);
  const entries = 500;
  const bytes = Buffer.alloc((entries + 2) * 8); // two zero entries of padding
  for (let nr = 0; nr < entries; nr++) bytes.writeBigUInt64LE(ni, nr * 8);
  bytes.writeBigUInt64LE(kill, SYSCALLS_X86_64.kill * 8);
  bytes.writeBigUInt64LE(getpid, SYSCALLS_X86_64.getpid * 8);
  bytes.writeBigUInt64LE(uname, SYSCALLS_X86_64.uname * 8);
  bytes.writeBigUInt64LE(x32ish, SYSCALLS_X86_64.sethostname * 8);
  bytes.writeBigUInt64LE(x32ish, 480 * 8); // a number vmictl has no name for: any handler will do
  const start = 0xffffffff82000000n;
  t.same(tableFindings(symbols, LAYOUT, 'sys_call_table', start, bytes), [], 'each number holds its own handler (uname: sys_newuname), the rest sys_ni_syscall');

  const bad = Buffer.from(bytes);
  bad.writeBigUInt64LE(MODULE, SYSCALLS_X86_64.kill * 8);
  bad.writeBigUInt64LE(kill, SYSCALLS_X86_64.getpid * 8);
  bad.writeBigUInt64LE(olduname, SYSCALLS_X86_64.uname * 8);
  bad.writeBigUInt64LE(TEXT + 0x300n, 481 * 8);
  const f = tableFindings(symbols, LAYOUT, 'sys_call_table', start, bad);
  t.same(f.map((x) => x.symbol), ['sys_call_table[39] (getpid)', 'sys_call_table[62] (kill)', 'sys_call_table[63] (uname)', 'sys_call_table[481]'], 'a module pointer, two handlers swapped in, and an unnamed number pointing at other code');
  t.match(f[1], { address: start + 62n * 8n, expected: `0x${kill.toString(16)} (__x64_sys_kill)`, found: '0xffffffffc0400000', detail: /module space/, good: kill });
  t.equal(f[3].good, undefined, 'no known-good value for a number vmictl has no name for');
  t.same(tableFindings(symbols, LAYOUT, 'sys_call_table', start, bad, [SYSCALLS_X86_64.kill]).map((x) => x.symbol), ['sys_call_table[62] (kill)'], 'only the numbers asked for');

  const ia32 = Buffer.alloc(16);
  ia32.writeBigUInt64LE(TEXT + 0x2500n, 0);
  ia32.writeBigUInt64LE(kill, 8);
  t.same(tableFindings(symbols, LAYOUT, 'ia32_sys_call_table', start, ia32).map((x) => x.symbol), ['ia32_sys_call_table[1]'], 'the ia32 table must point at __ia32_sys_* handlers');
  t.end();
});

t.test('IDT gates', (t) => {
  const symbols = symbolMap([
    { name: 'asm_exc_page_fault', address: TEXT + 0x3000n },
    { name: 'irq_entries_start', address: TEXT + 0x4000n },
    { name: 'early_idt_handler_array', address: ETEXT + 0x10000n },
  ]);
  const gate = (target: bigint, selector = 0x10) => {
    const g = Buffer.alloc(16);
    g.writeUInt16LE(Number(target & 0xffffn), 0);
    g.writeUInt16LE(selector, 2);
    g.writeUInt16LE(0x8e00, 4);
    g.writeUInt16LE(Number((target >> 16n) & 0xffffn), 6);
    g.writeUInt32LE(Number(target >> 32n), 8);
    return g;
  };
  const idt = Buffer.alloc(256 * 16);
  gate(TEXT + 0x3000n).copy(idt, 14 * 16);
  gate(TEXT + 0x4000n + 8n * 3n).copy(idt, 35 * 16);
  gate(ETEXT + 0x10000n + 9n * 2n).copy(idt, 2 * 16);
  gate(ETEXT + 0x10000n + 13n * 22n).copy(idt, 22 * 16); // 13-byte stubs with IBT
  t.same(idtFindings(symbols, LAYOUT, 0xfffffe0000000000n, idt), [], 'an asm_ entry, an irq stub, an early handler; absent gates ignored');
  gate(MODULE).copy(idt, 3 * 16);
  gate(TEXT + 0x3004n).copy(idt, 4 * 16);
  gate(TEXT + 0x3000n, 0x33).copy(idt, 5 * 16);
  t.same(idtFindings(symbols, LAYOUT, 0xfffffe0000000000n, idt).map((f) => f.symbol), ['idt_table[3]', 'idt_table[4]', 'idt_table[5]'], 'into a module, into the middle of an entry, another selector');
  t.end();
});
