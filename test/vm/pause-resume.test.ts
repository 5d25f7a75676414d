/**
 * The Vm's pause bookkeeping over its RunState, against a fake QEMU on a real socket (no gdbstub,
 * so no settle rounds): it restarts only a VM it stopped, unless the caller says the VM is to run
 * whoever stopped it, and keepStopped() holds it stopped through close().
 */
import t from 'tap';
import { Vm } from '../../lib/vm';
import { FakeQmpServer } from '../helpers/fake-qmp';

async function fakeVm(t: { teardown(fn: () => unknown): void }, initial: string) {
  const state = { status: initial };
  const server = await FakeQmpServer.start({
    handlers: {
      'query-status': () => ({ return: { status: state.status, singlestep: false, running: state.status === 'running' } }),
      stop: () => {
        if (state.status === 'running') state.status = 'paused';
        return { return: {} };
      },
      cont: () => {
        state.status = 'running';
        return { return: {} };
      },
    },
  });
  const vm = await Vm.connect({ qmp: server.address, timeout: 2000 });
  const conn = await server.connection();
  t.teardown(async () => {
    await vm.close();
    await server.close();
  });
  const sent = () => conn.requests.map((r) => r.execute).filter((c) => c !== 'qmp_capabilities');
  return { state, vm, sent };
}

t.test('a VM we paused is resumed, and left running at close', async (t) => {
  const { state, vm, sent } = await fakeVm(t, 'running');
  t.ok(vm.runState, 'a live VM has a run state');
  await vm.pause();
  t.equal(state.status, 'paused');
  await vm.pause();
  await vm.resume();
  t.equal(state.status, 'running');
  t.same(sent(), ['query-status', 'stop', 'query-status', 'cont']);
  // something stopped it after our resume (a late ack, another client): close undoes a pause
  state.status = 'paused';
  await vm.close();
  t.equal(state.status, 'running');
});

t.test('a VM paused by someone else stays paused', async (t) => {
  const { state, vm, sent } = await fakeVm(t, 'paused');
  await vm.pause();
  await vm.resume();
  await vm.close();
  t.equal(state.status, 'paused');
  t.same(sent(), ['query-status']);
});

t.test('close leaves a debug stop after our resume alone', async (t) => {
  const { state, vm } = await fakeVm(t, 'running');
  await vm.pause();
  await vm.resume();
  state.status = 'debug';
  await vm.close();
  t.equal(state.status, 'debug', 'only a pause is ours to undo');
});

t.test('resumeWhoeverStopped continues any stop, ours or not', async (t) => {
  const ours = await fakeVm(t, 'running');
  await ours.vm.pause();
  await ours.vm.resumeWhoeverStopped();
  t.equal(ours.state.status, 'running');
  t.same(ours.sent(), ['query-status', 'stop', 'cont', 'query-status']);

  const debug = await fakeVm(t, 'debug');
  await debug.vm.pause();
  await debug.vm.resumeWhoeverStopped();
  t.equal(debug.state.status, 'running', 'a breakpoint stop is continued too');
  t.same(debug.sent(), ['query-status', 'query-status', 'cont']);
});

t.test('keepStopped holds a VM we paused through close', async (t) => {
  const { state, vm, sent } = await fakeVm(t, 'running');
  await vm.pause();
  vm.keepStopped();
  await vm.close();
  t.equal(state.status, 'paused');
  t.same(sent(), ['query-status', 'stop']);
});
