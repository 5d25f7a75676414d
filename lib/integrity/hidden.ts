/**
 * Hidden processes and modules: objects the kernel still holds in one of its indexes but that
 * were taken off the list everyone walks (ps reads the task list, lsmod the module list).
 *   a process: its task is reachable from init_pid_ns's IDR (pid → pid->tasks[PIDTYPE_PID]) but
 *     its thread-group leader is not on init_task.tasks;
 *   a module: in mod_tree (the latch tree of module memory the kernel uses for addresses) or in
 *     /sys/module (module_kset's kobjects), with valid self-references, but not on `modules`.
 */
import type { CallOptions } from '../util/deadline';
import type { Kernel } from '../kernel/kernel';
import { forEachProcess } from '../kernel/helpers/task';
import { listForEachEntry } from '../kernel/helpers/list';
import { rbTreeNodes, xarrayEntries } from './xarray';
import type { Finding } from './finding';

const hex = (v: bigint) => `0x${v.toString(16)}`;

export async function hiddenProcesses(kernel: Kernel, opts: CallOptions = {}): Promise<Finding[]> {
  const p = kernel.profile;
  const listed = new Set<bigint>([kernel.symbol('init_task')]);
  for await (const t of forEachProcess(kernel, { ...opts, onCorruption: () => undefined })) listed.add(t);
  const idr = kernel.symbol('init_pid_ns') + BigInt(p.fieldOffset('pid_namespace', 'idr') + p.fieldOffset('idr', 'idr_rt'));
  const pids = await xarrayEntries(kernel, idr, opts);
  const tasksOff = BigInt(p.fieldOffset('pid', 'tasks'));
  const linkOff = BigInt(p.fieldOffset('task_struct', 'pid_links'));
  const leaderOff = BigInt(p.fieldOffset('task_struct', 'group_leader'));
  const out: Finding[] = [];
  const reported = new Set<bigint>();
  for (const pid of pids) {
    const first = await kernel.readU64(pid + tasksOff, opts).catch(() => 0n);
    if (!kernel.isKernelPointer(first)) continue; // a pid with no task of that type (a process group id...)
    const task = first - linkOff;
    const leader = await kernel.readU64(task + leaderOff, opts).catch(() => 0n);
    if (!kernel.isKernelPointer(leader) || listed.has(leader) || reported.has(leader)) continue;
    reported.add(leader);
    const t = await kernel.read('task_struct', leader, { ...opts, upTo: 'comm' });
    out.push({
      kind: 'hidden-process',
      address: leader,
      symbol: `pid ${t.i32('pid')} (${t.chars('comm')})`,
      expected: 'on the init_task.tasks list',
      found: `task_struct at ${hex(leader)} reachable from init_pid_ns.idr only`,
    });
  }
  return out;
}

async function listedModules(kernel: Kernel, opts: CallOptions): Promise<Set<bigint>> {
  const set = new Set<bigint>();
  for await (const m of listForEachEntry(kernel, kernel.symbol('modules'), 'module', 'list', { ...opts, max: 10_000, onCorruption: () => undefined })) set.add(m);
  return set;
}

/** Whether `mod` looks like a struct module: its kobject points back at it and its name is text. */
async function isModule(kernel: Kernel, mod: bigint, opts: CallOptions): Promise<string | null> {
  const p = kernel.profile;
  const back = await kernel.readU64(mod + BigInt(p.fieldOffset('module', 'mkobj') + p.fieldOffset('module_kobject', 'mod')), opts).catch(() => 0n);
  if (back !== mod) return null;
  const name = (await kernel.read('module', mod, { ...opts, upTo: 'name' }).catch(() => null))?.chars('name');
  return name && /^[\x21-\x7e]+$/.test(name) ? name : null;
}

export async function hiddenModules(kernel: Kernel, opts: CallOptions = {}): Promise<Finding[]> {
  const p = kernel.profile;
  const listed = await listedModules(kernel, opts);
  const candidates = new Map<bigint, string>();
  // mod_tree.root.tree[0]: rb_nodes embedded as mod_tree_node.node.node[0] in module_layout.mtn
  if (kernel.hasSymbol('mod_tree') && p.hasField('module', 'core_layout')) {
    const root = await kernel.readU64(kernel.symbol('mod_tree') + BigInt(p.fieldOffset('mod_tree_root', 'root') + p.fieldOffset('latch_tree_root', 'tree')), opts);
    const nodeOff = BigInt(p.fieldOffset('mod_tree_node', 'node'));
    for (const n of await rbTreeNodes(kernel, root, opts)) {
      const mod = await kernel.readU64(n - nodeOff + BigInt(p.fieldOffset('mod_tree_node', 'mod')), opts).catch(() => 0n);
      if (kernel.isKernelPointer(mod)) candidates.set(mod, 'mod_tree');
    }
  }
  // /sys/module: module_kset->list of kobjects; loaded modules' module_kobject.mod points back
  if (kernel.hasSymbol('module_kset')) {
    const kset = await kernel.readU64(kernel.symbol('module_kset'), opts);
    if (kernel.isKernelPointer(kset)) {
      const head = kset + BigInt(p.fieldOffset('kset', 'list'));
      for await (const kobj of listForEachEntry(kernel, head, 'kobject', 'entry', { ...opts, max: 10_000, onCorruption: () => undefined })) {
        const mod = await kernel.readU64(kobj + BigInt(p.fieldOffset('module_kobject', 'mod')), opts).catch(() => 0n);
        if (kernel.isKernelPointer(mod) && !candidates.has(mod)) candidates.set(mod, '/sys/module');
      }
    }
  }
  const out: Finding[] = [];
  for (const [mod, where] of candidates) {
    if (listed.has(mod)) continue;
    const name = await isModule(kernel, mod, opts);
    if (!name) continue;
    out.push({ kind: 'hidden-module', address: mod, symbol: name, expected: 'on the modules list', found: `struct module at ${hex(mod)} found through ${where} only` });
  }
  return out;
}
