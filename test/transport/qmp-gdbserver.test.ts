import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t from 'tap';
import { CommandError } from '../../lib/errors';
import { GdbStubBusyError, QmpClient, startGdbStub } from '../../lib/transport/qmp';
import { FakeQmpServer, type QmpRequest } from '../helpers/fake-qmp';

/**
 * Emulates QEMU 7.2's HMP `gdbserver` and `info chardev` with the replies observed on the real
 * thing (see gdbserver.ts): the stub really listens on the unix path it is given.
 */
class FakeGdbstub {
  listener: net.Server | undefined;
  device: string | undefined;
  /** The HMP command lines received, in order. */
  lines: string[] = [];
  failWith: string | undefined;

  async hmp(req: QmpRequest): Promise<{ return: string }> {
    const line = String(req.arguments?.['command-line']);
    this.lines.push(line);
    if (line === 'info chardev') {
      const gdb = this.device ? `gdb: filename=disconnected:${this.device.replace(',wait=off', '')}\r\n` : '';
      return { return: `#chr096: filename=gdb\r\n${gdb}compat_monitor0: filename=unix:/x/qmp.sock,server=on\r\n` };
    }
    if (line === 'gdbserver none') {
      await new Promise<void>((resolve) => (this.listener ? this.listener.close(() => resolve()) : resolve()));
      this.listener = undefined;
      this.device = undefined;
      return { return: 'Disabled gdbserver\r\n' };
    }
    const m = /^gdbserver (unix:([^,]+),server=on,wait=off)$/.exec(line);
    if (!m) return { return: `unexpected: ${line}\r\n` };
    if (this.failWith !== undefined) return { return: `${this.failWith}\r\nCould not open gdbserver on device '${m[1]}'\r\n` };
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(m[2], resolve));
    this.listener = server;
    this.device = m[1];
    return { return: `Waiting for gdb connection on device '${m[1]}'\r\n` };
  }
}

async function setup(t: { teardown(fn: () => unknown): void }) {
  const stub = new FakeGdbstub();
  const server = await FakeQmpServer.start({ handlers: { 'human-monitor-command': (req) => stub.hmp(req) } });
  const qmp = await QmpClient.connect(server.address);
  const parentDir = mkdtempSync(join(tmpdir(), 'vmictl-gdbtest-'));
  t.teardown(async () => {
    await qmp.close();
    await server.close();
    stub.listener?.close();
    rmSync(parentDir, { recursive: true, force: true });
  });
  return { stub, qmp, parentDir };
}

t.test('starts the stub on a unix socket in a private 0700 directory, and stops it', async (t) => {
  const { stub, qmp, parentDir } = await setup(t);
  const gdb = await startGdbStub(qmp, { parentDir });
  const m = /^unix:(.+)$/.exec(gdb.address);
  t.ok(m, gdb.address);
  const path = m![1];
  const dir = dirname(path);
  t.equal(dirname(dir), parentDir);
  t.match(dir, /\/vmictl-gdb-[A-Za-z0-9]{6}$/);
  t.equal(statSync(dir).mode & 0o777, 0o700, 'directory is private');
  t.ok(statSync(path).isSocket());
  t.same(stub.lines, ['info chardev', `gdbserver unix:${path},server=on,wait=off`]);

  // The socket really accepts a debugger.
  await new Promise<void>((resolve, reject) => net.createConnection(path).once('connect', function (this: net.Socket) {
    this.destroy();
    resolve();
  }).once('error', reject));

  await gdb.stop();
  t.same(stub.lines.slice(2), ['info chardev', 'gdbserver none']);
  t.notOk(existsSync(dir), 'directory removed');
  await gdb.stop();
  t.equal(stub.lines.length, 4, 'stop() is idempotent');
});

t.test('a failure reply is a CommandError and leaves nothing behind', async (t) => {
  const { stub, qmp, parentDir } = await setup(t);
  stub.failWith = 'Failed to bind socket to /x/gdb.sock: Permission denied';
  const err = await startGdbStub(qmp, { parentDir }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof CommandError, String(err));
  t.equal((err as CommandError).message, 'gdbserver: Failed to bind socket to /x/gdb.sock: Permission denied\nCould not open gdbserver on device ' + `'${(err as CommandError).command.slice('gdbserver '.length)}'`);
  t.match((err as CommandError).command, /^gdbserver unix:.*,server=on,wait=off$/);
  t.match((err as CommandError).reply, /Could not open gdbserver/);
  t.same(
    readdirSync(parentDir),
    [],
    'private directory removed',
  );
});

t.test('a reply without failure text but no socket is also a failure', async (t) => {
  const stub = new FakeGdbstub();
  const server = await FakeQmpServer.start({
    handlers: {
      'human-monitor-command': (req) =>
        String(req.arguments?.['command-line']).startsWith('gdbserver') ? { return: '' } : stub.hmp(req),
    },
  });
  const qmp = await QmpClient.connect(server.address);
  const parentDir = mkdtempSync(join(tmpdir(), 'vmictl-gdbtest-'));
  t.teardown(async () => {
    await qmp.close();
    await server.close();
    rmSync(parentDir, { recursive: true, force: true });
  });
  await t.rejects(startGdbStub(qmp, { parentDir }), { name: 'CommandError', message: /no socket/ });
  t.same(readdirSync(parentDir), []);
});

t.test('an already running stub is reported, not replaced', async (t) => {
  const { stub, qmp, parentDir } = await setup(t);
  stub.device = 'tcp:0.0.0.0:1234,server=on,wait=off';
  const err = await startGdbStub(qmp, { parentDir }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof GdbStubBusyError);
  t.equal((err as GdbStubBusyError).existing, 'tcp:0.0.0.0:1234,server=on');
  t.equal((err as GdbStubBusyError).code, 'EBUSY');
  t.same(stub.lines, ['info chardev'], 'no gdbserver command sent');
  t.same(readdirSync(parentDir), []);
});

t.test('stop() leaves a stub that is no longer ours alone', async (t) => {
  const { stub, qmp, parentDir } = await setup(t);
  const gdb = await startGdbStub(qmp, { parentDir });
  // Someone else replaced it meanwhile.
  await stub.hmp({ execute: 'human-monitor-command', arguments: { 'command-line': 'gdbserver none' } });
  const other = join(parentDir, 'other.sock');
  await stub.hmp({ execute: 'human-monitor-command', arguments: { 'command-line': `gdbserver unix:${other},server=on,wait=off` } });
  stub.lines = [];
  await gdb.stop();
  t.same(stub.lines, ['info chardev'], 'no gdbserver none');
  t.ok(stub.listener, 'the other stub still runs');
  t.same(readdirSync(parentDir), ['other.sock']);
});

t.test('stop() after QMP went away still removes the directory', async (t) => {
  const { qmp, parentDir } = await setup(t);
  const gdb = await startGdbStub(qmp, { parentDir });
  await qmp.close();
  await gdb.stop();
  t.same(readdirSync(parentDir), []);
});

t.test('a socket path QEMU cannot take is refused before asking QEMU', async (t) => {
  const { stub, qmp } = await setup(t);
  const base = mkdtempSync(join(tmpdir(), 'vmictl gdb,test-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  await t.rejects(startGdbStub(qmp, { parentDir: base }), { code: 'EINVAL', message: /characters HMP cannot pass/ });
  t.same(readdirSync(base), [], 'nothing left behind');
  const safe = mkdtempSync(join(tmpdir(), 'vmictl-gdbtest-'));
  t.teardown(() => rmSync(safe, { recursive: true, force: true }));
  const long = join(safe, 'x'.repeat(100));
  mkdirSync(long);
  await t.rejects(startGdbStub(qmp, { parentDir: long }), { code: 'EINVAL', message: /too long/ });
  t.same(readdirSync(long), []);
  t.same(stub.lines, ['info chardev', 'info chardev'], 'QEMU was never asked to start it');
});

