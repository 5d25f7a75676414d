/**
 * Profiles from guest memory against the real test VM, with no file from the kernel's packages:
 * kallsyms decoded from RAM equal the debug vmlinux's symbol table and the guest's /proc/kallsyms;
 * the BTF-derived layout of every field vmictl reads equals the DWARF-derived one; ps/top/inspect
 * with that DWARF profile, and with no profile directory (the automatic profile), match the
 * ground truth. The DWARF profile is looked for in $VMICTL_TEST_DWARF_PROFILES (default
 * profiles/), the vmlinux at $VMICTL_DBG_VMLINUX.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
import { Vm } from '../../lib/vm';
import { Kernel } from '../../lib/kernel/kernel';
import { listContainers } from '../../lib/containers/list';
import { findKallsyms } from '../../lib/kernel/kallsyms/scan';
import { buildProfileFromMemory, linkTime } from '../../lib/kernel/profile/from-memory';
import { listProfiles, Profile, type FieldLayout } from '../../lib/kernel/profile';
import type { TypeRef } from '../../lib/kernel/profile/isf';
import { compareWithGroundTruth } from '../helpers/ground-truth-compare';
import { readGroundTruth, skipWithReason, testVm } from '../helpers/vm';

const VMLINUX = process.env.VMICTL_DBG_VMLINUX ?? resolve(__dirname, '../../test-vms/build/vmlinux');
/** Where DWARF profiles from -dbg packages are (make vm writes the 6.1 one to profiles/; make test-sid its own elsewhere). */
const PROFILES = process.env.VMICTL_TEST_DWARF_PROFILES ?? resolve(__dirname, '../../profiles');

/** A profile that notes every field, field test and type size asked of it. */
class RecordingProfile extends Profile {
  readonly asked = new Map<string, 'field' | 'has' | 'size' | 'enum'>();
  override field(struct: string, path: string): FieldLayout {
    this.asked.set(`${struct}\0${path}`, 'field');
    return super.field(struct, path);
  }
  override hasField(struct: string, path: string): boolean {
    if (!this.asked.has(`${struct}\0${path}`)) this.asked.set(`${struct}\0${path}`, 'has');
    return super.hasField(struct, path);
  }
  override firstField(struct: string, names: readonly string[]): FieldLayout {
    const f = super.firstField(struct, names);
    this.asked.set(`${struct}\0${f.name}`, 'field');
    return f;
  }
  override enumConstant(enumName: string | undefined, constant: string): bigint {
    this.asked.set(`${enumName ?? ''}\0${constant}`, 'enum');
    return super.enumConstant(enumName, constant);
  }
  override typeSize(name: string): number {
    this.asked.set(`${name}\0`, 'size');
    return super.typeSize(name);
  }
}

/**
 * Fields lib/ names outside the ps path (injection, operations, feature tests), from
 * `grep -rhoE "(fieldOffset|field|hasField|firstField)\('...', '...'\)" lib`.
 */
const NAMED_IN_LIB = [
  'file.f_path', 'fs_struct.root', 'mm_struct.pgd', 'mount.mnt', 'pcpu_hot.current_task', 'pid.numbers', 'signal_struct.thread_head',
  'task_struct.exit_state', 'task_struct.mm', 'task_struct.pid', 'task_struct.signal', 'task_struct.stack', 'task_struct.tasks',
  'task_struct.tgid', 'task_struct.thread_group', 'upid.nr', 'upid.ns', 'uts_namespace.name.nodename', 'nsproxy.time_ns',
  'task_struct.__state', 'task_struct.start_boottime', 'task_struct.thread_node',
];

/** A type descriptor with anonymous struct names left out (their hash covers whole nested layouts). */
function shape(ty: TypeRef): unknown {
  return JSON.parse(JSON.stringify(ty, (k, v) => (k === 'name' && typeof v === 'string' && v.startsWith('unnamed_') ? 'unnamed' : v)));
}

t.test('profiles from guest memory', async (t) => {
  const env = await testVm(t);
  if (!env) return;
  const gt = readGroundTruth(env.groundTruthFile);
  const dwarfFile = listProfiles([PROFILES]).find((c) => c.banner === gt.kernel.banner)?.path;

  await t.test('kallsyms decoded from RAM equal the symbol table and /proc/kallsyms', async (t) => {
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    const memory = await vm.memory();
    const ks = await findKallsyms(memory.backend, await vm.ram());
    t.ok(ks.entries.length > 50_000, `${ks.entries.length} symbols decoded`);
    for (const [name, addr] of Object.entries(gt.kernel.kallsyms)) {
      t.equal(ks.byName.get(name)?.address, BigInt(addr), `${name} at its /proc/kallsyms address`);
    }
    t.equal(ks.kaslr.banner, gt.kernel.banner, 'the kernel image is found with them');
    // the debug vmlinux (make vm) is the 6.1 test kernel's; another kernel of the matrix has none
    if (!existsSync(VMLINUX) || !realpathSync(VMLINUX).includes(gt.kernel.release)) {
      return t.comment(`no debug vmlinux of ${gt.kernel.release} at ${VMLINUX}: the symbol table comparison is left out`);
    }
    const nm = execFileSync('nm', [VMLINUX], { maxBuffer: 256 * 1024 * 1024, encoding: 'latin1' });
    const linked = new Set<string>();
    const textLine = /^([0-9a-f]{16}) T _text$/m.exec(nm);
    for (const line of nm.split('\n')) {
      const m = /^([0-9a-f]{16}) \S (\S+)$/.exec(line);
      if (m) linked.add(`${m[2]}@${BigInt('0x' + m[1])}`);
    }
    const missing = ks.entries.filter((e) => !linked.has(`${e.name}@${linkTime(ks, e.address)}`));
    t.same(missing.slice(0, 10).map((e) => `${e.type} ${e.name}`), [], 'every decoded symbol is in the vmlinux at its link-time address');
    t.ok(textLine, 'the vmlinux has _text');
    if (textLine) t.equal(ks.virtualSlide, BigInt(gt.kernel.kallsyms._text) - BigInt('0x' + textLine[1]), 'KASLR slide = runtime − link-time _text');
  });

  await t.test('the BTF layout of every field vmictl reads equals the DWARF one', async (t) => {
    if (!dwarfFile) {
      // DWARF profiles are made for the 6.1 test kernel only (make vm); the others run on BTF alone
      if (gt.kernel.release.startsWith('6.1.')) return t.fail(`no DWARF profile for ${gt.kernel.banner} in ${PROFILES} (make vm)`);
      return skipWithReason(t, `no DWARF profile of ${gt.kernel.release} to compare with`);
    }
    const dwarf = new RecordingProfile(Profile.load(dwarfFile).doc, dwarfFile);
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
    t.teardown(() => vm.close());
    const memory = await vm.memory();
    const built = await buildProfileFromMemory(memory.backend, await vm.ram());
    const btf = new Profile(built.doc, 'btf');
    // what vmictl asks: everything a ps/top/inspect does, recorded on the DWARF profile
    const kernel = await Kernel.open(memory, dwarf, { ram: await vm.ram() });
    await listContainers(kernel);
    t.ok(dwarf.asked.size > 30, `${dwarf.asked.size} fields and types asked by ps`);
    for (const f of NAMED_IN_LIB) {
      const dot = f.indexOf('.');
      const key = `${f.slice(0, dot)}\0${f.slice(dot + 1)}`;
      if (!dwarf.asked.has(key)) dwarf.asked.set(key, dwarf.hasField(f.slice(0, dot), f.slice(dot + 1)) ? 'field' : 'has');
    }
    for (const [key, how] of dwarf.asked) {
      const [struct, path] = key.split('\0');
      if (how === 'enum') {
        const e = struct === '' ? undefined : struct;
        t.equal(btf.hasEnumConstant(e, path) ? btf.enumConstant(e, path) : undefined, dwarf.hasEnumConstant(e, path) ? dwarf.enumConstant(e, path) : undefined, `enum constant ${path}`);
      } else if (how === 'size') {
        t.equal(btf.typeSize(struct), dwarf.typeSize(struct), `sizeof(${struct})`);
      } else if (how === 'has') {
        t.equal(btf.hasField(struct, path), dwarf.hasField(struct, path), `${struct}.${path} present in both or neither`);
      } else {
        const d = dwarf.field(struct, path);
        const b = btf.hasField(struct, path) ? btf.field(struct, path) : undefined;
        t.same(b && { offset: b.offset, size: b.size, type: shape(b.type) }, { offset: d.offset, size: d.size, type: shape(d.type) }, `${struct}.${path}`);
      }
    }
  });

  await t.test('ps/top/inspect with the DWARF profile of the -dbg package match the ground truth', async (t) => {
    if (!dwarfFile) {
      if (gt.kernel.release.startsWith('6.1.')) return t.fail(`no DWARF profile for ${gt.kernel.banner} in ${PROFILES} (make vm)`);
      return skipWithReason(t, `no DWARF profile of ${gt.kernel.release} in ${PROFILES}`);
    }
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb, profileDirs: [PROFILES] });
    try {
      const list = await vm.listContainers();
      const k = await vm.kernel();
      t.equal(k.profile.source, dwarfFile, `the DWARF profile is used: ${dwarfFile}`);
      t.same(list.warnings, [], 'no warnings');
      compareWithGroundTruth(t, gt, list);
    } finally {
      await vm.close();
    }
  });

  await t.test('ps/top/inspect with no profile and no System.map match the ground truth', async (t) => {
    const empty = mkdtempSync(join(tmpdir(), 'vmictl-noprofiles-'));
    const cache = mkdtempSync(join(tmpdir(), 'vmictl-cache-'));
    t.teardown(() => { rmSync(empty, { recursive: true, force: true }); rmSync(cache, { recursive: true, force: true }); });
    const notices: string[] = [];
    const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb, profileDirs: [empty], profileCache: cache, onNotice: (m) => notices.push(m) });
    let kernelSlide: bigint;
    try {
      const list = await vm.listContainers();
      const k = await vm.kernel();
      kernelSlide = k.kaslr.virtualSlide;
      t.equal(k.symbol('init_task'), BigInt(gt.kernel.kallsyms.init_task), 'init_task where /proc/kallsyms says');
      t.equal(k.kaslr.banner, gt.kernel.banner, 'banner');
      t.same(list.warnings, [], 'no warnings');
      compareWithGroundTruth(t, gt, list);
    } finally {
      await vm.close();
    }
    t.equal(notices.filter((n) => n.includes('built one from guest memory')).length, 1, `one notice: ${notices.join(' | ')}`);
    const cached = readdirSync(cache).filter((f) => f.endsWith('.json'));
    t.equal(cached.length, 1, 'the profile is cached');
    // the next run finds the cached profile and builds nothing
    const again: string[] = [];
    const vm2 = await Vm.connect({ qmp: env.qmp, gdb: env.gdb, profileDirs: [empty], profileCache: cache, onNotice: (m) => again.push(m) });
    try {
      const k = await vm2.kernel();
      t.equal(k.profile.source, join(cache, cached[0]), 'the cached profile is used');
      t.equal(k.kaslr.virtualSlide, kernelSlide, 'same slide');
    } finally {
      await vm2.close();
    }
    t.same(again.filter((n) => n.includes('built one')), [], 'no second build');
  });
});
