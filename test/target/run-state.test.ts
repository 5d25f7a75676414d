/**
 * RunState against a fake QEMU on a real socket whose run state follows `stop` and `cont` as
 * QEMU 7.2's does: what each call sends, and that it continues only what it may.
 */
import t from 'tap';
import { ProtocolError, TimeoutError } from '../../lib/errors';
import { RunState } from '../../lib/target/run-state';
import { QmpClient, QmpExecuteError } from '../../lib/transport/qmp';
import { FakeQmpServer, type Handler } from '../helpers/fake-qmp';

/** States from which QEMU refuses `cont` until a system_reset (its runstate_needs_reset()). */
const NEEDS_RESET = new Set(['shutdown', 'internal-error']);

const refuse = (desc: string) => ({ error: { class: 'GenericError', desc } });

async function fakeVm(t: { teardown(fn: () => unknown): void }, initial: string, handlers: Record<string, Handler> = {}) {
  const vm = { status: initial };
  const server = await FakeQmpServer.start({
    handlers: {
      'query-status': () => ({ return: { status: vm.status, singlestep: false, running: vm.status === 'running' } }),
      // QEMU's vm_stop changes nothing on a VM that does not run
      stop: () => {
        if (vm.status === 'running') vm.status = 'paused';
        return { return: {} };
      },
      cont: () => {
        if (NEEDS_RESET.has(vm.status)) return refuse('Resetting the Virtual Machine is required');
        vm.status = 'running';
        return { return: {} };
      },
      ...handlers,
    },
  });
  const qmp = await QmpClient.connect(server.address, { timeout: 2000 });
  const conn = await server.connection();
  t.teardown(async () => {
    await qmp.close();
    await server.close();
  });
  const sent = () => conn.requests.map((r) => r.execute).filter((c) => c !== 'qmp_capabilities');
  return { vm, rs: new RunState(qmp), sent };
}

t.test('status and running read query-status', async (t) => {
  const { rs, sent } = await fakeVm(t, 'debug');
  t.same(await rs.status(), { running: false, status: 'debug' });
  t.equal(await rs.running(), false);
  t.same(sent(), ['query-status', 'query-status']);
});

t.test('a query-status reply without its fields is a ProtocolError, not "stopped"', async (t) => {
  for (const reply of [{}, { status: 'paused' }, { running: false }, null, 'running']) {
    const { rs, sent } = await fakeVm(t, 'paused', { 'query-status': () => ({ return: reply }) });
    await t.rejects(rs.status(), ProtocolError, JSON.stringify(reply));
    await t.rejects(rs.contIfStopped(), ProtocolError, `${JSON.stringify(reply)}: nothing continued`);
    t.notOk(sent().includes('cont'), `${JSON.stringify(reply)}: no cont sent`);
  }
});

t.test('stop stops a running VM and says so', async (t) => {
  const { vm, rs, sent } = await fakeVm(t, 'running');
  t.equal(await rs.stop(), true);
  t.equal(vm.status, 'paused');
  t.same(sent(), ['query-status', 'stop']);
});

t.test('stop leaves a stopped VM alone', async (t) => {
  for (const status of ['paused', 'debug', 'guest-panicked', 'shutdown']) {
    const { vm, rs, sent } = await fakeVm(t, status);
    t.equal(await rs.stop(), false, `${status}: not stopped by us`);
    t.equal(vm.status, status);
    t.same(sent(), ['query-status'], `${status}: only looked`);
  }
});

t.test('cont continues without looking', async (t) => {
  const { vm, rs, sent } = await fakeVm(t, 'debug');
  await rs.cont();
  t.equal(vm.status, 'running');
  t.same(sent(), ['cont']);
});

t.test('contIfPaused continues a paused VM only', async (t) => {
  const paused = await fakeVm(t, 'paused');
  t.equal(await paused.rs.contIfPaused(), true);
  t.equal(paused.vm.status, 'running');
  t.same(paused.sent(), ['query-status', 'cont']);
  // a panic, a shutdown and a debug stop are not a stop that vmictl may undo
  for (const status of ['guest-panicked', 'shutdown', 'debug', 'internal-error', 'running']) {
    const { vm, rs, sent } = await fakeVm(t, status);
    t.equal(await rs.contIfPaused(), false, `${status}: not continued`);
    t.equal(vm.status, status);
    t.same(sent(), ['query-status'], `${status}: no cont sent`);
  }
});

t.test('contIfStopped continues from any stop, and leaves a running VM alone', async (t) => {
  for (const status of ['paused', 'debug', 'guest-panicked']) {
    const { vm, rs, sent } = await fakeVm(t, status);
    t.equal(await rs.contIfStopped(), true, `${status}: continued`);
    t.equal(vm.status, 'running');
    t.same(sent(), ['query-status', 'cont']);
  }
  const running = await fakeVm(t, 'running');
  t.equal(await running.rs.contIfStopped(), false);
  t.same(running.sent(), ['query-status']);
});

t.test('whileStopped stops a running VM for fn and continues it after', async (t) => {
  const { vm, rs, sent } = await fakeVm(t, 'running');
  const seen = await rs.whileStopped(async () => vm.status);
  t.equal(seen, 'paused', 'fn ran with the VM stopped');
  t.equal(vm.status, 'running', 'running again');
  t.same(sent(), ['query-status', 'stop', 'cont']);
});

t.test('whileStopped leaves a VM stopped by someone else stopped', async (t) => {
  for (const status of ['paused', 'debug']) {
    const { vm, rs, sent } = await fakeVm(t, status);
    t.equal(await rs.whileStopped(async () => 7), 7);
    t.equal(vm.status, status, `${status}: still stopped`);
    t.same(sent(), ['query-status']);
  }
});

t.test('whileStopped continues what it stopped when fn throws, and only that', async (t) => {
  const boom = new Error('fn failed');
  const running = await fakeVm(t, 'running');
  await t.rejects(running.rs.whileStopped(async () => { throw boom; }), boom, "fn's error");
  t.equal(running.vm.status, 'running', 'continued');
  t.same(running.sent(), ['query-status', 'stop', 'cont']);

  const paused = await fakeVm(t, 'paused');
  await t.rejects(paused.rs.whileStopped(async () => { throw boom; }), boom);
  t.equal(paused.vm.status, 'paused', 'not ours to continue');
  t.same(paused.sent(), ['query-status']);
});

t.test('whileStopped continues after its signal aborted fn', async (t) => {
  const { vm, rs, sent } = await fakeVm(t, 'running');
  const ac = new AbortController();
  const reason = new Error('user pressed ^C');
  const p = rs.whileStopped(async () => {
    ac.abort(reason);
    throw reason;
  }, { signal: ac.signal });
  await t.rejects(p, reason);
  t.equal(vm.status, 'running', 'the cleanup is not cancelled by the signal');
  t.same(sent(), ['query-status', 'stop', 'cont']);
});

t.test('QMP errors propagate', async (t) => {
  const failStop = await fakeVm(t, 'running', { stop: () => refuse('no stop today') });
  let ran = false;
  const e1 = await failStop.rs.whileStopped(async () => { ran = true; }).catch((e: unknown) => e);
  t.ok(e1 instanceof QmpExecuteError && e1.command === 'stop', 'a refused stop rejects with the command');
  t.notOk(ran, 'fn does not run on a VM that could not be stopped');
  await t.rejects(failStop.rs.stop(), QmpExecuteError);

  const failCont = await fakeVm(t, 'running', { cont: () => refuse('no cont today') });
  const e2 = await failCont.rs.whileStopped(async () => 1).catch((e: unknown) => e);
  t.ok(e2 instanceof QmpExecuteError && e2.command === 'cont', 'a refused cont after fn rejects whileStopped');
  await t.rejects(failCont.rs.cont(), QmpExecuteError);

  const shutdown = await fakeVm(t, 'shutdown');
  const e3 = await shutdown.rs.contIfStopped().catch((e: unknown) => e);
  t.ok(e3 instanceof QmpExecuteError && e3.desc === 'Resetting the Virtual Machine is required', "QEMU's refusal reaches the caller");

  const failStatus = await fakeVm(t, 'running', { 'query-status': () => refuse('no status today') });
  await t.rejects(failStatus.rs.running(), QmpExecuteError);
  await t.rejects(failStatus.rs.contIfPaused(), QmpExecuteError);
  t.same(failStatus.sent(), ['query-status', 'query-status'], 'nothing sent after a failed look');
});

t.test('a silent QEMU times out', async (t) => {
  const { rs } = await fakeVm(t, 'running', { 'query-status': () => undefined });
  await t.rejects(rs.stop({ timeout: 50 }), TimeoutError);
});
