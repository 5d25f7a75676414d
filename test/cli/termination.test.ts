// Ctrl-C, SIGTERM and SIGHUP end any command the same way: the work is aborted (so the VM is
// resumed and an injected thread put back), the signal is named, and the exit status is the
// shell's 128 + signal number. Real signals to a real vmictl process (the built CLI in dist/),
// waiting on a QMP socket that accepts and never greets.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { skipWithReason } from '../helpers/vm';

const root = path.resolve(__dirname, '../..');
const cli = path.join(root, 'bin/vmictl');
const built = fs.existsSync(path.join(root, 'dist/cli/main.js'));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-term-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

async function silentQmp(name: string): Promise<{ sock: string; connected: Promise<void>; close(): void }> {
  const sock = path.join(dir, name);
  const held: net.Socket[] = [];
  let onConnect!: () => void;
  const connected = new Promise<void>((resolve) => { onConnect = resolve; });
  const server = net.createServer((c) => { held.push(c); onConnect(); });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  return { sock, connected, close: () => { for (const c of held) c.destroy(); server.close(); } };
}

for (const [signal, status] of [['SIGTERM', 143], ['SIGHUP', 129], ['SIGINT', 130]] as const) {
  t.test(`${signal} while ps waits on the VM`, async (t) => {
    if (!built) return skipWithReason(t, 'dist/ is not built (make build)');
    const qmp = await silentQmp(`${signal}.sock`);
    t.teardown(() => qmp.close());
    const child = spawn(process.execPath, [cli, 'ps', '--qmp', `unix:${qmp.sock}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, sig) => resolve({ code, signal: sig })));
    await qmp.connected;
    child.kill(signal);
    const guard = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const r = await exited;
    clearTimeout(guard);
    t.equal(r.signal, null, 'vmictl handled the signal rather than dying of it');
    t.equal(r.code, status, `exit status 128 + ${signal}`);
    t.match(stderr, new RegExp(`stopped by ${signal} \\[ETERMINATED\\]`));
  });
}
