/**
 * Reads every task from guest kernel memory into TaskInfo records: the task list, then, stage by
 * stage, the objects the tasks point to (pids, namespaces, creds, cgroups, mm), each distinct object
 * once. A task whose pointers are corrupt keeps what could be read and carries warnings; a corrupt
 * task list stops the walk with a warning and the valid part.
 */
import type { CallOptions } from '../util/deadline';
import { isFatalReadError, ValidationError } from '../errors';
import type { Kernel } from '../kernel/kernel';
import type { KObject } from '../kernel/object';
import { forEachProcess, forEachThreadOf } from '../kernel/helpers/task';
import { objectAt, readStructs } from '../kernel/helpers/batch';
import { taskStateLetter } from '../kernel/helpers/state';
import { kernfsPath } from '../kernel/helpers/kernfs';
import { dPath, type KPath } from '../kernel/helpers/dcache';
import { readCmdline } from '../kernel/helpers/mm';
import { NAMESPACE_KINDS, type Namespaces, type ProcessInfo, type TaskInfo } from './model';

export interface CollectOptions extends CallOptions {
  /** Most tasks to walk (a corrupt list can be endless). */
  maxTasks?: number;
  /** Longest command line read, in bytes; longer ones are cut with a warning. */
  maxCmdline?: number;
  /** Skip reading command lines and executables (cheaper). */
  brief?: boolean;
}

export interface CollectResult {
  processes: ProcessInfo[];
  warnings: string[];
}

const PF_KTHREAD = 0x00200000n;

/** Runs `f`; a guest-data error becomes a warning and `fallback`. */
async function guarded<T>(warnings: string[], what: string, fallback: T, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (isFatalReadError(err)) throw err;
    warnings.push(`${what}: ${(err as Error).message}`);
    return fallback;
  }
}

export async function collectTasks(kernel: Kernel, opts: CollectOptions = {}): Promise<CollectResult> {
  const warnings: string[] = [];
  const maxTasks = opts.maxTasks ?? 100_000;
  const onCorruption = (e: ValidationError) => warnings.push(`task list: ${e.message}; showing the part before it`);

  // stage 0: the task list (leaders) and each leader's threads
  const groups: Array<{ leader: bigint; threads: bigint[] }> = [];
  let count = 0;
  for await (const leader of forEachProcess(kernel, { ...opts, max: maxTasks, onCorruption })) {
    const threads: bigint[] = [];
    for await (const t of forEachThreadOf(kernel, leader, { ...opts, max: maxTasks, onCorruption: (e) => warnings.push(`threads of 0x${leader.toString(16)}: ${e.message}`) })) {
      threads.push(t);
      if (++count >= maxTasks) break;
    }
    if (!threads.includes(leader)) threads.unshift(leader);
    groups.push({ leader, threads });
    if (count >= maxTasks) {
      warnings.push(`more than ${maxTasks} tasks: stopped there (raise --max-tasks)`);
      break;
    }
  }

  // stage 1: every task_struct, once, up to the last field used (a task_struct is ~10 KiB, the
  // fields ps needs sit in its first part)
  const all = groups.flatMap((g) => g.threads);
  const tasks = await readStructs(kernel, 'task_struct', all, { ...opts, upTo: lastTaskField(kernel) });
  const infos = new Map<bigint, TaskInfo>();
  const ctx = new Context(kernel, opts);
  await Promise.all(all.map(async (addr) => {
    const w: string[] = [];
    const t = objectAt(tasks, addr, `task 0x${addr.toString(16)}`, w);
    if (!t) { warnings.push(...w); return; }
    infos.set(addr, await ctx.taskInfo(t, w));
  }));

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

/** The task_struct field that ends last among those taskInfo() reads. */
function lastTaskField(kernel: Kernel): string {
  const p = kernel.profile;
  const names = ['pid', 'tgid', 'comm', 'flags', 'mm', 'real_parent', 'thread_pid', 'real_cred', 'nsproxy', 'cgroups', 'fs', 'exit_state',
    p.hasField('task_struct', '__state') ? '__state' : 'state', p.hasField('task_struct', 'start_boottime') ? 'start_boottime' : 'start_time'];
  let best = names[0];
  let end = 0;
  for (const n of names) {
    const f = p.field('task_struct', n);
    if (f.offset + f.size > end) { end = f.offset + f.size; best = n; }
  }
  return best;
}

/** Per-collection caches of shared objects (namespaces, creds, cgroups), keyed by address. */
class Context {
  readonly #inum = new Map<string, Promise<number>>();
  readonly #strings = new Map<string, Promise<string>>();
  constructor(readonly kernel: Kernel, readonly opts: CollectOptions) {}

  #cached<T>(map: Map<string, Promise<T>>, key: string, f: () => Promise<T>): Promise<T> {
    let p = map.get(key);
    if (!p) map.set(key, (p = f()));
    return p;
  }

  /** `ns->ns.inum` of a namespace object of `type` (uts_namespace, net, ...). */
  inum(type: string, address: bigint): Promise<number> {
    return this.#cached(this.#inum, `${type}@${address}`, async () => {
      if (!this.kernel.isKernelPointer(address)) return 0;
      const off = this.kernel.profile.fieldOffset(type, 'ns.inum');
      return (await this.kernel.space.read(address + BigInt(off), 4, this.opts)).readUInt32LE(0);
    });
  }

  async taskInfo(t: KObject, warnings: string[]): Promise<TaskInfo> {
    const k = this.kernel;
    const p = k.profile;
    const flags = t.uint('flags');
    const mm = t.ptr('mm');
    const kernelThread = (flags & PF_KTHREAD) !== 0n || mm === 0n;
    const info: TaskInfo = {
      address: t.address,
      pid: t.i32('pid'),
      tgid: t.i32('tgid'),
      ppid: 0,
      comm: t.chars('comm'),
      cmdline: null,
      uid: 0, euid: 0, gid: 0, egid: 0,
      state: taskStateLetter(t),
      startTime: p.hasField('task_struct', 'start_boottime') ? t.u64('start_boottime') : t.u64('start_time'),
      nspids: [],
      pidNamespaces: [],
      namespaces: Object.fromEntries(NAMESPACE_KINDS.map((n) => [n, 0])) as Namespaces,
      cgroup: '',
      exe: null,
      hostname: '',
      kernelThread,
      warnings,
    };
    await Promise.all([
      guarded(warnings, 'parent', undefined, async () => {
        const parent = t.ptr('real_parent');
        if (parent !== t.address && k.isKernelPointer(parent)) {
          info.ppid = (await k.space.read(parent + BigInt(p.fieldOffset('task_struct', 'tgid')), 4, this.opts)).readInt32LE(0);
        }
      }),
      guarded(warnings, 'pid', undefined, () => this.#pids(t, info)),
      guarded(warnings, 'credentials', undefined, () => this.#creds(t, info)),
      guarded(warnings, 'namespaces', undefined, () => this.#namespaces(t, info)),
      guarded(warnings, 'cgroup', undefined, () => this.#cgroup(t, info)),
      kernelThread || this.opts.brief ? undefined : guarded(warnings, 'cmdline', undefined, async () => {
        info.cmdline = await readCmdline(k, mm, { ...this.opts, max: this.opts.maxCmdline, warnings });
      }),
      kernelThread || this.opts.brief ? undefined : guarded(warnings, 'exe', undefined, () => this.#exe(t, mm, info)),
    ]);
    if (info.pid === 0) info.ppid = 0;
    return info;
  }

  /** pid numbers at every level (struct pid.numbers[0..level]) and their namespaces. */
  async #pids(t: KObject, info: TaskInfo): Promise<void> {
    const k = this.kernel;
    const pid = t.ptr('thread_pid');
    if (pid === 0n) { info.nspids = [info.pid]; return; }
    const head = await k.read('pid', pid, { ...this.opts, upTo: 'level' });
    const level = head.u32('level');
    if (level > 32) throw new ValidationError(`pid level ${level}`, pid);
    const upSize = k.profile.typeSize('upid');
    const numbersAt = pid + BigInt(k.profile.fieldOffset('pid', 'numbers'));
    const raw = await k.space.read(numbersAt, upSize * (level + 1), this.opts);
    const nrOff = k.profile.fieldOffset('upid', 'nr');
    const nsOff = k.profile.fieldOffset('upid', 'ns');
    for (let i = 0; i <= level; i++) {
      info.nspids.push(raw.readInt32LE(i * upSize + nrOff));
      info.pidNamespaces.push(await this.inum('pid_namespace', raw.readBigUInt64LE(i * upSize + nsOff)));
    }
    info.namespaces.pid = info.pidNamespaces[level];
  }

  async #creds(t: KObject, info: TaskInfo): Promise<void> {
    const k = this.kernel;
    const cred = await k.read('cred', t.ptr('real_cred'), this.opts);
    info.uid = cred.u32('uid.val');
    info.gid = cred.u32('gid.val');
    info.euid = cred.u32('euid.val');
    info.egid = cred.u32('egid.val');
    info.namespaces.user = await this.inum('user_namespace', cred.ptr('user_ns'));
  }

  async #namespaces(t: KObject, info: TaskInfo): Promise<void> {
    const k = this.kernel;
    const nsproxy = t.ptr('nsproxy');
    if (nsproxy === 0n) return; // an exiting task has none
    const ns = await k.read('nsproxy', nsproxy, this.opts);
    const fields: Array<[keyof Namespaces, string, string]> = [
      ['uts', 'uts_ns', 'uts_namespace'], ['ipc', 'ipc_ns', 'ipc_namespace'], ['mnt', 'mnt_ns', 'mnt_namespace'],
      ['net', 'net_ns', 'net'], ['cgroup', 'cgroup_ns', 'cgroup_namespace'],
    ];
    // time namespaces arrived in 5.6
    if (k.profile.hasField('nsproxy', 'time_ns')) fields.push(['time', 'time_ns', 'time_namespace']);
    // every read settles before a failure is thrown: a late one must not change info after we return
    const settled = await Promise.allSettled(fields.map(async ([kind, field, type]) => { info.namespaces[kind] = await this.inum(type, ns.ptr(field)); }));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    const uts = ns.ptr('uts_ns');
    if (k.isKernelPointer(uts)) {
      info.hostname = await this.#cached(this.#strings, `uts@${uts}`, async () => {
        const at = uts + BigInt(k.profile.fieldOffset('uts_namespace', 'name.nodename'));
        const raw = await k.space.read(at, 65, this.opts);
        const nul = raw.indexOf(0);
        return raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8');
      });
    }
  }

  /** cgroup v2: task->cgroups->dfl_cgrp->kn, and whether that cgroup is frozen. */
  async #cgroup(t: KObject, info: TaskInfo): Promise<void> {
    const k = this.kernel;
    const cset = await k.read('css_set', t.ptr('cgroups'), { ...this.opts, upTo: 'dfl_cgrp' });
    const cgrp = cset.ptr('dfl_cgrp');
    const key = `cgroup@${cgrp}`;
    const [path, flags] = await Promise.all([
      this.#cached(this.#strings, key, async () => {
        const c = await k.read('cgroup', cgrp, { ...this.opts, upTo: 'kn' });
        return kernfsPath(k, c.ptr('kn'), this.opts);
      }),
      this.#cached(this.#strings, `${key}/flags`, async () => {
        const c = await k.read('cgroup', cgrp, { ...this.opts, upTo: 'flags' });
        return c.uint('flags').toString();
      }),
    ]);
    info.cgroup = path;
    const bit = (name: string, fallback: bigint) => k.profile.hasEnumConstant(undefined, name) ? k.profile.enumConstant(undefined, name) : fallback;
    const f = BigInt(flags);
    info.cgroupFrozen = ((f >> bit('CGRP_FREEZE', 2n)) & 1n) === 1n || ((f >> bit('CGRP_FROZEN', 3n)) & 1n) === 1n;
  }

  /** The executable's path as the task itself sees it (relative to its fs->root). */
  async #exe(t: KObject, mm: bigint, info: TaskInfo): Promise<void> {
    const k = this.kernel;
    const m = await k.read('mm_struct', mm, { ...this.opts, upTo: 'exe_file' });
    const file = m.ptr('exe_file');
    if (file === 0n) return;
    const fPath = file + BigInt(k.profile.fieldOffset('file', 'f_path'));
    const f = await k.read('path', fPath, this.opts);
    const exePath: KPath = { mnt: f.ptr('mnt'), dentry: f.ptr('dentry') };
    let root: KPath | null = null;
    const fs = t.ptr('fs');
    if (k.isKernelPointer(fs)) {
      const r = await k.read('path', fs + BigInt(k.profile.fieldOffset('fs_struct', 'root')), this.opts);
      root = { mnt: r.ptr('mnt'), dentry: r.ptr('dentry') };
    }
    info.exe = await dPath(k, exePath, root, this.opts);
  }
}
