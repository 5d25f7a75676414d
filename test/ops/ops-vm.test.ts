/**
 * pause/unpause, kill/stop and cp against the real test VM, checked from inside the guest (its
 * cgroup files, /proc, sha256sum) rather than through vmictl: pause stops the ticker's counter and
 * unpause resumes it; kill and stop end a throwaway container's processes and nothing else; a
 * 10 MB random file goes in and comes back with the same sha256; paths that try to leave the
 * container root stay in it; cp -r out of a hostile tree writes only below the destination; and
 * after many mixed operations no process, fd, mapping, temp file or breakpoint is left behind.
 */
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { lstatSync, mkdirSync, mkdtempSync, symlinkSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { Vm } from '../../lib/vm';
import { copyFromContainer, copyToContainer, killContainer, pauseContainer, stopContainer, unpauseContainer, snapshot } from '../../lib/ops';
import { guestRun, testVm, type VmEnv } from '../helpers/vm';

const journal = mkdtempSync(join(tmpdir(), 'vmictl-ops-journal-'));
const local = mkdtempSync(join(tmpdir(), 'vmictl-ops-'));
t.teardown(() => {
  rmSync(journal, { recursive: true, force: true });
  rmSync(local, { recursive: true, force: true });
});

async function sh(env: VmEnv, cmd: string): Promise<string> {
  const r = await guestRun(env, cmd, 120_000);
  if (r.status !== 0) throw new Error(`guest command failed (${r.status}): ${cmd}\n${r.output}`);
  return r.output;
}

async function tickerPid(env: VmEnv): Promise<number> {
  return Number(/"pid":\s*(\d+)/.exec(await sh(env, 'runc state ticker; echo'))![1]);
}

async function counter(env: VmEnv, pid: number): Promise<number> {
  for (let i = 0; ; i++) {
    const v = (await sh(env, `cat /proc/${pid}/root/tmp/counter`)).trim();
    if (v !== '' || i >= 5) return Number(v);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A throwaway runc container `opsbox` (the ticker's bundle, with two extra sleeps), its pids. */
async function startOpsbox(env: VmEnv): Promise<number[]> {
  await sh(env, 'runc delete -f opsbox >/dev/null 2>&1; rm -rf /run/opsbox; cp -a /containers/ticker /run/opsbox && echo opsbox > /run/opsbox/id && sed -i "s/\\"hostname\\": \\"ticker\\"/\\"hostname\\": \\"opsbox\\"/; s|\\"/bin/sh\\", \\"/workload.sh\\"|\\"/bin/sh\\", \\"-c\\", \\"sleep 100000 \\& sleep 100001 \\& exec /bin/sh /workload.sh\\"|" /run/opsbox/config.json && runc run -d --bundle /run/opsbox opsbox </dev/null >/dev/null 2>&1');
  for (let i = 0; i < 20; i++) {
    const pids = (await sh(env, 'cat /sys/fs/cgroup/opsbox/cgroup.procs')).split(/\s+/).filter(Boolean).map(Number);
    if (pids.length >= 3) return pids;
    await sleep(500);
  }
  throw new Error('opsbox did not start its processes');
}

/** Every user process of the guest (not kernel threads, not this command's own): pid → "fds maps". */
/**
 * Each process's open fds and mappings. Fds on named fifos are not counted: the guest's shell
 * loops (busyd, the tickers) open theirs for every read, so they come and go by themselves.
 */
async function guestProcesses(env: VmEnv): Promise<Map<number, ProcessSnapshot>> {
  const out = await sh(env, 'me=$$; for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = "$me" ] && continue; readlink $d/exe >/dev/null 2>&1 || continue; pp=$(sed -n "s/^PPid:[[:space:]]*//p" $d/status 2>/dev/null); [ "$pp" = "$me" ] && continue; n=0; fds=; for f in $d/fd/*; do l=$(readlink $f) || continue; [ -p "$l" ] && continue; n=$((n + 1)); fds="$fds,${f##*/}=$l"; done; echo "$p $n $(wc -l < $d/maps) $(cat $d/comm) ${fds#,}"; done');
  const m = new Map<number, ProcessSnapshot>();
  for (const line of out.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 4 && /^\d+$/.test(f[0])) m.set(Number(f[0]), { counts: `${f[1]} fds, ${f[2]} mappings`, comm: f[3], fds: f.slice(4).join(' ') });
  }
  return m;
}

/** A process as the guest shows it: how many fds (pipes aside) and mappings, its name, and its fds. */
interface ProcessSnapshot {
  counts: string;
  comm: string;
  fds: string;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test('container operations against the test VM', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  if (!env.control) return t.fail('the test VM has no control channel');
  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  t.teardown(() => vm.close());
  const opts = { journal, timeout: 30_000 };
  const pid = await tickerPid(env);

  await t.test('pause stops the ticker, unpause resumes it', async (t) => {
    const p = await pauseContainer(vm, 'ticker', opts);
    t.equal(p.method, 'cgroup2');
    t.not(p.via, 1, 'the helper is not pid 1');
    t.match(await sh(env, 'cat /sys/fs/cgroup/ticker/cgroup.freeze /sys/fs/cgroup/ticker/cgroup.events'), /^1\n[\s\S]*frozen 1/m, 'the guest says frozen');
    const a = await counter(env, pid);
    await sleep(1500);
    const b = await counter(env, pid);
    t.equal(b, a, `the counter holds while paused (${a} → ${b})`);
    const listed = (await snapshot(vm)).containers.find((c) => c.name === 'ticker');
    t.equal(listed?.state, 'paused', 'the container list shows it paused');
    await t.rejects(pauseContainer(vm, 'ticker', opts), { code: 'ESTATE' }, 'pausing twice is refused');
    await t.rejects(copyFromContainer(vm, 'ticker', '/etc/hostname', '-', { ...opts, raw: true }, async () => undefined), { code: 'ESTATE' }, 'cp into a paused container is refused (it would have to thaw it)');
    t.match(await sh(env, 'cat /sys/fs/cgroup/ticker/cgroup.freeze'), /^1/, 'still frozen');
    await unpauseContainer(vm, 'ticker', opts);
    t.match(await sh(env, 'cat /sys/fs/cgroup/ticker/cgroup.freeze'), /^0/);
    const c = await counter(env, pid);
    await sleep(1500);
    const d = await counter(env, pid);
    t.ok(d > c, `the counter goes on after unpause (${c} → ${d})`);
  });

  await t.test('kill and stop end the container and nothing else', async (t) => {
    for (const how of ['kill', 'stop'] as const) {
      const boxPids = await startOpsbox(env);
      const before = await guestProcesses(env);
      const others = [...before.keys()].filter((p) => !boxPids.includes(p));
      const r = how === 'kill' ? await killContainer(vm, 'opsbox', opts) : await stopContainer(vm, 'opsbox', { ...opts, graceMs: 2000 });
      t.same(r.remaining, [], `${how}: vmictl sees none of its processes left`);
      t.equal((await sh(env, 'cat /sys/fs/cgroup/opsbox/cgroup.procs')).trim(), '', `${how}: its cgroup is empty in the guest`);
      const after = await guestProcesses(env);
      const lost = others.filter((p) => !after.has(p));
      t.same(lost, [], `${how}: every process outside it still runs`);
      t.match(await sh(env, 'runc list'), /opsbox\s+0\s+stopped/, `${how}: runc says stopped`);
      await sh(env, 'runc delete -f opsbox; rm -rf /run/opsbox');
    }
  });

  await t.test('cp of a 10 MB random file in and back', async (t) => {
    const data = randomBytes(10_000_000);
    const src = join(local, 'r10');
    writeFileSync(src, data, { mode: 0o640 });
    const inRep = await copyToContainer(vm, src, 'ticker', '/tmp/r10', opts);
    t.equal(inRep.bytes, data.length);
    t.equal(inRep.resolvedInRoot, true, 'openat2(RESOLVE_IN_ROOT) used');
    const inside = await sh(env, `sha256sum /proc/${pid}/root/tmp/r10; stat -c %a /proc/${pid}/root/tmp/r10`);
    t.match(inside, new RegExp(`^${sha256(data)} `), 'same sha256 inside the guest');
    t.match(inside, /\n640\n/, 'mode kept');
    const back = join(local, 'r10.back');
    const outRep = await copyFromContainer(vm, 'ticker', '/tmp/r10', back, opts);
    t.equal(outRep.bytes, data.length);
    t.equal(sha256(readFileSync(back)), sha256(data), 'same sha256 on the host');
    t.equal(lstatSync(back).mode & 0o777, 0o640, 'mode kept on the host');
    await t.rejects(copyFromContainer(vm, 'ticker', '/tmp/r10', back, opts), { code: 'EEXIST' }, 'an existing local file is not overwritten');
    await copyFromContainer(vm, 'ticker', '/etc/hostname', back, { ...opts, force: true });
    t.equal(readFileSync(back, 'utf8'), 'ticker\n', '--force replaces it');
    await sh(env, `rm /proc/${pid}/root/tmp/r10`);
  });

  await t.test('cp --raw from stdin, and cp of a local tree into the container', async (t) => {
    const piece = randomBytes(200_000);
    await copyToContainer(vm, '-', 'ticker', '/tmp/from-stdin', { ...opts, raw: true }, Readable.from([piece.subarray(0, 1000), piece.subarray(1000)]));
    t.match(await sh(env, `sha256sum /proc/${pid}/root/tmp/from-stdin`), new RegExp(`^${sha256(piece)} `), 'stdin arrives intact');
    const tree = mkdtempSync(join(local, 'in-'));
    mkdirSync(join(tree, 'a', 'b'), { recursive: true });
    writeFileSync(join(tree, 'a', 'b', 'f'), 'deep\n', { mode: 0o600 });
    symlinkSync('/etc/passwd', join(tree, 'a', 'pw'));
    await copyToContainer(vm, tree, 'ticker', '/tmp/intree', opts);
    const R = `/proc/${pid}/root/tmp/intree`;
    const seen = await sh(env, `cat ${R}/a/b/f; stat -c %a ${R}/a/b/f; readlink ${R}/a/pw; ls -A ${R}/a/b`);
    t.equal(seen, 'deep\n600\n/etc/passwd\nf\n', 'tree, mode and symlink as they were, no temporary file');
    await sh(env, `rm -rf ${R} /proc/${pid}/root/tmp/from-stdin`);
  });

  await t.test('paths that try to leave the container root stay inside it', async (t) => {
    const secret = `vmictl-secret-${randomBytes(4).toString('hex')}`;
    await sh(env, `echo ${secret} > /ops-secret; R=/proc/${pid}/root; ln -sfn /../../../ops-secret $R/tmp/abs-link; ln -sfn ../../../../../ops-secret $R/tmp/rel-link; ln -sfn / $R/tmp/rootdir; ln -sfn ../../../.. $R/tmp/updir`);
    t.teardown(() => sh(env, `rm -f /ops-secret /ops-written /proc/${pid}/root/tmp/abs-link /proc/${pid}/root/tmp/rel-link /proc/${pid}/root/tmp/rootdir /proc/${pid}/root/tmp/updir /proc/${pid}/root/ops-written`));
    for (const path of ['../../ops-secret', '/../../../ops-secret', '/tmp/abs-link', '/tmp/rel-link', '/tmp/rootdir/ops-secret', '/tmp/updir/ops-secret', '/proc/self/root/../ops-secret']) {
      const chunks: Buffer[] = [];
      const got = await copyFromContainer(vm, 'ticker', path, '-', { ...opts, raw: true, followLink: true }, async (b) => { chunks.push(b); }).then(() => 'copied', (e: Error & { code?: string; errnoName?: string }) => e.errnoName ?? e.code);
      t.notMatch(Buffer.concat(chunks).toString(), secret, `${path}: the guest root's file is not reached (${got})`);
    }
    const shadowish = join(local, 'x');
    writeFileSync(shadowish, 'written by the test\n');
    await copyToContainer(vm, shadowish, 'ticker', '/tmp/updir/ops-written', opts);
    const where = await sh(env, `ls /ops-written 2>/dev/null; cat /proc/${pid}/root/ops-written`);
    t.equal(where, 'written by the test\n', 'a write through ../../.. lands in the container root, not the guest root');
  });

  await t.test('cp -r out of a hostile tree writes only below the destination', async (t) => {
    const R = `/proc/${pid}/root/tmp/hostile`;
    await sh(env, `rm -rf ${R}; mkdir -p ${R}/sub/deeper && echo data > ${R}/sub/deeper/f && ln -s /etc/passwd ${R}/pw && ln -s ../../../../x ${R}/dotdot && touch "${R}/...". && touch ${R}/..x && touch "${R}/$(printf 'evil\\nname\\033]0;pwned\\007')" && mkfifo ${R}/fifo && touch ${R}/$(printf '%0255d' 0) && ln -s .. ${R}/sub/up && chmod 751 ${R}/sub`);
    t.teardown(() => sh(env, `rm -rf ${R}`));
    const top = mkdtempSync(join(local, 'tree-'));
    const dest = join(top, 'dest');
    const r = await copyFromContainer(vm, 'ticker', '/tmp/hostile', dest, opts);
    t.same(readdirSync(top), ['dest'], 'nothing next to the destination');
    const walk = (dir: string): string[] => readdirSync(dir).flatMap((n) => {
      const p = join(dir, n);
      return lstatSync(p).isDirectory() ? [p, ...walk(p)] : [p];
    });
    const all = walk(dest);
    for (const p of all) t.ok(resolve(p).startsWith(dest + sep), `inside the destination: ${JSON.stringify(p.slice(dest.length))}`);
    t.ok(lstatSync(join(dest, 'pw')).isSymbolicLink(), 'the symlink to /etc/passwd is a symlink');
    t.equal(readlinkSync(join(dest, 'pw')), '/etc/passwd');
    t.equal(readlinkSync(join(dest, 'dotdot')), '../../../../x', 'a ../ symlink is kept as it is, not followed');
    t.ok(lstatSync(join(dest, 'sub', 'up')).isSymbolicLink());
    t.equal(readFileSync(join(dest, 'sub', 'deeper', 'f'), 'utf8'), 'data\n');
    t.equal(lstatSync(join(dest, 'sub')).mode & 0o777, 0o751, 'directory mode kept');
    t.ok(all.some((p) => p.endsWith('evil\nname\x1b]0;pwned\x07')), 'a name with control characters is kept, inside');
    t.ok(all.some((p) => p.endsWith('0'.repeat(255))), 'a 255-byte name is copied');
    t.ok(r.skipped.some((s) => /fifo/.test(s.reason) && s.path.endsWith('/fifo')), 'the fifo is reported, not copied');
    t.same(r.errors, [], 'no errors');
  });

  await t.test('no leftovers after many mixed operations', async (t) => {
    const rounds = Number(process.env.VMICTL_OPS_ROUNDS ?? 100);
    const small = join(local, 'small');
    writeFileSync(small, randomBytes(3000));
    const before = await guestProcesses(env);
    const via = new Set<number>();
    const started = Date.now();
    let done = 0;
    let failures = 0;
    for (let i = 0; done < rounds; i++) {
      const k = i % 5;
      if (k === 0) via.add((await copyToContainer(vm, small, 'ticker', `/tmp/small${i % 3}`, opts)).via!);
      else if (k === 1) via.add((await copyFromContainer(vm, 'ticker', `/tmp/small${(i - 1) % 3}`, '-', { ...opts, raw: true }, async () => undefined)).via!);
      else if (k === 2) {
        via.add((await pauseContainer(vm, 'ticker', opts)).via);
        via.add((await unpauseContainer(vm, 'ticker', opts)).via);
        done++;
      } else if (k === 3) {
        // a failing copy (no such file) must clean up as well as a good one
        await copyFromContainer(vm, 'ticker', '/no/such/file', '-', { ...opts, raw: true }, async () => undefined).catch(() => { failures++; });
      } else via.add((await killContainer(vm, 'ticker', { ...opts, signalName: 'SIGCONT', all: true })).outcome.via!);
      done++;
    }
    t.ok(failures > 0, `${done} operations in ${Math.round((Date.now() - started) / 1000)} s (${failures} failing on purpose)`);
    const after = await guestProcesses(env);
    const added = [...after.keys()].filter((p) => !before.has(p));
    t.same(added, [], 'no extra process in the guest');
    for (const p of via) {
      if (!before.has(p) || !after.has(p)) continue;
      const b = before.get(p)!;
      let a = after.get(p)!;
      // a process's own work changes its table for a moment (busyd, a shell, saves and restores an
      // fd around each 20 ms `read <> fifo`): looked at again, that is gone, and a leak is not
      for (let i = 0; i < 5 && a.counts !== b.counts; i++) {
        await new Promise((r) => setTimeout(r, 200));
        a = (await guestProcesses(env)).get(p) ?? a;
      }
      t.equal(a.counts, b.counts, `pid ${p} (${b.comm}, injected into): same open fds and mappings as before`, { before: b.fds, after: a.fds });
    }
    t.ok([...via].some((p) => before.has(p)), 'the injected-into processes were checked');
    t.equal((await sh(env, `find / /proc/${pid}/root/ /proc/${pid}/root/tmp -xdev -maxdepth 1 -name '.vmictl-cp-*'`)).trim(), '', 'no temporary file in the guest');
    t.same(readdirSync(journal), [], 'no injection journal left (every target restored)');
    // a breakpoint left inserted would stop the VM as soon as a hot syscall return hits it
    const a = await counter(env, pid);
    await sleep(2000);
    const b = await counter(env, pid);
    const st = (await vm.qmp!.execute('query-status')) as { running: boolean };
    t.ok(st.running && b > a, `the VM runs on and the ticker counts (${a} → ${b}): no breakpoint is left`);
    await sh(env, `rm -f /proc/${pid}/root/tmp/small*`);
  });
});
