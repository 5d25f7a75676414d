/**
 * Kernel integrity against the real test VM: a clean kernel gives no finding on two boots (two
 * KASLR slides); tampering done from outside through the gdbstub is found (sys_call_table entry,
 * first bytes of a handler) and so is a recorded-baseline difference; the test rootkit
 * (test-vms/rootkit, loaded with insmod) has its four hooks/hidings reported; and an injection
 * protected with protectFor sees a clean kernel while the hooks are back afterwards (or gone,
 * with repair); `vmictl exec`, `cp` and `kill` behind the CLI's guard give what a clean kernel
 * gives.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Vm } from '../../lib/vm';
import { checkKernel, protectFor, type Finding } from '../../lib/integrity';
import { openInjection } from '../../lib/inject';
import { bootVm, guestRun, skipWithReason, testVm, type VmEnv } from '../helpers/vm';
import { runCli } from '../helpers/synthetic-dump';
import { guestPid, poke } from '../helpers/kernel-poke';

const VMLINUX = process.env.VMICTL_DBG_VMLINUX ?? resolve(__dirname, '../../test-vms/build/vmlinux');
const tmp = mkdtempSync(join(tmpdir(), 'vmictl-integrity-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

async function withVm<T>(env: VmEnv, fn: (vm: Vm) => Promise<T>): Promise<T> {
  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  try {
    return await fn(vm);
  } finally {
    await vm.close();
  }
}

const summary = (fs: Finding[]) => fs.map((f) => `${f.kind} ${f.symbol}`).join('; ');

if (!existsSync(VMLINUX)) {
  skipWithReason(t, `no vmlinux with relocations at ${VMLINUX} (make -C test-vms profile)`);
} else {
  let firstSlide = -1n;
  // The rootkit needs a VM of its own (it cannot be unloaded), booted with another KASLR slide.
  // Under `make test` the first subtest works on the shared VM, so that boot starts now and runs
  // meanwhile; run by hand, the first subtest's private VM is stopped before it starts.
  const boot = () => bootVm(t, { env: { READY_TIMEOUT: '600' } });
  const second = process.env.VMICTL_QMP ? boot() : undefined;
  second?.catch(() => undefined); // awaited (and its failure reported) by the rootkit subtest

  t.test('a clean kernel: no finding; tampering from outside is found, and a recorded baseline sees it', async (t: Test) => {
    // the shared VM under `make test`; run by hand, a private one stopped before the second boot
    const env = process.env.VMICTL_QMP ? await testVm(t) : await bootVm(t, { env: { READY_TIMEOUT: '600' } });
    if (!env) return;
    const baseline = join(tmp, 'baseline.json');
    await withVm(env, async (vm) => {
      const clean = await checkKernel(vm, { vmlinux: VMLINUX, baseline });
      firstSlide = (await vm.kernel()).kaslr.virtualSlide;
      t.same(summary(clean.findings), '', `clean VM (slide 0x${firstSlide.toString(16)}): no finding over ${clean.checked.textBytes} bytes of text and ${clean.checked.patchSites} patch sites`);
      t.equal(clean.recorded, baseline, 'the baseline was recorded');
    });
    await withVm(env, async (vm) => {
      const kernel = await vm.kernel();
      const nr = 170; // sethostname: nothing in the test VM calls it
      const entry = kernel.symbol('sys_call_table') + BigInt(nr * 8);
      const other = Buffer.alloc(8);
      other.writeBigUInt64LE(kernel.symbol('__x64_sys_getppid'));
      const handler = kernel.symbol('__x64_sys_sethostname');
      const oldEntry = await poke(vm, entry, other);
      const oldCode = await poke(vm, handler, Buffer.from([0xe9, 0x00, 0x00, 0x00, 0x00]));
      try {
        const r = await checkKernel(vm, { vmlinux: VMLINUX, baseline });
        const table = r.findings.find((f) => f.kind === 'syscall-table');
        t.ok(table && table.address === entry && table.found === `0x${kernel.symbol('__x64_sys_getppid').toString(16)}`, `the changed sys_call_table entry is reported: ${table?.symbol} expected ${table?.expected} found ${table?.found}`);
        const hook = r.findings.find((f) => f.kind === 'inline-hook' && f.address === handler);
        t.ok(hook, `the patched handler is reported as an inline hook: ${hook?.symbol} expected ${hook?.expected} found ${hook?.found}`);
        t.ok(r.findings.some((f) => f.kind === 'baseline' && f.symbol.startsWith('sys_call_table')), 'the recorded baseline sees the table change');
        t.ok(r.findings.some((f) => f.kind === 'baseline' && f.symbol.startsWith('.text page')), 'the recorded baseline sees the text change');
      } finally {
        await poke(vm, handler, oldCode);
        await poke(vm, entry, oldEntry);
      }
      const after = await checkKernel(vm, { vmlinux: VMLINUX, baseline });
      t.same(summary(after.findings), '', 'put back: clean again, also against the recorded baseline');
    });
    // a kprobe on a handler, made through the kernel's own kprobe_events: the vmlinux cannot undo it
    const tracing = '/sys/kernel/tracing';
    const probe = await guestRun(env, `mountpoint -q ${tracing} || mount -t tracefs nodev ${tracing}; echo 'p:vmictl_vmlinux __x64_sys_kill' >> ${tracing}/kprobe_events && echo ok`);
    if (!/ok/.test(probe.output)) {
      skipWithReason(t, `this kernel has no kprobe events to test with: ${probe.output.trim()}`);
      return;
    }
    try {
      const r = await withVm(env, (vm) => checkKernel(vm, { vmlinux: VMLINUX }));
      t.ok(r.findings.some((f) => f.kind === 'kprobe' && /__x64_sys_kill/.test(f.symbol)), `with the vmlinux, the kprobe on __x64_sys_kill is reported: ${summary(r.findings)}`);
      const vmictl = (...args: string[]) => runCli('syscall', '--qmp', env.qmp, '--gdb', env.gdb, '--vmlinux', VMLINUX, ...args);
      const refused = await vmictl('ticker', 'getpid');
      t.not(refused.code, 0, `the guard with the vmlinux refuses it: ${refused.stderr.trim()}`);
      t.match(refused.stderr, /\[EHOOKED\]/, 'as a hook it cannot undo');
      t.match(refused.stderr, /__x64_sys_kill at 0x[0-9a-f]+ \(a kprobe at 0x[0-9a-f]+, running kprobe_dispatcher/, 'and names it');
      const allowed = await vmictl('--allow-hooked', 'ticker', 'getpid');
      t.equal(allowed.code, 0, `--allow-hooked goes on through it: ${allowed.stdout.trim()} ${allowed.stderr.trim()}`);
    } finally {
      await guestRun(env, `echo '-:vmictl_vmlinux' >> ${tracing}/kprobe_events`);
    }
    const gone = await withVm(env, (vm) => checkKernel(vm, { vmlinux: VMLINUX }));
    t.same(summary(gone.findings), '', 'the kprobe removed: clean again');
  });

  t.test('the test rootkit on a second boot', async (t: Test) => {
    const env = await (second ?? boot());
    if (!env) return;
    await withVm(env, async (vm) => {
      const clean = await checkKernel(vm, { vmlinux: VMLINUX });
      const slide = (await vm.kernel()).kaslr.virtualSlide;
      t.same(summary(clean.findings), '', `second boot, clean (slide 0x${slide.toString(16)}${slide === firstSlide ? ', by chance the same as the first' : ', another slide than the first'}): no finding`);
    });
    const has = await guestRun(env, 'test -f /usr/lib/vmictl/vmictl_rk.ko');
    if (has.status !== 0) {
      t.fail('the test VM image has no rootkit module (make -C test-vms image)');
      return;
    }
    // the protected process: the init of the `tree` container (this VM is the test's own; SIGKILL
    // from the root namespace reaches a container's init, so a dropped one shows the hook at work)
    // (its /tmp is a tmpfs of its own: written through its root as /proc shows it)
    const box = await guestRun(env, "p=$(runc list | awk '$4 == \"/containers/tree\" { print $2 }') && echo top > /proc/$p/root/tmp/secret.txt && echo denied > /proc/$p/root/tmp/denied.txt && echo $p", 120_000);
    const victim = Number(box.output.trim());
    t.ok(box.status === 0 && victim > 0, `tree's init is host pid ${victim}`);
    const hidden = await guestPid(env, 'sleep 100001');
    const loop = await guestPid(env, 'sh -c "while true; do usleep 50000; done"');
    await guestRun(env, 'echo top > /tmp/secret.txt; echo denied > /tmp/denied.txt');
    const ins = await guestRun(env, `insmod /usr/lib/vmictl/vmictl_rk.ko drop_kill_pid=${victim} hide_name=secret.txt deny_path=/tmp/denied.txt unlink_pid=${hidden} hide_module=1`);
    t.equal(ins.status, 0, `insmod: ${ins.output.trim()}`);
    // the hooks work inside the guest
    const k = await guestRun(env, `kill -KILL ${victim}; sleep 1; test -d /proc/${victim} && echo alive`);
    t.match(k.output, /alive/, 'kill to the protected pid is dropped in the guest');
    t.notMatch((await guestRun(env, 'ls /tmp')).output, /secret\.txt/, 'ls does not show the hidden file');
    t.not((await guestRun(env, 'cat /tmp/denied.txt')).status, 0, 'opening the denied path fails');
    t.notMatch((await guestRun(env, 'cat /proc/modules')).output, /vmictl_rk/, 'the module is not in /proc/modules');

    await withVm(env, async (vm) => {
      const r = await checkKernel(vm, { vmlinux: VMLINUX });
      t.comment(summary(r.findings));
      for (const name of ['kill', 'getdents64', 'openat']) {
        t.ok(r.findings.some((f) => f.kind === 'syscall-table' && f.symbol.includes(`(${name})`)), `sys_call_table hook of ${name} reported`);
        t.ok(r.findings.some((f) => f.kind === 'inline-hook' && f.symbol === `__x64_sys_${name}`), `inline hook of __x64_sys_${name} reported`);
      }
      t.ok(r.findings.some((f) => f.kind === 'hidden-process' && f.symbol.startsWith(`pid ${hidden} `)), `the unlinked process ${hidden} is reported`);
      t.ok(r.findings.some((f) => f.kind === 'hidden-module' && f.symbol === 'vmictl_rk'), 'the hidden module is reported');
      t.notOk(r.findings.some((f) => f.kind === 'idt' || f.kind === 'text'), 'nothing else is reported');
    });

    const SYSCALLS = ['kill', 'getdents64', 'openat', 'read', 'write', 'close', 'mmap', 'munmap', 'getpid'];
    await withVm(env, async (vm) => {
      let found: Finding[] = [];
      const s = await openInjection(vm, { pid: loop }, { journal: false, timeout: 60_000, callTimeout: 30_000, protect: async (v) => { const p = await protectFor(v, SYSCALLS, { vmlinux: VMLINUX }); found = p.findings; return p; } });
      try {
        t.ok(found.length >= 6, `protectFor found the hooks on the operation's path: ${summary(found)}`);
        const names = (await s.listDirectory('/tmp')).map((d) => d.name);
        t.ok(names.includes('secret.txt'), 'the injected getdents64 lists the hidden file');
        t.equal((await s.readFile('/tmp/denied.txt')).toString(), 'denied\n', 'the injected openat opens the denied path');
      } finally {
        await s.end();
      }
    });

    // the CLI's operations run behind the guard (--vmlinux): the same results as on a clean kernel
    const vmictl = (command: string, ...args: string[]) => runCli(command, '--qmp', env.qmp, '--gdb', env.gdb, '--vmlinux', VMLINUX, ...args);
    const guarded = /kernel tampering on the path of injected syscalls \(\d+: .*(__x64_sys_|sys_call_table)/;
    const cat = await vmictl('exec', 'tree', '--', '/bin/cat', '/tmp/denied.txt');
    t.equal(cat.code, 0, `exec cat of the denied path succeeds: ${cat.stderr.trim()}`);
    t.equal(cat.stdout, 'denied\n', 'and prints the file');
    t.match(cat.stderr, guarded, 'the guard said what it restored for the operation');
    const ls = await vmictl('exec', 'tree', '--', '/bin/ls', '/tmp');
    t.match(ls.stdout, /secret\.txt/, 'exec ls lists the hidden file');
    const one = await vmictl('cp', '--raw', 'tree:/tmp/secret.txt', '-');
    t.equal(one.stdout, 'top\n', `cp of the hidden file to stdout: ${one.stderr.trim()}`);
    const out = join(tmp, 'tree-tmp');
    const tree = await vmictl('cp', 'tree:/tmp', out);
    t.equal(tree.code, 0, `cp of the directory: ${tree.stderr.trim()}`);
    t.ok(existsSync(join(out, 'secret.txt')) && existsSync(join(out, 'denied.txt')), 'cp copies the hidden file and the denied one');
    const kill = await vmictl('kill', 'tree');
    t.equal(kill.code, 0, `vmictl kill tree: ${kill.stderr.trim()}`);
    const gone = await guestRun(env, "sleep 1; test -d /proc/" + victim + " && echo alive || echo gone; runc list | awk '$4 == \"/containers/tree\" { print $3 }'");
    t.match(gone.output, /gone\s+stopped/, 'vmictl kill reached the protected process: the tree container is stopped');
    t.match((await guestRun(env, `test -d /proc/${loop} && echo alive`)).output, /alive/, 'and nothing outside it was hit');
    t.notMatch((await guestRun(env, 'ls /tmp')).output, /secret\.txt/, 'afterwards the guest is as it was: the file is hidden again');
    await withVm(env, async (vm) => {
      const r = await checkKernel(vm, { vmlinux: VMLINUX, wholeText: false });
      t.ok(r.findings.filter((f) => f.kind === 'inline-hook').length >= 3, 'the hooks are back in place');
    });

    await withVm(env, async (vm) => {
      const p = await protectFor(vm, SYSCALLS, { vmlinux: VMLINUX, repair: true });
      t.ok(p.findings.length >= 6, 'repair: the hooks are found');
      await p.release();
    });
    t.match((await guestRun(env, 'ls /tmp')).output, /secret\.txt/, 'after repair the guest lists the file');
    t.equal((await guestRun(env, 'cat /tmp/denied.txt')).status, 0, 'after repair the guest opens the path');
    await withVm(env, async (vm) => {
      const r = await checkKernel(vm, { vmlinux: VMLINUX });
      t.same(r.findings.filter((f) => f.kind === 'inline-hook' || f.kind === 'syscall-table' || f.kind === 'text').map((f) => f.symbol), [], 'after repair no hook is left (the hidden process and module stay hidden)');
    });
  });
}
