/**
 * Hidden processes and modules: objects the kernel still holds in one of its indexes but that
 * were taken off the list everyone walks (ps reads the task list, lsmod the module list).
 *   a process: its task is reachable from init_pid_ns's IDR (pid → pid->tasks[PIDTYPE_PID]) or
 *     from a CPU's run queue (rq->curr, and the CFS timeline with its group queues) but its
 *     thread-group leader is not on init_task.tasks;
 *   a module: in mod_tree (the latch tree of module memory the kernel uses for addresses) or in
 *     /sys/module (module_kset's kobjects), with valid self-references, but not on `modules`.
 */
import type { CallOptions } from '../util/deadline';
import type { Kernel } from '../kernel/kernel';
import { forEachProcess } from '../kernel/helpers/task';
import { perCpuAddress, perCpuSlot } from '../kernel/helpers/percpu';
import { listForEachEntry } from '../kernel/helpers/list';
import { forEachModule } from '../kernel/helpers/module';
import { rbTreeNodes, xarrayEntries } from './xarray';
import type { Finding } from './finding';

const PF_EXITING = 0x4;
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
  const found = new Map<bigint, string>();
  for (const pid of pids) {
    const first = await kernel.readU64(pid + tasksOff, opts).catch(() => 0n);
    if (!kernel.isKernelPointer(first)) continue; // a pid with no task of that type (a process group id...)
    found.set(first - linkOff, 'init_pid_ns.idr');
  }
  for (const task of await runqueueTasks(kernel, opts).catch(() => [])) if (!found.has(task)) found.set(task, 'a run queue');
  for (const [task, where] of found) {
    const leader = await kernel.readU64(task + leaderOff, opts).catch(() => 0n);
    if (!kernel.isKernelPointer(leader) || listed.has(leader) || reported.has(leader)) continue;
    // an exiting task leaves the list and the IDR (__unhash_process) while it still runs to its end
    const self = await kernel.read('task_struct', task, { ...opts, upTo: 'comm' }).catch(() => null);
    if (!self || (self.u32('flags') & PF_EXITING) !== 0 || self.i32('exit_state') !== 0) continue;
    reported.add(leader);
    const t = await kernel.read('task_struct', leader, { ...opts, upTo: 'comm' });
    out.push({
      kind: 'hidden-process',
      address: leader,
      symbol: `pid ${t.i32('pid')} (${t.chars('comm')})`,
      expected: 'on the init_task.tasks list',
      found: `task_struct at ${hex(leader)} reachable from ${where} only`,
    });
  }
  return out;
}

/**
 * Tasks on the CPUs' run queues: each rq's current task and the tasks of the CFS timeline,
 * descending into group run queues (sched_entity.my_q), bounded.
 */
async function runqueueTasks(kernel: Kernel, opts: CallOptions): Promise<bigint[]> {
  const p = kernel.profile;
  if (!p.hasSymbol('runqueues') || !p.hasSymbol('__per_cpu_offset') || !p.hasSymbol('nr_cpu_ids')) return [];
  const rqSlot = perCpuSlot(kernel, 'runqueues');
  const cpus = Math.min(8192, (await kernel.space.read(kernel.symbol('nr_cpu_ids'), 4, opts)).readUInt32LE(0));
  const offsets = await kernel.space.read(kernel.symbol('__per_cpu_offset'), cpus * 8, opts);
  const seOff = BigInt(p.fieldOffset('task_struct', 'se'));
  const runNode = BigInt(p.fieldOffset('sched_entity', 'run_node'));
  const myQ = BigInt(p.fieldOffset('sched_entity', 'my_q'));
  const timeline = BigInt(p.fieldOffset('cfs_rq', 'tasks_timeline') + p.fieldOffset('rb_root_cached', 'rb_root'));
  const out: bigint[] = [];
  for (let cpu = 0; cpu < cpus; cpu++) {
    const rq = perCpuAddress(rqSlot, offsets.readBigUInt64LE(cpu * 8));
    if (!kernel.isKernelPointer(rq)) continue;
    const [curr, idle] = await Promise.all([kernel.readU64(rq + BigInt(p.fieldOffset('rq', 'curr')), opts), kernel.readU64(rq + BigInt(p.fieldOffset('rq', 'idle')), opts)]);
    if (kernel.isKernelPointer(curr) && curr !== idle) out.push(curr);
    const queues = [rq + BigInt(p.fieldOffset('rq', 'cfs'))];
    const seen = new Set<bigint>();
    while (queues.length > 0 && seen.size < 4096) {
      const q = queues.pop()!;
      if (seen.has(q)) continue;
      seen.add(q);
      const root = await kernel.readU64(q + timeline, opts).catch(() => 0n);
      for (const n of await rbTreeNodes(kernel, root, { ...opts, max: 10_000 })) {
        const se = n - runNode;
        const group = await kernel.readU64(se + myQ, opts).catch(() => 0n);
        if (group !== 0n) {
          if (kernel.isKernelPointer(group)) queues.push(group);
        } else out.push(se - seOff);
      }
    }
  }
  return out;
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
  const listed = new Set(await forEachModule(kernel, opts));
  const candidates = new Map<bigint, string>();
  // mod_tree.root.tree[0]: rb_nodes embedded as mod_tree_node.node.node[0] in module_layout.mtn
  // (6.4+: one per module_memory region, module.mem[type].mtn; the node still names its module)
  if (kernel.hasSymbol('mod_tree') && (p.hasField('module', 'core_layout') || p.hasField('module', 'mem'))) {
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
