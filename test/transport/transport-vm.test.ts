/**
 * The two clients against the real test VM: QMP status and events across stop/cont, and through
 * the gdbstub registers by name, kernel memory at linux_banner, a hardware breakpoint that the guest
 * hits, continue and interrupt.
 */
import t from 'tap';
import { QmpClient } from '../../lib/transport/qmp';
import { GdbClient } from '../../lib/transport/gdb';
import { readGroundTruth, testVm } from '../helpers/vm';

t.test('QMP and gdbstub against the test VM', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  const gt = readGroundTruth(env.groundTruthFile);
  const qmp = await QmpClient.connect(env.qmp, { timeout: 60_000 });
  t.teardown(async () => {
    await qmp.execute('cont').catch(() => undefined);
    await qmp.close();
  });

  await t.test('QMP: status and events across stop/cont', async (t) => {
    t.equal(qmp.greeting.version.qemu.major >= 7, true, `QEMU ${qmp.greeting.version.qemu.major}.${qmp.greeting.version.qemu.minor}`);
    t.match(await qmp.execute('query-status'), { running: true, status: 'running' });
    const stopped = qmp.waitForEvent('STOP', { timeout: 10_000 });
    await qmp.execute('stop');
    t.equal((await stopped).event, 'STOP', 'STOP event');
    t.match(await qmp.execute('query-status'), { running: false, status: 'paused' });
    const resumed = qmp.waitForEvent('RESUME', { timeout: 10_000 });
    await qmp.execute('cont');
    t.equal((await resumed).event, 'RESUME', 'RESUME event');
    t.match(await qmp.hmp('info status'), /running/);
  });

  await t.test('gdbstub: registers, kernel memory, hardware breakpoint, continue, interrupt', async (t) => {
    const gdb = await GdbClient.connect(env.gdb, { timeout: 30_000 });
    t.teardown(async () => {
      await gdb.close();
      await qmp.execute('cont').catch(() => undefined);
    });
    t.equal(gdb.maxReadLength, 2048, 'QEMU 7.2 PacketSize=1000 allows 2048-byte reads');
    const threads = await gdb.threads();
    t.equal(threads.length, 2, 'one thread per vCPU');
    const regs = await gdb.readRegisters({ thread: threads[0] });
    for (const name of ['rip', 'rsp', 'cr3', 'cr4', 'gs_base', 'k_gs_base', 'efer']) t.ok(regs.has(name), `register ${name} by name`);
    t.equal(await gdb.readRegister('cr3', { thread: threads[0] }), regs.get('cr3'), 'p and g agree on cr3');

    // virtual reads go through the selected vCPU's page tables: pick one that runs on the kernel's
    // (with KPTI a vCPU in user mode, or just entering the kernel, maps almost no kernel memory)
    let kernelThread: string | undefined;
    for (let attempt = 0; attempt < 20 && !kernelThread; attempt++) {
      for (const th of threads) {
        const r = await gdb.readRegisters({ thread: th });
        if ((r.get('cs')! & 3n) === 0n && (r.get('cr3')! & 0x1000n) === 0n) kernelThread = th;
      }
      if (!kernelThread) {
        await gdb.continue();
        await gdb.interrupt({ timeout: 10_000 });
      }
    }
    t.ok(kernelThread, 'a vCPU on the kernel page tables');
    await gdb.selectThread(kernelThread!);
    const bannerAt = BigInt(gt.kernel.kallsyms.linux_banner);
    const banner = await gdb.readMemory(bannerAt, gt.kernel.banner.length);
    t.equal(banner.toString('latin1'), gt.kernel.banner, 'linux_banner read through the gdbstub');

    // a hardware breakpoint on the syscall entry, which the busy guest reaches within moments
    const entry = BigInt(gt.kernel.kallsyms.entry_SYSCALL_64);
    await gdb.insertBreakpoint(1, entry);
    await gdb.continue();
    const hit = await gdb.waitForStop({ timeout: 60_000 });
    t.equal(hit.signal, 5, 'stopped with SIGTRAP');
    t.equal(await gdb.readRegister('rip', { thread: hit.thread }), entry, 'at entry_SYSCALL_64');
    await gdb.removeBreakpoint(1, entry);

    await gdb.continue();
    const interrupted = await gdb.interrupt({ timeout: 10_000 });
    t.equal(interrupted.signal, 2, 'interrupt stops with SIGINT');
    t.match(await qmp.execute('query-status'), { running: false }, 'the VM is stopped after the interrupt');
  });
});
