/**
 * Starts QEMU's gdbstub on demand through QMP, so a user only has to give vmictl the QMP socket.
 *
 * The stub gives full control of the guest, so it listens on a unix socket inside a fresh private
 * directory (mode 0700): QEMU creates the socket itself with the umask's permissions, and only the
 * directory keeps other local users out. TCP is never used; QEMU would bind it on 0.0.0.0 by
 * default. For `unix:` QEMU 7.2 adds no server options itself (it does only for `tcp:`), so we
 * pass `server=on,wait=off`: without them QEMU would try to connect to the path, or block.
 *
 * Observed on QEMU 7.2: success answers "Waiting for gdb connection on device '…'"; failure
 * answers "Could not open gdbserver on device '…'" after the reason; a second stub fails with
 * "duplicate yank instance"; `gdbserver none` drops a connected debugger, answers
 * "Disabled gdbserver" and unlinks the socket; `info chardev` lists the stub as `gdb: filename=…`.
 */
import { lstat, mkdtemp, chmod, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandError, VmiError } from '../../errors';
import type { CallOptions } from '../../util/deadline';
import type { QmpClient } from './client';
import { GdbStubBusyError } from './errors';

export interface GdbStubOptions extends CallOptions {
  /** Where to create the private directory (default: the OS temp directory). */
  parentDir?: string;
}

export interface GdbStub {
  /** `unix:/…/gdb.sock`, ready for the GDB transport. */
  address: string;
  /** Stops the stub (if it is still ours) and removes the socket and directory. Idempotent. */
  stop(): Promise<void>;
}

/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_UNIX_PATH = 107;
/** Characters that survive both HMP argument splitting and QEMU's `,`-separated option syntax. */
const SAFE_PATH = /^[A-Za-z0-9._+\/-]+$/;

/** The `filename=` of QEMU's `gdb` chardev, or undefined when no stub runs. */
async function runningStub(qmp: QmpClient, opts: CallOptions): Promise<string | undefined> {
  const out = await qmp.hmp('info chardev', opts);
  const line = out.split('\n').find((l) => l.startsWith('gdb: filename='));
  return line?.slice('gdb: filename='.length).replace(/^disconnected:/, '').trim();
}

export async function startGdbStub(qmp: QmpClient, opts: GdbStubOptions = {}): Promise<GdbStub> {
  const existing = await runningStub(qmp, opts);
  if (existing !== undefined) throw new GdbStubBusyError(existing);

  const dir = await mkdtemp(join(opts.parentDir ?? tmpdir(), 'vmictl-gdb-'));
  const path = join(dir, 'gdb.sock');
  try {
    await chmod(dir, 0o700); // mkdtemp already uses 0700; be explicit about what we rely on
    if (!SAFE_PATH.test(path)) {
      throw new VmiError('EINVAL', `gdbstub socket path ${JSON.stringify(path)} has characters HMP cannot pass; choose another parentDir`);
    }
    if (Buffer.byteLength(path) > MAX_UNIX_PATH) {
      throw new VmiError('EINVAL', `gdbstub socket path ${JSON.stringify(path)} is too long for a unix socket; choose a shorter parentDir`);
    }
    const commandLine = `gdbserver unix:${path},server=on,wait=off`;
    const reply = await qmp.hmp(commandLine, opts);
    if (/could not open gdbserver/i.test(reply)) throw new CommandError(commandLine, reply, `gdbserver: ${reply.trim()}`);
    // The wording of success is not a stable interface; the socket existing is the real proof.
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isSocket()) throw new CommandError(commandLine, reply, `gdbserver: no socket at ${path} after ${JSON.stringify(reply.trim())}`);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  let stopping: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    try {
      // After QEMU went away there is nothing to stop. If someone replaced our stub meanwhile,
      // `gdbserver none` would cut them off, so only a stub on our path is stopped.
      const current = qmp.closed ? undefined : await runningStub(qmp, opts);
      if (current === `unix:${path}` || current?.startsWith(`unix:${path},`)) {
        const reply = await qmp.hmp('gdbserver none', opts);
        if (/could not/i.test(reply)) throw new CommandError('gdbserver none', reply);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };
  return { address: `unix:${path}`, stop: () => (stopping ??= stop()) };
}
