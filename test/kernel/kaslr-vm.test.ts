/**
 * KASLR against the real test VM, checked against the guest's own /proc/kallsyms (ground truth):
 * with the vCPUs stopped in kernel mode, stopped in user mode, and on an ELF dump of the VM.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { ProfileMismatchError } from '../../lib/errors';
import { describeVcpus } from '../../lib/vcpus';
import { dumpVm, readGroundTruth, testVm } from '../helpers/vm';

t.test('KASLR slides from memory alone match /proc/kallsyms', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  const gt = readGroundTruth(env.groundTruthFile);
  const text = BigInt(gt.kernel.kallsyms._text);
  const initTask = BigInt(gt.kernel.kallsyms.init_task);

  await t.test('vCPUs stopped in kernel mode (idle)', async (t) => {
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    const k = await vm.kernel();
    t.equal(k.symbol('_text'), text, '_text');
    t.equal(k.symbol('init_task'), initTask, 'init_task');
    t.equal(k.kaslr.banner, gt.kernel.banner, 'banner');
    t.not(k.kaslr.virtualSlide, 0n, 'KASLR is on (a zero slide would prove nothing)');
    const cpus = await describeVcpus(vm);
    t.equal(cpus.length, 2, 'two vCPUs');
    t.comment(`vCPU modes: ${cpus.map((c) => c.mode).join(', ')}`);
  });

  await t.test('a vCPU stopped in user mode (with KPTI its CR3 maps almost no kernel)', async (t) => {
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb, memory: 'gdbstub' });
    t.teardown(() => vm.close());
    const gdb = await vm.gdb();
    // catch a syscall entry, take the user return address from rcx, and run to it
    const entry = BigInt(gt.kernel.kallsyms.entry_SYSCALL_64);
    await gdb.insertBreakpoint(1, entry);
    await gdb.continue();
    let stop = await gdb.waitForStop({ timeout: 60_000 });
    await gdb.removeBreakpoint(1, entry);
    const userRip = await gdb.readRegister('rcx', { thread: stop.thread });
    await gdb.insertBreakpoint(1, userRip);
    await gdb.continue();
    stop = await gdb.waitForStop({ timeout: 60_000 });
    await gdb.removeBreakpoint(1, userRip);
    const cs = await gdb.readRegister('cs', { thread: stop.thread });
    t.equal(cs & 3n, 3n, 'the stopped vCPU is in user mode');
    const cr3 = await gdb.readRegister('cr3', { thread: stop.thread });
    if (gt.kernel.pti) t.equal(cr3 & 0x1000n, 0x1000n, `KPTI: the user-mode CR3 0x${cr3.toString(16)} selects the user page table`);
    else t.comment(`no KPTI in this guest; user-mode CR3 0x${cr3.toString(16)}`);
    const k = await vm.kernel();
    t.ok(k.layout.isUserAddress(userRip), `syscall returns to user address 0x${userRip.toString(16)} (${k.pagingLevels}-level paging)`);
    t.equal(k.symbol('_text'), text, '_text');
    t.equal(k.symbol('init_task'), initTask, 'init_task');
  });

  await t.test('the paging mode is the vCPUs\', and the layout variables name mapped regions', async (t) => {
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    const k = await vm.kernel();
    const cr4 = await (await vm.gdb()).readRegister('cr4');
    t.equal(k.pagingLevels, (cr4 & (1n << 12n)) !== 0n ? 5 : 4, `__pgtable_l5_enabled agrees with CR4.LA57 (cr4 0x${cr4.toString(16)})`);
    const b = k.layout.bases;
    if (!b) return t.fail('a Debian kernel has page_offset_base, vmalloc_base and vmemmap_base');
    t.comment(`${k.pagingLevels}-level: direct map 0x${b.pageOffset.toString(16)}, vmalloc 0x${b.vmallocStart.toString(16)}, vmemmap 0x${b.vmemmapStart.toString(16)}`);
    const image = k.kaslr.physicalBase;
    t.equal((await k.space.translate(b.pageOffset + image)).physical, image, 'page_offset_base + x maps physical x (__va)');
    const first = (await k.readU64(k.symbol('init_task') + BigInt(k.profile.fieldOffset('task_struct', 'tasks')))) - BigInt(k.profile.fieldOffset('task_struct', 'tasks'));
    t.equal(k.layout.regionOf(first), 'direct map', `a task_struct (slab) lies in the direct map: 0x${first.toString(16)}`);
    const stack = await k.readU64(first + BigInt(k.profile.fieldOffset('task_struct', 'stack')));
    t.match(k.layout.regionOf(stack), /^(vmalloc space|direct map)$/, `its kernel stack 0x${stack.toString(16)} is in vmalloc space (VMAP_STACK) or the direct map`);
    await t.resolves(k.space.translate(stack), 'and mapped');
    const pageSize = BigInt(k.profile.typeSize('page'));
    const structPage = b.vmemmapStart + (image >> 12n) * pageSize;
    t.equal(k.layout.regionOf(structPage), 'vmemmap');
    await t.resolves(k.space.translate(structPage), 'the struct page of the kernel image is mapped in the vmemmap');
  });

  await t.test('a profile of another kernel is a clear error naming both banners', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'vmictl-profile-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const doc = JSON.parse(readFileSync(join(__dirname, '../fixtures/isf/small.json'), 'utf8'));
    delete doc.symbols.linux_banner.constant_data;
    doc.metadata.linux = { ...doc.metadata.linux, banner: 'Linux version 5.10.0-other (someone@somewhere) (gcc) #1 SMP' };
    const file = join(dir, 'other.json');
    writeFileSync(file, JSON.stringify(doc));
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb, profile: file });
    t.teardown(() => vm.close());
    const err = await vm.kernel().then(() => null, (e: unknown) => e);
    t.type(err, ProfileMismatchError);
    t.equal((err as ProfileMismatchError).expected, 'Linux version 5.10.0-other (someone@somewhere) (gcc) #1 SMP', 'names the profile banner');
    t.equal((err as ProfileMismatchError).found, gt.kernel.banner, 'names the running banner');
  });

  await t.test('an ELF dump of the VM', async (t) => {
    const file = await dumpVm(t, env);
    const vm = await Vm.connect({ dump: file });
    t.teardown(() => vm.close());
    const k = await vm.kernel();
    t.equal(k.symbol('_text'), text, '_text');
    t.equal(k.symbol('init_task'), initTask, 'init_task');
    const cpus = await describeVcpus(vm);
    t.equal(cpus.length, 2, 'the dump records both vCPUs');
  });
});
