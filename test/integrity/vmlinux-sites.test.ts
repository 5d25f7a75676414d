/**
 * The patch-site tables read from the real debug vmlinux are laid out as we think: every site's
 * original bytes are the instruction its table says is there.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { KernelImage } from '../../lib/integrity/image';
import { readPatchSites } from '../../lib/integrity/patch-sites';
import { relativeTarget } from '../../lib/integrity/x86-forms';
import { KernelBaseline } from '../../lib/integrity/baseline';

const VMLINUX = process.env.VMICTL_DBG_VMLINUX ?? resolve(__dirname, '../../test-vms/build/vmlinux');

if (!existsSync(VMLINUX)) {
  t.pass('skipped', { skip: `no debug vmlinux at ${VMLINUX} (set VMICTL_DBG_VMLINUX)` });
} else {
  const image = KernelImage.open(VMLINUX);
  t.teardown(() => image.close());
  const sites = readPatchSites(image);
  const text = image.section('.text')!;
  const inText = (a: bigint) => a >= text.addr && a < text.addr + BigInt(text.size);

  t.test('ftrace sites are calls to __fentry__ (those in .text)', async (t) => {
    const fentry = image.symbol('__fentry__')!.address;
    const ft = sites.filter((s) => s.kind === 'ftrace' && inText(s.address) && !/^ftrace_/.test(image.functionContaining(s.address)?.name ?? ''));
    const bad = ft.filter((s) => relativeTarget(image.raw(s.address, 5), s.address)?.target !== fentry);
    t.ok(ft.length > 10000, `${ft.length} ftrace sites`);
    t.equal(bad.length, 0, 'each one is `call __fentry__`');
  });

  t.test('return sites jump to __x86_return_thunk, smp locks are LOCK prefixes', async (t) => {
    const thunk = image.symbol('__x86_return_thunk')!.address;
    const rs = sites.filter((s) => s.kind === 'return_thunk' && inText(s.address));
    t.equal(rs.filter((s) => relativeTarget(image.raw(s.address, 5), s.address)?.target !== thunk).length, 0, `${rs.length} return sites`);
    const locks = sites.filter((s) => s.kind === 'smp_lock' && inText(s.address));
    t.equal(locks.filter((s) => image.raw(s.address, 1)[0] !== 0xf0).length, 0, `${locks.length} LOCK prefixes`);
  });

  t.test('jump labels and alternatives', async (t) => {
    const jl = sites.filter((s) => s.kind === 'jump_label' && inText(s.address));
    const badJl = jl.filter((s) => {
      const raw = image.raw(s.address, s.length);
      return !(raw.equals(Buffer.from('0f1f440000', 'hex')) || raw.equals(Buffer.from('6690', 'hex')) || relativeTarget(raw, s.address)?.target === s.target);
    });
    t.equal(badJl.length, 0, `${jl.length} jump labels are a NOP or a JMP to their target`);
    const alts = sites.filter((s) => s.kind === 'alternative');
    t.ok(alts.length > 1000 && alts.every((s) => (s.replacements ?? []).every((r) => image.sectionAt(r.address) !== undefined || r.length === 0)), `${alts.length} alternatives with their replacements in the image`);
  });

  t.test('the code paths of injected syscalls', async (t) => {
    const base = KernelBaseline.load(VMLINUX);
    const regions = base.regionsFor(['kill', 'openat', 'getdents64']);
    const names = regions.map((r) => r.name);
    for (const n of ['entry_SYSCALL_64', 'do_syscall_64', 'x64_sys_call', '__x64_sys_kill', '__x64_sys_openat', '__x64_sys_getdents64']) t.ok(names.includes(n), `${n} is watched`);
    t.ok(regions.some((r) => r.role === 'callee'), `and the functions they call (${regions.filter((r) => r.role === 'callee').map((r) => r.name).join(', ')})`);
  });
}
