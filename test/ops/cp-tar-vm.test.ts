/**
 * `cp C:DIR -` and `cp - C:DIR` as tar streams, against GNU tar on the host and ground truth from
 * inside the guest (find/stat/sha256sum through /proc/PID/root): a tree out of the ticker
 * container, extracted by `tar -x`, is the tree inside (names with control bytes, a long name,
 * a symlink, an empty file, modes, owners, mtimes); `tar -c` of it back in lands the same tree,
 * with its owners under -a and the container process's without; -L follows a source symlink; an
 * archive that goes through its own symlink is refused with nothing written where it points.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { copyFromContainer, copyToContainer } from '../../lib/ops';
import { TarReader, tarEnd, tarHeader, type TarEntry } from '../../lib/ops/tar';
import { guestRun, testVm, type VmEnv } from '../helpers/vm';

const journal = mkdtempSync(join(tmpdir(), 'vmictl-cp-tar-journal-'));
const local = mkdtempSync(join(tmpdir(), 'vmictl-cp-tar-'));
t.teardown(() => {
  rmSync(journal, { recursive: true, force: true });
  rmSync(local, { recursive: true, force: true });
});

async function sh(env: VmEnv, cmd: string): Promise<string> {
  const r = await guestRun(env, cmd, 60_000);
  if (r.status !== 0) throw new Error(`guest command failed (${r.status}): ${cmd}\n${r.output}`);
  return r.output;
}

/** One line per path below `.`: kind, mode, owner, size, mtime, sha256 or link target (sh, busybox or GNU). */
const MANIFEST = `find . | LC_ALL=C sort | while IFS= read -r p; do if [ -L "$p" ]; then echo "$p L $(readlink "$p") $(stat -c %u.%g "$p")"; elif [ -d "$p" ]; then echo "$p D $(stat -c %a.%u.%g "$p")"; else echo "$p F $(stat -c %a.%u.%g.%s.%Y "$p") $(sha256sum < "$p" | cut -c1-64)"; fi; done`;

const LONG = 'l'.repeat(120);

t.test('cp with tar streams, against GNU tar and the guest', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm.close());
  const opts = { journal, timeout: 30_000 };
  const pid = Number((await sh(env, `runc list | awk '$4 == "/containers/ticker" { print $2 }'`)).trim());
  const R = `/proc/${pid}/root/tmp`;
  await sh(env, `rm -rf ${R}/tsrc ${R}/tin ${R}/tin2 ${R}/tlink ${R}/toutside; mkdir -p ${R}/tsrc/sub/${LONG} ${R}/tin ${R}/tin2 ${R}/toutside && cd ${R}/tsrc && printf 'hello\\n' > a && : > empty && head -c 70000 /dev/urandom > sub/${LONG}/big && printf x > "esc$(printf '\\033')]0;t$(printf '\\007')" && ln -s ../a sub/link && chmod 640 a && chmod 750 sub && chown 1234:5678 sub/${LONG}/big && ln -s tsrc/sub ${R}/tlink`);
  t.teardown(() => sh(env, `rm -rf ${R}/tsrc ${R}/tin ${R}/tin2 ${R}/tlink ${R}/toutside`));
  const inside = async (dir: string) => sh(env, `cd ${R}/${dir} && ${MANIFEST}`);
  const truth = await inside('tsrc');
  t.match(truth, /\.\/esc\x1b\]0;t\x07 F/, 'the guest tree has the name with control bytes');

  const tarOf = async (path: string, o = {}): Promise<Buffer> => {
    const parts: Buffer[] = [];
    const r = await copyFromContainer(vm, 'ticker', path, '-', { ...opts, ...o }, async (b) => { parts.push(b); });
    t.same(r.errors, [], `${path}: no errors`);
    return Buffer.concat(parts);
  };

  await t.test('cp C:DIR - | tar -x gives the tree that is inside', async (t) => {
    const out = join(local, 'out');
    mkdirSync(out);
    execFileSync('tar', ['-x', '-f', '-', '-C', out], { input: await tarOf('/tmp/tsrc') });
    const host = execFileSync('sh', ['-c', MANIFEST], { cwd: join(out, 'tsrc') }).toString();
    t.equal(host, truth, 'same paths, kinds, modes, owners, sizes, mtimes, contents and link targets');
  });

  await t.test('tar -c | cp - C:DIR lands the same tree; -a keeps owners', async (t) => {
    const archive = execFileSync('tar', ['-c', '-f', '-', '-C', join(local, 'out'), 'tsrc']);
    const withA = await copyToContainer(vm, '-', 'ticker', '/tmp/tin', { ...opts, archive: true }, [archive] as unknown as AsyncIterable<Buffer>);
    t.same(withA.errors, [], 'no errors');
    t.equal(await inside('tin/tsrc'), truth, 'with -a: the same tree, owners too (checked from inside)');
    const plain = await copyToContainer(vm, '-', 'ticker', '/tmp/tin2', opts, [archive] as unknown as AsyncIterable<Buffer>);
    t.same(plain.errors, [], 'no errors');
    const big = await sh(env, `stat -c %u.%g ${R}/tin2/tsrc/sub/${LONG}/big`);
    t.equal(big.trim(), '0.0', 'without -a: owned by the container process\'s user (root here), as docker\'s root:root');
    await t.rejects(copyToContainer(vm, '-', 'ticker', '/tmp/no-such-dir', opts, [archive] as unknown as AsyncIterable<Buffer>), { code: 'EUSAGE' }, 'DIR must exist');
  });

  await t.test('-L follows a source symlink, only with -L', async (t) => {
    const entries = async (b: Buffer) => {
      const r = new TarReader([b]);
      const out: string[] = [];
      for (let e: TarEntry | null; (e = await r.next());) out.push(`${e.kind} ${e.path.toString('latin1')}${e.linkname ? ` -> ${e.linkname}` : ''}`);
      return out;
    };
    t.same(await entries(await tarOf('/tmp/tlink')), ['symlink tlink -> tsrc/sub'], 'without -L: the symlink itself');
    t.same((await entries(await tarOf('/tmp/tlink', { followLink: true }))).sort(), ['directory tlink', `directory tlink/${LONG}`, `file tlink/${LONG}/big`, 'symlink tlink/link -> ../a'], 'with -L: the directory it points to, under the link\'s name');
  });

  await t.test('an archive through its own symlink is refused; nothing lands where it points', async (t) => {
    const hostile = Buffer.concat([
      tarHeader({ path: Buffer.from('l'), kind: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 0, linkname: Buffer.from('/tmp/toutside') }),
      tarHeader({ path: Buffer.from('l/pwned'), kind: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 }),
      tarEnd(),
    ]);
    await t.rejects(copyToContainer(vm, '-', 'ticker', '/tmp/tin', opts, [hostile] as unknown as AsyncIterable<Buffer>), { code: 'ETAR', message: /"l\/pwned".*goes through "l"/ });
    t.equal(await sh(env, `ls -A ${R}/toutside; readlink ${R}/tin/l`), '/tmp/toutside\n', 'the symlink is made, nothing is written through it');
  });
  t.same((await import('node:fs')).readdirSync(journal), [], 'no journal left: every target restored');
});
