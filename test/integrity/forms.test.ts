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

t.test('static call: a listed module\'s function, only the one its key holds', async (t) => {
  // a core-kernel site at link-time 0x1000, slid by 0x200000 at run time; module text far above
  const slide = 0x200000n;
  const site: PatchSite = { kind: 'static_call', address: 0x1000n, length: 5, key: 0x9000n };
  const image = { functionAt: () => undefined } as unknown as KernelImage;
  const original = b('e8 00 00 00 00');
  const callTo = (target: bigint) => {
    const buf = b('e8 00 00 00 00');
    buf.writeInt32LE(Number(BigInt.asIntN(32, target - (site.address + slide + 5n))), 1);
    return buf;
  };
  const moduleFunc = 0x1201000n;
  const ctx = { image, original, slide, moduleStaticCalls: new Map([[0x9000n, moduleFunc]]) };
  t.ok(acceptsForm(site, callTo(moduleFunc), ctx), 'a call to the module function the key\'s func holds');
  t.ok(acceptsForm(site, Buffer.concat([b('e9'), callTo(moduleFunc).subarray(1)]), ctx), 'a tail jump to it');
  t.notOk(acceptsForm(site, callTo(moduleFunc + 0x10n), ctx), 'a call elsewhere in that module is a change');
  t.notOk(acceptsForm(site, callTo(moduleFunc), { ...ctx, moduleStaticCalls: new Map([[0x9008n, moduleFunc]]) }), 'another key\'s function is a change');
  t.notOk(acceptsForm(site, callTo(moduleFunc), { image, original, slide }), 'without the key read from the running kernel, a change');
  t.notOk(acceptsForm({ ...site, key: undefined }, callTo(moduleFunc), ctx), 'a site whose key is not known: a change');
});
