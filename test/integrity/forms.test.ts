/**
 * The instruction forms boot-time patching writes, and the per-site rule for the simple kinds.
 */
import t from 'tap';
import { indirectBranchLength, isNops, isPadding, relativeTarget } from '../../lib/integrity/x86-forms';
import { acceptsForm, type PatchSite } from '../../lib/integrity/patch-sites';
import type { KernelImage } from '../../lib/integrity/image';

const b = (hex: string) => Buffer.from(hex.replace(/\s/g, ''), 'hex');
const noImage = {} as KernelImage;

t.test('NOPs and padding', async (t) => {
  t.ok(isNops(b('90 6690 0f1f00 0f1f4000 0f1f440000')), 'the x86_nops forms');
  t.ok(isNops(b('0f1f840000000000 0f1f440000')), 'long NOPs as optimize_nops writes them');
  t.notOk(isNops(b('0f1f4401')), 'a NOP with a displacement that is not zero is not ours');
  t.notOk(isNops(b('e800000000')), 'a call is not a NOP');
  t.ok(isPadding(b('cccccc')), 'INT3 padding');
  t.ok(isPadding(b('eb03cccccc')), 'a short JMP over INT3s');
  t.notOk(isPadding(b('eb04cccccc')), 'a short JMP past the padding is not padding');
});

t.test('branches', async (t) => {
  t.same(relativeTarget(b('e8 fb ff ff ff'), 0x1000n), { op: 'call', target: 0x1000n, length: 5 }, 'call to itself');
  t.same(relativeTarget(b('eb 10'), 0x1000n), { op: 'jmp', target: 0x1012n, length: 2 }, 'short jmp');
  t.equal(indirectBranchLength(b('41 ff d3')), 3, 'call *%r11');
  t.equal(indirectBranchLength(b('0f ae e8 ff e0')), 5, 'lfence; jmp *%rax');
  t.equal(indirectBranchLength(b('75 03 ff e1')), 4, 'jne over; jmp *%rcx');
  t.equal(indirectBranchLength(b('ff 10')), 0, 'call *(%rax) is not a register branch');
});

t.test('per-site forms', async (t) => {
  const jl: PatchSite = { kind: 'jump_label', address: 0x1000n, length: 5, target: 0x1100n };
  const orig = b('0f1f440000');
  const ctx = { image: noImage, original: orig, slide: 0n };
  t.ok(acceptsForm(jl, orig, ctx), 'jump label: the original');
  t.ok(acceptsForm(jl, b('e9 fb 00 00 00'), ctx), 'jump label: JMP to its own target');
  t.notOk(acceptsForm(jl, b('e9 fc 00 00 00'), ctx), 'jump label: JMP anywhere else is a change');
  const lock: PatchSite = { kind: 'smp_lock', address: 0x2000n, length: 1 };
  t.ok(acceptsForm(lock, b('3e'), { image: noImage, original: b('f0'), slide: 0n }), 'smp lock: DS prefix on UP');
  t.notOk(acceptsForm(lock, b('cc'), { image: noImage, original: b('f0'), slide: 0n }), 'smp lock: INT3 is a change');
});
