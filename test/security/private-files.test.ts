// What vmictl leaves on the host is private whatever the user's umask: the gdbstub socket it
// starts sits in a 0700 directory that is gone afterwards, and injection journals (registers and
// stack bytes of a guest process) are 0600 in a 0700 directory, also after an update.
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t from 'tap';
import { Journal, ensureJournalDirectory, type JournalEntry } from '../../lib/inject/journal';
import { QmpClient, startGdbStub } from '../../lib/transport/qmp';
import { FakeQmpServer, type QmpRequest } from '../helpers/fake-qmp';

/** Runs `f` with umask 0 (every permission bit a mode asks for is granted). */
async function withOpenUmask<T>(f: () => Promise<T> | T): Promise<T> {
  const old = process.umask(0);
  try {
    return await f();
  } finally {
    process.umask(old);
  }
}

t.test('gdbstub socket: private directory under the default temp dir, removed after stop', async (t) => {
  let listener: net.Server | undefined;
  let device: string | undefined;
  const server = await FakeQmpServer.start({
    handlers: {
      'human-monitor-command': async (req: QmpRequest) => {
        const line = String(req.arguments?.['command-line']);
        if (line === 'info chardev') return { return: device ? `gdb: filename=${device}\r\n` : '' };
        if (line === 'gdbserver none') {
          await new Promise<void>((resolve) => (listener ? listener.close(() => resolve()) : resolve()));
          listener = undefined;
          device = undefined;
          return { return: 'Disabled gdbserver\r\n' };
        }
        const m = /^gdbserver (unix:([^,]+)),server=on,wait=off$/.exec(line);
        if (!m) return { return: `unexpected ${line}\r\n` };
        // QEMU creates the socket with the umask's permissions: here, world-writable
        listener = net.createServer();
        await new Promise<void>((resolve) => listener!.listen(m[2], resolve));
        device = m[1];
        return { return: `Waiting for gdb connection on device '${m[1]}'\r\n` };
      },
    },
  });
  const qmp = await QmpClient.connect(server.address);
  t.teardown(async () => {
    await qmp.close();
    await server.close();
    listener?.close();
  });
  const stub = await withOpenUmask(() => startGdbStub(qmp));
  const path = stub.address.replace(/^unix:/, '');
  const dir = dirname(path);
  t.equal(dirname(dir), tmpdir(), 'in the temp directory');
  t.equal(statSync(dir).mode & 0o777, 0o700, 'the directory is 0700 even with umask 0');
  t.equal(statSync(dir).uid, process.getuid!(), 'and ours');
  t.ok(statSync(path).isSocket(), 'the socket is inside it');
  await stub.stop();
  t.notOk(existsSync(path), 'socket removed');
  t.notOk(existsSync(dir), 'directory removed');
});

function entry(): JournalEntry {
  return {
    version: 1, createdAt: new Date().toISOString(), writer: process.pid,
    target: { task: 'ffff888001234000', pid: 42, tgid: 42, comm: 'victim' },
    returnAddress: '401000', callSp: '7ffc00001000', vcpu: '1',
    registers: { rax: '0', rip: '401000' }, restore: ['rax', 'rip'],
  };
}

t.test('injection journal: 0700 directory, 0600 files, with umask 0 and after an update', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'vmictl-journal-perm-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, 'vmictl');
  await withOpenUmask(() => {
    ensureJournalDirectory(dir);
    const j = Journal.create(entry(), dir);
    t.equal(statSync(dir).mode & 0o777, 0o700, 'directory 0700');
    t.equal(statSync(j.path).mode & 0o777, 0o600, 'journal 0600');
    j.update({ scratch: { address: '7f0000000000', length: 4096 } });
    t.equal(statSync(j.path).mode & 0o777, 0o600, 'still 0600 after an update (a new file renamed over it)');
    t.equal(statSync(j.path).uid, process.getuid!(), 'owned by us');
    j.remove();
    t.notOk(existsSync(j.path), 'removed once the target is restored');
  });
});
