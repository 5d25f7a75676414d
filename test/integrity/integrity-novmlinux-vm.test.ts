/**
 * Kernel integrity with no file from the kernel's packages: no vmlinux, no profile file (the
 * profile is built from guest memory into a temporary cache). A clean guest gives no finding;
 * the test rootkit (test-vms/rootkit) has its table hooks, inline hooks, hidden task and hidden
 * module reported; `vmictl exec` and `kill` behind the guard give a clean kernel's results (table
 * entries and ftrace-site hooks undone for the operation, put back after); a hook whose original
 * bytes cannot be told (a dispatch branch of x64_sys_call bent into the module) makes the guard
 * refuse with EHOOKED, and --allow-hooked goes on through it.
 * Runs on the default (6.1) image and, with IMAGE_DIR=…/build-trixie, on 6.12; the rootkit part
 * is skipped, with its reason, when the image has no rootkit module.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Vm } from '../../lib/vm';
import { checkKernel, type Finding } from '../../lib/integrity';
import { decodeAll } from '../../lib/integrity/x86-decode';
import { SymbolMap } from '../../lib/integrity/symbol-map';
import { bootVm, guestRun, skipWithReason, TEST_VMS, testVm, type VmEnv } from '../helpers/vm';
import { runCli } from '../helpers/synthetic-dump';
import { guestPid, poke } from '../helpers/kernel-poke';

// nothing from the kernel's packages: no vmlinux from the environment either
delete process.env.VMICTL_VMLINUX;
delete process.env.VMICTL_DBG_VMLINUX;
const tmp = mkdtempSync(join(tmpdir(), 'vmictl-novmlinux-'));
const noProfiles = join(tmp, 'no-profiles');
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

const summary = (fs: Finding[]) => fs.map((f) => `${f.kind} ${f.symbol}`).join('; ');

/** A Vm whose profile comes from guest memory only (cached in `cache`). */
async function withVm<T>(env: VmEnv, cache: string, fn: (vm: Vm) => Promise<T>): Promise<T> {
  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb, profileDirs: [noProfiles], profileCache: cache });
  try {
    return await fn(vm);
  } finally {
    await vm.close();
  }
}

/** The profile file built from guest memory (for the CLI's --profile). */
function builtProfile(cache: string): string {
  const files = readdirSync(cache).filter((f) => f.startsWith('auto-'));
  if (files.length !== 1) throw new Error(`expected one automatic profile in ${cache}, found ${files.join(', ')}`);
  return join(cache, files[0]);
}

t.test('a clean guest: no finding, without vmlinux or profile file', async (t: Test) => {
  const env = process.env.VMICTL_QMP ? await testVm(t) : await bootVm(t, { env: { READY_TIMEOUT: '600' } });
  if (!env) return;
  const cache = mkdtempSync(join(tmp, 'cache-'));
  await withVm(env, cache, async (vm) => {
    const r = await checkKernel(vm, {});
    const k = await vm.kernel();
    t.equal(r.mode, 'kallsyms', 'checked without a vmlinux');
    t.match(k.profile.source, cache, `the profile was built from guest memory (${k.kaslr.banner.split(' (')[0]})`);
    t.same(summary(r.findings), '', `no finding: ${r.checked.syscallTableEntries} table entries, ${r.checked.functions} functions (${r.checked.textBytes} bytes decoded), ${r.checked.idtGates} IDT gates, in ${r.ms} ms`);
    t.ok(r.checked.functions > 50 && r.checked.textBytes > 10_000, 'the syscall paths were decoded');
  });
  const cli = await runCli('check', '--qmp', env.qmp, '--gdb', env.gdb, '--profile', builtProfile(cache));
  t.equal(cli.code, 0, `vmictl check exits 0: ${cli.stdout.split('\n').find((l) => l.includes('finding(s)'))}`);
  t.match(cli.stdout, /^not checked without a vmlinux: .*\(--vmlinux FILE does those\)$/m, 'one line says what cannot be checked without a vmlinux');
  const json = await runCli('check', '--json', '--qmp', env.qmp, '--gdb', env.gdb, '--profile', builtProfile(cache));
  const doc = JSON.parse(json.stdout) as { findings: unknown[]; checked: Record<string, number>; mode: string; notChecked: string };
  t.same([doc.findings, doc.mode, typeof doc.checked.functions, typeof doc.notChecked], [[], 'kallsyms', 'number', 'string'], '--json: findings, checked, mode, notChecked');
  // the guard on a clean kernel changes nothing and says nothing
  const pid = await runCli('syscall', '--qmp', env.qmp, '--gdb', env.gdb, '--profile', builtProfile(cache), 'ticker', 'getpid');
  t.equal(pid.code, 0, `an injected getpid behind the guard: ${pid.stdout.trim()}`);
  t.notMatch(pid.stderr, /tampering/, 'the guard found nothing to restore');
});

t.test('hooks a rootkit writes cheaply, and a kprobe and a tracer on a watched handler', async (t: Test) => {
  const env = process.env.VMICTL_QMP ? await testVm(t) : await bootVm(t, { env: { READY_TIMEOUT: '600' } });
  if (!env) return;
  const cache = mkdtempSync(join(tmp, 'cache-'));
  const tracing = '/sys/kernel/tracing';
  t.teardown(() => guestRun(env, `echo nop > ${tracing}/current_tracer; echo > ${tracing}/set_ftrace_filter; echo 0 > ${tracing}/events/kprobes/enable; echo > ${tracing}/kprobe_events`).then(() => undefined, () => undefined));
  let kill = 0n, slot = 0, getpid = 0n;
  await withVm(env, cache, async (vm) => {
    await vm.pause();
    const kernel = await vm.kernel();
    const symbols = SymbolMap.of(kernel);
    kill = symbols.address('__x64_sys_kill')!;
    getpid = symbols.address('__x64_sys_getpid')!;
    const head = await kernel.space.read(kill, 4);
    slot = head.equals(Buffer.from('f30f1efa', 'hex')) ? 4 : 0;
  });
  const guarded = (what: string, at: RegExp) => async () => {
    const r = await runCli('syscall', '--qmp', env.qmp, '--gdb', env.gdb, '--profile', builtProfile(cache), 'ticker', 'getpid');
    t.not(r.code, 0, `${what}: an injected getpid is refused`);
    t.match(r.stderr, at, `${what}: the error names the hook: ${r.stderr.trim()}`);
  };
  const findingOf = async (want: (f: Finding) => boolean): Promise<Finding[]> => withVm(env, cache, async (vm) => {
    const r = await checkKernel(vm, {});
    return r.findings.filter(want);
  });
  // written from outside, as the acceptance check did: each is found, refused by the guard, and put back
  const rel = (from: bigint, to: bigint) => { const b = Buffer.alloc(4); b.writeInt32LE(Number(to - from)); return b.toString('hex'); };
  const cases: Array<{ what: string; at: () => bigint; bytes: () => string; how: RegExp }> = [
    { what: '"mov $-1, %rax; ret" over the entry', at: () => kill, bytes: () => '48c7c0ffffffffc3', how: /returns -1 \(an errno\) at once/ },
    { what: 'an errno (-EACCES) returned right after the ftrace site', at: () => kill + BigInt(slot + 5), bytes: () => 'b8f3ffffffc3', how: /returns -13 \(an errno\) at once/ },
    { what: 'a jump within core text right after the site', at: () => kill + BigInt(slot + 5), bytes: () => `e9${rel(kill + BigInt(slot + 10), getpid)}`, how: /jumps away at once, to __x64_sys_getpid/ },
  ];
  for (const c of cases) {
    let old: Buffer | undefined;
    await withVm(env, cache, async (vm) => { old = await poke(vm, c.at(), Buffer.from(c.bytes(), 'hex')); });
    try {
      const found = await findingOf((f) => f.kind === 'inline-hook' && f.symbol.startsWith('__x64_sys_kill'));
      t.ok(found.some((f) => c.how.test(f.detail ?? '')), `${c.what}: reported (${found.map((f) => `${f.symbol}: ${f.detail}`).join('; ')})`);
      await guarded(c.what, /hooked on the path of injected syscalls .*__x64_sys_kill at 0x[0-9a-f]+/)();
    } finally {
      if (old) { const o = old; await withVm(env, cache, async (vm) => { await poke(vm, c.at(), o); }); }
    }
  }
  t.same(summary(await findingOf(() => true)), '', 'put back: no finding');

  // through the kernel's own data: a kprobe (kprobe_events) and the function tracer on __x64_sys_kill
  const probe = await guestRun(env, `mountpoint -q ${tracing} || mount -t tracefs nodev ${tracing}; echo 'p:vmictl_probe __x64_sys_kill' >> ${tracing}/kprobe_events && echo 1 > ${tracing}/events/kprobes/vmictl_probe/enable && echo ok`);
  if (!/ok/.test(probe.output)) {
    skipWithReason(t, `this kernel has no kprobe events to test with: ${probe.output.trim()}`);
    return;
  }
  const kprobes = await findingOf((f) => f.kind === 'kprobe');
  t.ok(kprobes.some((f) => f.symbol.startsWith('__x64_sys_kill') && /a kprobe at 0x[0-9a-f]+ attached to __x64_sys_kill(\+0x[04])?, running kprobe_dispatcher.*\(core kernel\)/.test(f.found)), `the kprobe is reported with its handler and owner: ${kprobes.map((f) => f.found).join('; ')}`);
  t.notOk((await findingOf((f) => f.kind === 'inline-hook')).length, 'its ftrace site, enabled for it, is no inline hook (the record says so)');
  await guarded('a kprobe on __x64_sys_kill', /a kprobe at 0x[0-9a-f]+ attached to __x64_sys_kill/)();
  await guestRun(env, `echo 0 > ${tracing}/events/kprobes/vmictl_probe/enable; echo '-:vmictl_probe' >> ${tracing}/kprobe_events`);
  t.same(summary(await findingOf(() => true)), '', 'the kprobe removed: no finding');

  const tracer = await guestRun(env, `echo __x64_sys_kill > ${tracing}/set_ftrace_filter && echo function > ${tracing}/current_tracer && echo ok`);
  if (!/ok/.test(tracer.output)) {
    skipWithReason(t, `this kernel has no function tracer to test with: ${tracer.output.trim()}`);
    return;
  }
  const ops = await findingOf((f) => f.kind === 'ftrace-ops');
  t.ok(ops.some((f) => f.symbol.startsWith('__x64_sys_kill') && /an ftrace_ops at 0x[0-9a-f]+ attached to __x64_sys_kill(\+0x[04])?, running .*\(core kernel\)/.test(f.found)), `the function tracer's ftrace_ops is reported on its one function: ${ops.map((f) => f.found).join('; ')}`);
  await guarded('the function tracer on __x64_sys_kill', /an ftrace_ops at 0x[0-9a-f]+ attached to __x64_sys_kill/)();
  await guestRun(env, `echo nop > ${tracing}/current_tracer; echo > ${tracing}/set_ftrace_filter`);
  t.same(summary(await findingOf(() => true)), '', 'the tracer off: no finding');
});

t.test('the test rootkit, without vmlinux or profile file', async (t: Test) => {
  // the image's build directory has the module when its initramfs does (build-image.sh copies it)
  const imageDir = process.env.IMAGE_DIR ?? join(TEST_VMS, 'build');
  if (!existsSync(join(imageDir, 'vmictl_rk.ko'))) {
    skipWithReason(t, `the test VM image in ${imageDir} has no rootkit module (vmictl_rk.ko): not built for its kernel yet`);
    return;
  }
  const env = await bootVm(t, { env: { READY_TIMEOUT: '600' } });
  if (!env) return;
  const has = await guestRun(env, 'test -f /usr/lib/vmictl/vmictl_rk.ko');
  if (has.status !== 0) {
    skipWithReason(t, 'this test VM image has no rootkit module (/usr/lib/vmictl/vmictl_rk.ko): not built for its kernel yet');
    return;
  }
  const cache = mkdtempSync(join(tmp, 'cache-'));
  await withVm(env, cache, async (vm) => {
    t.same(summary((await checkKernel(vm, {})).findings), '', 'clean before the rootkit');
  });
  const profile = builtProfile(cache);
  const box = await guestRun(env, "p=$(runc list | awk '$4 == \"/containers/tree\" { print $2 }') && echo denied > /proc/$p/root/tmp/denied.txt && echo top > /proc/$p/root/tmp/secret.txt && echo $p", 120_000);
  const victim = Number(box.output.trim());
  t.ok(box.status === 0 && victim > 0, `tree's init is host pid ${victim}`);
  const hidden = await guestPid(env, 'sleep 100002');
  const loop = await guestPid(env, 'sh -c "while true; do usleep 50000; done"');
  const ins = await guestRun(env, `insmod /usr/lib/vmictl/vmictl_rk.ko drop_kill_pid=${victim} hide_name=secret.txt deny_path=/tmp/denied.txt unlink_pid=${hidden} hide_module=1`);
  t.equal(ins.status, 0, `insmod: ${ins.output.trim()}`);

  let rkKill = 0n;
  let bent: { address: bigint; old: Buffer } | undefined;
  await withVm(env, cache, async (vm) => {
    const r = await checkKernel(vm, {});
    t.comment(summary(r.findings));
    for (const name of ['kill', 'getdents64', 'openat']) {
      const table = r.findings.find((f) => f.kind === 'syscall-table' && f.symbol.includes(`(${name})`));
      t.ok(table && /module space/.test(table.detail ?? ''), `sys_call_table hook of ${name} reported: ${table?.found} ${table?.detail}`);
      if (name === 'kill' && table) rkKill = BigInt(table.found);
      t.ok(r.findings.some((f) => f.kind === 'inline-hook' && f.symbol.startsWith(`__x64_sys_${name}`) && /module space/.test(f.detail ?? '')), `inline hook of __x64_sys_${name} reported`);
    }
    t.ok(r.findings.some((f) => f.kind === 'hidden-process' && f.symbol.startsWith(`pid ${hidden} `)), `the unlinked process ${hidden} is reported`);
    t.ok(r.findings.some((f) => f.kind === 'hidden-module' && f.symbol === 'vmictl_rk'), 'the hidden module is reported');
    t.notOk(r.findings.some((f) => f.kind === 'idt'), 'no IDT finding');
  });

  // behind the guard (no vmlinux): the table entries and the handlers' ftrace sites are put back
  const vmictl = (command: string, ...args: string[]) => runCli(command, '--qmp', env.qmp, '--gdb', env.gdb, '--profile', profile, ...args);
  const guarded = /kernel tampering on the path of injected syscalls, seen without a vmlinux \(\d+: .*__x64_sys_/;
  const cat = await vmictl('exec', 'tree', '--', '/bin/cat', '/tmp/denied.txt');
  t.equal(cat.stdout, 'denied\n', `exec cat of the denied path prints the file: ${cat.stderr.trim()}`);
  t.match(cat.stderr, guarded, 'the guard said what it restored');
  const ls = await vmictl('exec', 'tree', '--', '/bin/ls', '/tmp');
  t.match(ls.stdout, /secret\.txt/, `exec ls lists the hidden file${ls.stdout.includes('secret') ? '' : ` (exit ${ls.code}; stdout ${JSON.stringify(ls.stdout)}; stderr ${JSON.stringify(ls.stderr.trim())})`}`);
  t.notMatch((await guestRun(env, `ls /proc/${victim}/root/tmp`)).output, /secret\.txt/, 'afterwards the hooks are back in the guest: ls there hides the file');

  // a smarter hook: x64_sys_call's branch to __x64_sys_kill bent into the module; no file tells
  // what those bytes were, so the guard refuses, and --allow-hooked goes on through it
  await withVm(env, cache, async (vm) => {
    await vm.pause();
    const kernel = await vm.kernel();
    const symbols = SymbolMap.of(kernel);
    const dispatch = symbols.address('x64_sys_call')!;
    const code = await kernel.space.read(dispatch, symbols.extentFrom(dispatch));
    const branch = decodeAll(code, dispatch).instructions.find((i) => (i.kind === 'jmp' || i.kind === 'call') && i.length === 5 && i.value === symbols.address('__x64_sys_kill'));
    t.ok(branch && rkKill !== 0n, `x64_sys_call branches to __x64_sys_kill at +0x${branch?.offset.toString(16)}`);
    if (!branch) return;
    const rel = Buffer.alloc(4);
    rel.writeInt32LE(Number(rkKill - (dispatch + BigInt(branch.offset + 5))));
    const address = dispatch + BigInt(branch.offset + 1);
    bent = { address, old: await poke(vm, address, rel) };
  });
  const refused = await vmictl('kill', 'tree');
  t.not(refused.code, 0, 'vmictl kill refuses');
  t.match(refused.stderr, /hooked on the path of injected syscalls .*x64_sys_call at 0x[0-9a-f]+ \(jmp to 0x[0-9a-f]+\).*--allow-hooked/, `with a clear error naming the function and address: ${refused.stderr.trim()}`);
  t.match((await guestRun(env, `test -d /proc/${victim} && echo alive`)).output, /alive/, 'nothing was done to the container');
  const allowed = await vmictl('exec', '--allow-hooked', 'tree', '--', '/bin/cat', '/tmp/denied.txt');
  t.equal(allowed.stdout, 'denied\n', `--allow-hooked: the operation goes on (${allowed.stderr.trim()})`);
  t.match(allowed.stderr, /left in place \(--allow-hooked\): x64_sys_call/, 'and says which hook stayed');
  await withVm(env, cache, async (vm) => {
    const r = await checkKernel(vm, {});
    t.ok(r.findings.some((f) => f.kind === 'inline-hook' && f.symbol.startsWith('x64_sys_call+')), 'check reports the bent dispatch branch');
  });
  // the dispatch branch put back by hand: kill behind the guard reaches the protected init
  if (bent) await withVm(env, cache, async (vm) => { await poke(vm, bent!.address, bent!.old); });
  const kill = await vmictl('kill', '--json', 'tree');
  t.equal(kill.code, 0, `vmictl kill tree: ${kill.stderr.trim()}`);
  const via = (JSON.parse(kill.stdout || '[]') as Array<{ outcome?: { via?: number } }>)[0]?.outcome?.via;
  t.match(kill.stderr, guarded, 'the guard restored the kill hooks for it');
  const gone = await guestRun(env, `sleep 1; test -d /proc/${victim} && echo alive || echo gone`);
  t.match(gone.output, /gone/, 'the protected process is gone, as on a clean kernel');
  const outside = await guestRun(env, `test -d /proc/${loop} && echo alive || { echo "pid ${loop} gone; kernel log:"; dmesg | tail -n 15; }`);
  t.match(outside.output, /alive/, `nothing outside the container was hit (the signals were sent from pid ${via}, the loop is ${loop})`, { guest: outside.output });
});
