/**
 * `vmictl check --containers` against escapes made for real in the test VM, each undone after:
 * a host process placed in ticker's cgroup; a process in ticker's pid namespace that kept the
 * host's other namespaces (the nsenter shape); a chroot through a directory fd of the host's
 * root carried into ticker's mount namespace (the root and the fd are both reported); core_pattern pointed through /proc/%P/root; a
 * ticker process given the kernel's init_cred (written from outside, as the rootkit's
 * commit_creds(prepare_kernel_cred(0)) leaves it). A clean guest has no finding, before and after.
 */
import t, { type Test } from 'tap';
import { checkKernel, type Finding } from '../../lib/integrity';
import { listContainers } from '../../lib/containers/list';
import { guestRun, testVm, type VmEnv } from '../helpers/vm';
import { runCli } from '../helpers/synthetic-dump';
import { guestPid, poke } from '../helpers/kernel-poke';
import { Vm } from '../../lib/vm';

const summary = (fs: Finding[]) => fs.map((f) => `${f.kind} ${f.symbol}: ${f.found}`).join('; ');

async function escapes(env: VmEnv): Promise<Finding[]> {
  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  try {
    return (await checkKernel(vm, { containers: 'only' })).findings;
  } finally {
    await vm.close();
  }
}

t.test('escapes from ticker, each found and each undone', async (t: Test) => {
  const env = await testVm(t);
  if (!env) return;
  const cli = await runCli('check', '--containers', '--json', '--qmp', env.qmp, '--gdb', env.gdb);
  const clean = JSON.parse(cli.stdout) as { findings: Finding[]; mode: string; containers: { checked: number; tasks: number; configuration: string[] } };
  t.equal(cli.code, 0, `a clean guest: check --containers exits 0 (${cli.stderr.trim()})`);
  t.same([clean.findings, clean.mode], [[], 'containers'], 'no finding, in the containers mode');
  t.ok(clean.containers.checked >= 4 && clean.containers.tasks >= clean.containers.checked, `every container and its tasks looked at: ${clean.containers.checked} containers, ${clean.containers.tasks} tasks`);
  const ticker = Number((await guestRun(env, "runc state ticker | sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p'")).output.trim());
  t.ok(ticker > 0, `ticker's init is host pid ${ticker}`);
  const stop = (pid: number) => guestRun(env, `kill -9 ${pid} 2>/dev/null; true`).then(() => undefined);
  /** The host pid of the `sleep TAG` process (nsenter forks it; its own command line also ends so). */
  const sleeper = async (tag: string) => Number((await guestRun(env, `ps -o pid,comm,args | awk '$2 == "sleep" && $NF == "${tag}" { print $1 }' | head -n 1`)).output.trim());

  await t.test('a host process in ticker\'s cgroup', async (t) => {
    const pid = await guestPid(env, 'sleep 100003');
    t.teardown(() => stop(pid));
    await guestRun(env, `echo ${pid} > /sys/fs/cgroup/ticker/cgroup.procs`);
    const f = await escapes(env);
    t.ok(f.some((x) => x.kind === 'container-escape' && x.symbol === `ticker: pid ${pid} (sleep)` && /host's pid and mount namespaces in its cgroup \/ticker/.test(x.found)), `reported: ${summary(f)}`);
  });

  await t.test('a process in ticker\'s pid namespace that kept the host\'s other namespaces', async (t) => {
    const pid = await guestPid(env, `nsenter -t ${ticker} -p -- sleep 100004`);
    const child = await sleeper('100004');
    t.teardown(() => stop(pid).then(() => stop(child)));
    const f = await escapes(env);
    t.ok(f.some((x) => x.symbol === `ticker: pid ${child} (sleep)` && /the host's mnt, net, ipc, uts(, cgroup)? namespaces/.test(x.found)), `pid ${child}: the namespaces it kept are named: ${summary(f)}`);
  });

  await t.test('a chroot through a leaked fd of the host\'s root', async (t) => {
    const pid = await guestPid(env, `nsenter -t ${ticker} -m -u -i -n -p -- chroot /proc/self/fd/9 sleep 100005 9</`);
    const child = await sleeper('100005');
    t.teardown(() => stop(pid).then(() => stop(child)));
    const f = await escapes(env);
    t.ok(f.some((x) => x.symbol === `ticker: pid ${child} (sleep)` && /root directory on a mount of another mount namespace/.test(x.found)), `pid ${child}: its root is the host's: ${summary(f)}`);
    t.ok(f.some((x) => x.symbol === `ticker: pid ${child} (sleep)` && /^fd 9 open on a directory of the host's mount namespace \(\/\)/.test(x.found)), 'and the leaked fd itself, still open in it');
    t.notOk(f.some((x) => x.symbol === `ticker: pid ${child} (sleep)` && /the host's (pid|mnt|net)/.test(x.found)), 'its pid, mount and network namespaces are ticker\'s (nsenter left it the host\'s cgroup namespace, which is said too)');
  });

  await t.test('core_pattern pointed into a container', async (t) => {
    const old = (await guestRun(env, 'cat /proc/sys/kernel/core_pattern')).output.trim();
    t.teardown(() => guestRun(env, `echo '${old.replace(/'/g, '')}' > /proc/sys/kernel/core_pattern`).then(() => undefined));
    await guestRun(env, "echo '|/proc/%P/root/tmp/payload %p' > /proc/sys/kernel/core_pattern");
    const f = await escapes(env);
    t.ok(f.some((x) => x.symbol === 'core_pattern' && x.found === '|/proc/%P/root/tmp/payload %p' && /runs it as root on the host/.test(x.detail ?? '')), `reported: ${summary(f)}`);
  });

  await t.test('a ticker process running with init_cred', async (t) => {
    const pid = await guestPid(env, `nsenter -t ${ticker} -m -u -i -n -p -- sleep 100006`);
    const child = await sleeper('100006');
    t.teardown(() => stop(pid).then(() => stop(child)));
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    let restore: Array<[bigint, Buffer]> = [];
    try {
      await vm.pause();
      const kernel = await vm.kernel();
      const task = (await listContainers(kernel)).containers.flatMap((c) => c.processes).find((p) => p.pid === child);
      t.ok(task, `pid ${child} is listed in a container`);
      if (!task) return;
      const initCred = Buffer.alloc(8);
      initCred.writeBigUInt64LE(kernel.symbol('init_cred'));
      for (const field of ['real_cred', 'cred']) {
        const at = task.address + BigInt(kernel.profile.fieldOffset('task_struct', field));
        restore.push([at, await poke(vm, at, initCred)]);
      }
    } finally {
      await vm.close();
    }
    try {
      const f = await escapes(env);
      t.ok(f.some((x) => x.symbol === `ticker: pid ${child} (sleep)` && /the kernel's init_cred/.test(x.found)), `reported: ${summary(f)}`);
    } finally {
      const back = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
      try {
        for (const [at, bytes] of restore.reverse()) await poke(back, at, bytes);
      } finally {
        await back.close();
      }
      restore = [];
    }
  });

  const after = await escapes(env);
  t.same(summary(after), '', 'every escape undone: no finding');
});
