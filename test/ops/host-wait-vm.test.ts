/**
 * While vmictl waits on the host (a slow tar stream on stdin for `cp - C:DIR`, a slow consumer of
 * the tar stream of `cp C:F -`, or of
 * exec's output), the VM runs: the ticker container's counter moves on during the wait (the
 * copies go through the web container, exec through a root-namespace helper), checked from inside the guest. With the VM held stopped the
 * shell cannot answer and the reads below time out.
 */
import t from 'tap';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { copyFromContainer, copyToContainer, execInContainer } from '../../lib/ops';
import { TarReader, tarEnd, tarHeader, tarPadding } from '../../lib/ops/tar';
import { guestRun, testVm, type VmEnv } from '../helpers/vm';

const journal = mkdtempSync(join(tmpdir(), 'vmictl-hostwait-journal-'));
t.teardown(() => rmSync(journal, { recursive: true, force: true }));

/** Long enough for a loaded machine; a VM held stopped never answers. */
const SHELL_TIMEOUT = 30_000;

async function sh(env: VmEnv, cmd: string): Promise<string> {
  const r = await guestRun(env, cmd, SHELL_TIMEOUT);
  if (r.status !== 0) throw new Error(`guest command failed (${r.status}): ${cmd}\n${r.output}`);
  return r.output;
}

async function counter(env: VmEnv, pid: number): Promise<number> {
  for (let i = 0; ; i++) {
    const v = (await sh(env, `cat /proc/${pid}/root/tmp/counter`)).trim();
    if (v !== '' || i >= 5) return Number(v);
  }
}

/** What the host does while vmictl waits: reads the ticker twice from inside the guest. */
async function watchTicker(env: VmEnv, pid: number): Promise<[number, number]> {
  const a = await counter(env, pid);
  await new Promise((r) => setTimeout(r, 1500));
  const b = await counter(env, pid);
  return [a, b];
}

t.test('the VM runs while vmictl waits on the host', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');
  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm.close());
  const opts = { journal, timeout: 30_000 };
  const pidOf = async (bundle: string) => Number((await sh(env, `runc list | awk '$4 == "/containers/${bundle}" { print $2 }'`)).trim());
  // the ticker counts; the copies and the exec run in other containers' processes (the one injected
  // into sleeps for vmictl while it waits, and an exec's source process waits in vfork for its
  // command: neither would count)
  const pid = await pidOf('ticker');
  const web = await pidOf('web');

  await t.test('cp - C:DIR with a slow tar stream on stdin', async (t) => {
    let seen: [number, number] = [0, 0];
    async function* slowStdin(): AsyncGenerator<Buffer> {
      yield tarHeader({ path: Buffer.from('hostwait-in'), kind: 'file', mode: 0o644, uid: 0, gid: 0, size: 13, mtime: 0 });
      yield Buffer.from('first\n');
      seen = await watchTicker(env!, pid);
      yield Buffer.concat([Buffer.from('second\n'), tarPadding(13), tarEnd()]);
    }
    await copyToContainer(vm, '-', 'web', '/www', opts, slowStdin());
    t.ok(seen[1] > seen[0], `the ticker counted while stdin was waited for (${seen[0]} → ${seen[1]})`);
    t.equal(await sh(env, `cat /proc/${web}/root/www/hostwait-in`), 'first\nsecond\n', 'the file has what came in');
  });

  await t.test('cp C:F - with a slow consumer of the tar stream', async (t) => {
    let seen: [number, number] | undefined;
    const got: Buffer[] = [];
    await copyFromContainer(vm, 'web', '/etc/hostname', '-', opts, async (b) => {
      got.push(b);
      seen ??= await watchTicker(env!, pid);
    });
    t.ok(seen && seen[1] > seen[0], `the ticker counted while the consumer was slow (${seen?.[0]} → ${seen?.[1]})`);
    const tar = new TarReader([Buffer.concat(got)]);
    const e = await tar.next();
    const data: Buffer[] = [];
    for await (const b of tar.body()) data.push(b);
    t.equal(e?.path.toString(), 'hostname', 'one entry, named as the file');
    t.equal(Buffer.concat(data).toString(), 'web\n');
  });

  await t.test('exec with a slow consumer of its output', async (t) => {
    let seen: [number, number] | undefined;
    let got = '';
    const r = await execInContainer(vm, { container: 'tree', command: ['echo', 'hi'], journal, timeout: 30_000, stdout: async (b: Buffer) => {
      got += b.toString();
      seen ??= await watchTicker(env!, pid);
    } });
    t.equal(r.exitCode, 0);
    t.ok(seen && seen[1] > seen[0], `the ticker counted while exec's consumer was slow (${seen?.[0]} → ${seen?.[1]})`);
    t.equal(got, 'hi\n');
  });

  await sh(env, `rm -f /proc/${web}/root/www/hostwait-in`);
  t.same(readdirSync(journal), [], 'no journal left: every target restored');
});
