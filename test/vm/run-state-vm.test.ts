/**
 * The VM's run state is left as vmictl found it, over the gdbstub memory backend too: there,
 * leaving physical mode at close is a packet, and any byte QEMU's stub receives while the VM runs
 * stops it. A caller that resumed the VM itself (as an injection does when it ends, or a tool
 * between two reads) must not find it stopped after close().
 */
import t from 'tap';
import { QmpClient } from '../../lib/transport/qmp';
import { Vm } from '../../lib/vm';
import { testVm } from '../helpers/vm';

async function status(address: string, command?: string): Promise<string> {
  const qmp = await QmpClient.connect(address, { timeout: 15_000 });
  try {
    if (command) await qmp.execute(command);
    return ((await qmp.execute('query-status')) as { status: string }).status;
  } finally {
    await qmp.close();
  }
}

t.test('close() leaves the VM running or stopped as it was', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  t.teardown(async () => { await status(env.qmp, 'cont'); });
  t.equal(await status(env.qmp), 'running', 'the VM runs to begin with');

  // the race (our last ack read by QEMU after `cont`) is one of timing: several rounds each
  for (const memory of ['gdbstub', 'gdbstub', 'gdbstub', 'gdbstub', 'procmem'] as const) {
    // read (which stops the VM), resume it ourselves, close
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb, memory });
    try {
      await vm.kernel();
      await vm.resume();
      t.equal(await vm.qmp!.execute('query-status').then((s) => (s as { status: string }).status), 'running', `${memory}: resumed by the caller`);
    } finally {
      await vm.close();
    }
    t.equal(await status(env.qmp), 'running', `${memory}: still running after close()`);

    // a VM somebody else stopped stays stopped
    await status(env.qmp, 'stop');
    const again = await Vm.connect({ qmp: env.qmp, gdb: env.gdb, memory });
    try {
      await again.kernel();
    } finally {
      await again.close();
    }
    t.equal(await status(env.qmp), 'paused', `${memory}: a VM stopped before vmictl is still stopped after close()`);
    await status(env.qmp, 'cont');
  }
});
