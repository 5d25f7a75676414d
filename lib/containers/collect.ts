/**
 * Reads every task from guest kernel memory into TaskInfo records. The work is done in stages, each
 * fetching all it needs in one batch: the task list (each task_struct's used part comes with the
 * step that finds it), then every object the tasks point to (pids, creds, nsproxies, css_sets,
 * mm_structs, fs_structs), then what those point to (namespaces, cgroups, files, kernfs nodes).
 * Only then is each task decoded (task-reader.ts), almost entirely from the page cache without I/O.
 * A task whose pointers are corrupt keeps what could be read and carries warnings; a corrupt task
 * list stops the walk with a warning and the valid part.
 */
import type { CallOptions } from '../util/deadline';
import { isFatalReadError, ValidationError } from '../errors';
import type { Kernel } from '../kernel/kernel';
import type { KObject } from '../kernel/object';
import { forEachProcess, forEachThreadOf, processesCached, threadsOfCached } from '../kernel/helpers/task';
import { objectAt, readStructs } from '../kernel/helpers/batch';
import { pidNamespaceEntries, pidTasksCached } from '../kernel/helpers/pid';
import { prefetchCgroupPaths } from '../kernel/helpers/cgroup';
import type { ProcessInfo, TaskInfo } from './model';
import { TaskReader } from './task-reader';
import { readU64LE } from '../util/bytes';

export interface CollectOptions extends CallOptions {
  /** Most tasks to walk (a corrupt list can be endless). */
  maxTasks?: number;
  /** Longest command line read, in bytes; longer ones are cut with a warning. */
  maxCmdline?: number;
  /** Skip reading command lines, executables and roots (cheaper). */
  brief?: boolean;
}

export interface CollectResult {
  processes: ProcessInfo[];
  warnings: string[];
}

type Range = { address: bigint; length: number };

export async function collectTasks(kernel: Kernel, opts: CollectOptions = {}): Promise<CollectResult> {
  const warnings: string[] = [];
  const maxTasks = opts.maxTasks ?? 100_000;
  const spans = taskSpans(kernel);
  const prefix = spans[spans.length - 1][1];
  const p = kernel.profile;

  await warmTaskList(kernel, spans, maxTasks, warnings, opts);

  // stage 0: the task list (leaders) and each leader's threads; each step fetches the used part of
  // the task_struct it lands on (unless the warming above did), so stage 1 finds every task in the cache
  const groups: Array<{ leader: bigint; threads: bigint[] }> = [];
  let count = 0;
  let truncated = false;
  const onCorruption = (e: ValidationError) => warnings.push(`task list: ${e.message}; showing the part before it`);
  // walks go one past maxTasks: the list is only known to be longer once the next task is seen
  const walkMax = maxTasks + 1;
  // from the cache without a promise per task when the lists are there and sound (the IDR warmed
  // them); otherwise, or at the first doubt, the careful walk, which reads and reports
  const leaders = processesCached(kernel, walkMax) ?? forEachProcess(kernel, { ...opts, max: walkMax, onCorruption, fetchAround: { before: p.fieldOffset('task_struct', 'tasks'), length: prefix, entries: maxTasks } });
  const threadOpts = { ...opts, max: walkMax, fetchAround: { before: threadLinkOffset(kernel), length: prefix, entries: maxTasks } };
  /** Takes one task; false once there are more than maxTasks. */
  const take = (threads: bigint[], t: bigint): boolean => {
    if (count >= maxTasks) { truncated = true; return false; }
    threads.push(t);
    count++;
    return true;
  };
  const group = async (leader: bigint): Promise<boolean> => {
    // one more task than allowed exists: only now is the list known to be longer than maxTasks
    if (count >= maxTasks) { truncated = true; return false; }
    const threads: bigint[] = [];
    const cached = threadsOfCached(kernel, leader, walkMax);
    if (cached) {
      for (const t of cached) if (!take(threads, t)) break;
    } else {
      for await (const t of forEachThreadOf(kernel, leader, { ...threadOpts, onCorruption: (e) => warnings.push(`threads of 0x${leader.toString(16)}: ${e.message}`) })) {
        if (!take(threads, t)) break;
      }
    }
    if (!threads.includes(leader)) threads.unshift(leader);
    groups.push({ leader, threads });
    return !truncated;
  };
  if (Array.isArray(leaders)) {
    for (const leader of leaders) if (!(await group(leader))) break;
  } else {
    for await (const leader of leaders) if (!(await group(leader))) break;
  }
  if (truncated) warnings.push(`more than ${maxTasks} tasks: stopped there (raise --max-tasks)`);

  // stage 1: every task_struct, once, up to the last field used
  const all = groups.flatMap((g) => g.threads);
  const structs = await readStructs(kernel, 'task_struct', all, { ...opts, size: prefix, spans });
  const tasks = new Map<bigint, KObject>();
  const taskWarnings = new Map<bigint, string[]>();
  for (const addr of all) {
    const w: string[] = [];
    const hit = structs.get(addr);
    // (the name is made only for a task that needs a warning)
    const t = hit !== undefined && !(hit instanceof Error) ? hit : objectAt(structs, addr, `task 0x${addr.toString(16)}`, w);
    if (t) tasks.set(addr, t);
    else warnings.push(...w);
    taskWarnings.set(addr, w);
  }

  // stages 2 and 3: what the tasks point to, then what that points to, each as one batch
  await prefetchPointees(kernel, [...tasks.values()], tasks, opts);

  const reader = new TaskReader(kernel, opts, tasks);
  await reader.prepare();
  const infos = new Map<bigint, TaskInfo>();
  const pending: Promise<void>[] = [];
  for (const t of tasks.values()) {
    const info = reader.taskInfo(t, taskWarnings.get(t.address)!);
    if (info instanceof Promise) pending.push(info.then((i) => void infos.set(t.address, i)));
    else infos.set(t.address, info);
  }
  await Promise.all(pending);

  const processes: ProcessInfo[] = [];
  for (const g of groups) {
    const leader = infos.get(g.leader);
    if (!leader) continue;
    const threads = g.threads.map((a) => infos.get(a)).filter((x): x is TaskInfo => x !== undefined);
    processes.push({ ...leader, threads });
  }
  processes.sort((a, b) => a.pid - b.pid);
  return { processes, warnings };
}

/**
 * The task list can only be walked one task per round trip; the pid IDR of init_pid_ns names the
 * same tasks a tree level per round trip. So every task_struct (and its signal_struct, which the
 * thread walk reads) is fetched from there first, and the walk that follows — still the source of
 * truth, with its checks — runs from the cache. Best effort: a corrupt IDR only costs round trips.
 * A guest with more pids than maxTasks is not warmed (its walk stops early; reading all of it would not).
 * Damage seen in the IDR is reported: the listing is still whole, but the kernel's pid table is not.
 */
async function warmTaskList(kernel: Kernel, spans: TaskSpans, maxTasks: number, warnings: string[], opts: CallOptions): Promise<void> {
  const p = kernel.profile;
  if (!kernel.hasSymbol('init_pid_ns') || !p.hasField('task_struct', 'pid_links') || !p.hasField('pid', 'tasks')) return;
  try {
    const onCorruption = (m: string) => warnings.push(`pid IDR of init_pid_ns: ${m}; listed from the task list alone`);
    const pids = await pidNamespaceEntries(kernel, kernel.symbol('init_pid_ns'), { ...opts, onCorruption });
    if (pids.length === 0 || pids.length > maxTasks) return;
    const pidLen = p.fieldOffset('pid', 'numbers') + p.typeSize('upid') * 4;
    await kernel.prefetch(pids.map((address) => ({ address, length: pidLen })), opts);
    // init_task too: it heads the task list, and has no pid in the IDR
    const tasks = [kernel.symbol('init_task'), ...pidTasksCached(kernel, pids)];
    await kernel.prefetch(tasks.flatMap((t) => spans.map(([start, end]) => ({ address: t + BigInt(start), length: end - start }))), opts);
    if (!p.hasField('signal_struct', 'thread_head')) return;
    const signalOff = BigInt(p.fieldOffset('task_struct', 'signal'));
    const headOff = BigInt(p.fieldOffset('signal_struct', 'thread_head'));
    const heads: Range[] = [];
    for (const t of tasks) {
      const b = kernel.space.peek(t + signalOff, 8);
      if (b) heads.push({ address: readU64LE(b, 0) + headOff, length: 16 });
    }
    await kernel.prefetch(distinct(heads), opts);
  } catch (err) {
    if (isFatalReadError(err)) throw err;
    warnings.push(`pid IDR of init_pid_ns: ${(err as Error).message}; listed from the task list alone`);
  }
}

/** Offset of the list_head that links a thread group (thread_node, or thread_group before 4.x). */
function threadLinkOffset(kernel: Kernel): number {
  const p = kernel.profile;
  return p.hasField('signal_struct', 'thread_head') && p.hasField('task_struct', 'thread_node')
    ? p.fieldOffset('task_struct', 'thread_node')
    : p.fieldOffset('task_struct', 'thread_group');
}

type TaskSpans = Array<[number, number]>;

/** A gap between fields used wider than this is not fetched (one more piece costs about as much). */
const SPAN_GAP = 512;

/**
 * The parts of task_struct that hold every field read, as [start, end) offsets: a task_struct is
 * ~10 KiB, and the fields used sit in two clusters of its first 4 KiB (the state and flags at the
 * start; the links, ids, pointers and comm past 2 KiB), so only those are fetched.
 */
function taskSpans(kernel: Kernel): TaskSpans {
  const p = kernel.profile;
  const names = ['pid', 'tgid', 'comm', 'flags', 'mm', 'real_parent', 'thread_pid', 'real_cred', 'nsproxy', 'cgroups', 'fs', 'exit_state', 'tasks', 'signal',
    p.hasField('task_struct', '__state') ? '__state' : 'state', p.hasField('task_struct', 'start_boottime') ? 'start_boottime' : 'start_time'];
  if (p.hasField('task_struct', 'thread_node')) names.push('thread_node');
  if (p.hasField('task_struct', 'thread_group')) names.push('thread_group');
  const fields = names.map((n) => p.field('task_struct', n)).map((f) => [f.offset, f.offset + f.size] as [number, number]);
  fields.sort((a, b) => a[0] - b[0]);
  const spans: TaskSpans = [];
  for (const [start, end] of fields) {
    const last = spans[spans.length - 1];
    if (last && start <= last[1] + SPAN_GAP) last[1] = Math.max(last[1], end);
    else spans.push([start, end]);
  }
  return spans;
}

/**
 * Brings into the page cache, one batch per level, the objects every task's decoding will read.
 * Nothing is decoded or reported here: a bad pointer is skipped, and the task reader finds it.
 */
async function prefetchPointees(kernel: Kernel, tasks: KObject[], known: ReadonlyMap<bigint, KObject>, opts: CollectOptions): Promise<void> {
  const p = kernel.profile;
  const size = (type: string, upTo?: string) => {
    if (!upTo) return p.typeSize(type);
    const f = p.field(type, upTo);
    return f.offset + f.size;
  };
  const upid = p.typeSize('upid');
  const pidLen = p.fieldOffset('pid', 'numbers') + upid * 4;
  const mmLen = Math.max(size('mm_struct', 'arg_end'), size('mm_struct', 'exe_file'), size('mm_struct', 'pgd'));
  // with v1 hierarchies, up to the head of the list of their links too
  const csetLen = Math.max(size('css_set', 'dfl_cgrp'), p.hasField('css_set', 'cgrp_links') ? size('css_set', 'cgrp_links') : 0);
  const fsRoot = p.hasField('fs_struct', 'root') ? p.fieldOffset('fs_struct', 'root') : undefined;
  const tgidOff = p.fieldOffset('task_struct', 'tgid');

  // each pointer decoded once (three passes below)
  const refs = tasks.map((t) => ({
    pid: t.ptr('thread_pid'), cred: t.ptr('real_cred'), nsproxy: t.ptr('nsproxy'), cset: t.ptr('cgroups'),
    fs: fsRoot !== undefined ? t.ptr('fs') : 0n, parent: t.ptr('real_parent'), mm: t.ptr('mm'),
  }));
  const credLen = p.typeSize('cred');
  const nsproxyLen = p.typeSize('nsproxy');

  // level 1: the objects the task_structs point to
  const level1: Range[] = [];
  for (const t of refs) {
    level1.push({ address: t.pid, length: pidLen });
    level1.push({ address: t.cred, length: credLen });
    level1.push({ address: t.nsproxy, length: nsproxyLen });
    level1.push({ address: t.cset, length: csetLen });
    if (fsRoot !== undefined) level1.push({ address: t.fs + BigInt(fsRoot), length: 16 });
    if (!known.has(t.parent)) level1.push({ address: t.parent + BigInt(tgidOff), length: 4 });
    if (!opts.brief && t.mm !== 0n) level1.push({ address: t.mm, length: mmLen });
  }
  await kernel.prefetch(distinct(level1), opts);

  // level 2: namespaces, cgroups, executables' files, page-table roots
  const level2: Range[] = [];
  const inum = (type: string, ns: bigint) => level2.push({ address: ns + BigInt(p.fieldOffset(type, 'ns.inum')), length: 4 });
  const nsFields: Array<[string, string]> = [['uts_ns', 'uts_namespace'], ['ipc_ns', 'ipc_namespace'], ['mnt_ns', 'mnt_namespace'], ['net_ns', 'net'], ['cgroup_ns', 'cgroup_namespace']];
  if (p.hasField('nsproxy', 'time_ns')) nsFields.push(['time_ns', 'time_namespace']);
  const seen = new Set<bigint>();
  const once = (a: bigint) => !seen.has(a) && seen.add(a) !== undefined;
  // numbers[i].ns, without a path string per task
  const upidNs = p.fieldOffset('pid', 'numbers') + p.fieldOffset('upid', 'ns');
  for (const t of refs) {
    const pid = t.pid;
    const head = once(pid) ? kernel.peek('pid', pid, { size: pidLen }) : undefined;
    if (head) {
      const level = Math.min(head.u32('level'), 3);
      for (let i = 0; i <= level; i++) inum('pid_namespace', readU64LE(head.bytes, upidNs + i * upid));
    }
    const cred = t.cred;
    const c = once(cred) ? kernel.peek('cred', cred) : undefined;
    if (c) inum('user_namespace', c.ptr('user_ns'));
    const nsproxy = t.nsproxy;
    const ns = once(nsproxy) ? kernel.peek('nsproxy', nsproxy) : undefined;
    if (ns) {
      for (const [field, type] of nsFields) inum(type, ns.ptr(field));
      level2.push({ address: ns.ptr('uts_ns') + BigInt(p.fieldOffset('uts_namespace', 'name.nodename')), length: 65 });
    }
    const cset = t.cset;
    const cs = once(cset) ? kernel.peek('css_set', cset, { size: csetLen }) : undefined;
    if (cs) level2.push({ address: cs.ptr('dfl_cgrp'), length: size('cgroup', p.fieldOffset('cgroup', 'kn') > p.fieldOffset('cgroup', 'flags') ? 'kn' : 'flags') });
    const mmAt = t.mm;
    const mm = !opts.brief && mmAt !== 0n && once(mmAt) ? kernel.peek('mm_struct', mmAt, { size: mmLen }) : undefined;
    if (mm) {
      const file = mm.ptr('exe_file');
      if (file !== 0n) level2.push({ address: file + BigInt(p.fieldOffset('file', 'f_path')), length: 16 });
      level2.push({ address: mm.ptr('pgd'), length: 4096 });
    }
  }
  await kernel.prefetch(distinct(level2), opts);

  // level 3 on: the cgroups' kernfs nodes and names up to the root, and the v1 hierarchies'
  // links, cgroups and nodes (each a list or a chain: one batch per step along all of them)
  const csets = new Set<bigint>();
  const cgroups = new Set<bigint>();
  for (const t of refs) {
    const cset = t.cset;
    if (csets.has(cset)) continue;
    csets.add(cset);
    const cs = kernel.isKernelPointer(cset) ? kernel.peek('css_set', cset, { size: csetLen }) : undefined;
    if (cs) cgroups.add(cs.ptr('dfl_cgrp'));
  }
  await prefetchCgroupPaths(kernel, csets, cgroups, opts);
}

/** Each address once (with the longest length asked for it), dropping those no kernel object can be at. */
function distinct(ranges: Range[]): Range[] {
  // keyed by the bigint itself: a string key per range cost more than the rest of the stage
  const longest = new Map<bigint, number>();
  for (const r of ranges) {
    if (r.address === 0n) continue;
    const had = longest.get(r.address);
    if (had === undefined || had < r.length) longest.set(r.address, r.length);
  }
  const out: Range[] = [];
  longest.forEach((length, address) => void out.push({ address, length }));
  return out;
}
