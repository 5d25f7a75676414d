/**
 * A VM that someone else started, reached through its QMP socket alone (as with libvirt): the VM's
 * own gdbstub is taken away, vmictl starts one through QMP on a private unix socket, reads the
 * containers through it, and stops it at close; the VM's gdbstub is put back afterwards.
 */
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import t from 'tap';
import { QmpClient } from '../../lib/transport/qmp';
import { Vm } from '../../lib/vm';
import { readGroundTruth, testVm } from '../helpers/vm';

/** Runs HMP commands on a connection of their own (QEMU serves one QMP client per socket). */
async function hmp(address: string, ...commands: string[]): Promise<string> {
  const qmp = await QmpClient.connect(address, { timeout: 15_000 });
  try {
    let out = '';
    for (const c of commands) out = await qmp.hmp(c);
    return out;
  } finally {
    await qmp.close();
  }
}

/** The chardev of the running gdbstub (`gdb: filename=unix:/path,server=on`), if any. */
async function gdbChardev(address: string): Promise<string | undefined> {
  return /^gdb: filename=(\S+)/m.exec(await hmp(address, 'info chardev'))?.[1];
}

t.test('--qmp alone: the gdbstub is started through QMP and stopped afterwards', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  const gt = readGroundTruth(env.groundTruthFile);
  t.teardown(async () => {
    // give the VM its own gdbstub back, for the tests that come next
    if ((await gdbChardev(env.qmp)) === undefined) await hmp(env.qmp, `gdbserver ${env.gdb},server=on,wait=off`);
  });
  t.ok(await gdbChardev(env.qmp), 'the VM has a gdbstub of its own to begin with');
  await hmp(env.qmp, 'gdbserver none');
  t.equal(await gdbChardev(env.qmp), undefined, 'now it has none: only QMP is left');

  const notices: string[] = [];
  const vm = await Vm.connect({ qmp: env.qmp, memory: 'gdbstub', onNotice: (m) => notices.push(m) });
  let stub: string | undefined;
  try {
    const list = await vm.listContainers();
    stub = /^gdb: filename=(\S+)/m.exec(await vm.qmp!.hmp('info chardev'))?.[1];
    t.match(stub ?? '', /^unix:\//, `vmictl started a gdbstub on a unix socket: ${stub}`);
    t.same(list.containers.map((c) => c.hostname).sort(), gt.containers.map((c) => c.hostname).sort(), 'the containers are read through it');
    t.same(list.containers.map((c) => c.initPid).sort(), gt.containers.map((c) => c.initPid).sort(), 'with their init pids');
  } finally {
    await vm.close();
  }
  t.equal(await gdbChardev(env.qmp), undefined, 'the gdbstub vmictl started is stopped at close');
  const path = stub?.replace(/^unix:/, '').split(',')[0];
  if (path) t.notOk(existsSync(dirname(path)), 'and its private directory removed');
  t.same(notices.filter((n) => /gdbstub/.test(n) && !/through the gdbstub/.test(n)), [], 'no fallback to the VM\'s own stub was needed');
});
