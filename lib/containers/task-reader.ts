/**
 * One TaskInfo from one task_struct, reading the objects it points to. Shared objects (namespaces,
 * cgroups, command lines of threads sharing an mm, executables) are read once per collection; by
 * the time this runs, collect.ts has fetched each stage in batches, so nearly every read is a page
 * cache hit answered without I/O.
 */
import type { CallOptions } from '../util/deadline';
import { isFatalReadError, ValidationError } from '../errors';
import type { Kernel } from '../kernel/kernel';
import type { KObject } from '../kernel/object';
import { taskStateLetter } from '../kernel/helpers/state';
import { cgroupPath, cgroupV1Paths } from '../kernel/helpers/cgroup';
import { dPath, dentryPath, type KPath } from '../kernel/helpers/dcache';
import { readCmdline } from '../kernel/helpers/mm';
import { unknownNamespaces, type Namespaces, type TaskInfo } from './model';
import { decodeCached, emptyTables, nsproxyFields, pidNumbersCached, type SharedTables } from './task-decode';
import { readU64LE } from '../util/bytes';

export interface TaskReaderOptions extends CallOptions {
  maxCmdline?: number;
  /** Skip command lines, executables and roots. */
  brief?: boolean;
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

/** Reads a struct from the cache when it is there, else from memory. */
function readStruct(k: Kernel, type: string, address: bigint, opts: CallOptions & { upTo?: string }): KObject | Promise<KObject> {
  return k.peek(type, address, opts) ?? k.read(type, address, opts);
}

/** Per-collection caches of shared objects, keyed by address. */
export class TaskReader {
  readonly #inum = new Map<string, Promise<number>>();
  readonly #strings = new Map<string, Promise<string>>();
  readonly #cmdlines = new Map<bigint, Promise<{ args: string[]; warnings: string[] }>>();
  readonly #exes = new Map<string, Promise<string | null>>();
  readonly #v1 = new Map<bigint, Promise<Record<string, string>>>();

  constructor(
    readonly kernel: Kernel,
    readonly opts: TaskReaderOptions,
    /** every task_struct of the collection, by address (a parent found here needs no read) */
    readonly tasks: ReadonlyMap<bigint, KObject>,
  ) {}

  readonly #tables: SharedTables = emptyTables();

  /**
   * Resolves, once each, the objects the tasks share (namespace inodes, hostnames, cgroup paths
   * and states, v1 paths), so that most tasks then decode without a promise. Failures are left
   * for the tasks that meet them (their careful path reports them).
   */
  async prepare(): Promise<void> {
    const k = this.kernel;
    const p = k.profile;
    const inums = new Map<string, Set<bigint>>();
    const wantInum = (type: string, at: bigint) => {
      if (!k.isKernelPointer(at)) return;
      let set = inums.get(type);
      if (!set) inums.set(type, (set = new Set()));
      set.add(at);
    };
    const utss = new Set<bigint>();
    const cgroups = new Set<bigint>();
    const csets = new Set<bigint>();
    const seen = new Set<bigint>();
    const upSize = p.typeSize('upid');
    const nsOff = p.fieldOffset('upid', 'ns');
    const nsFields = nsproxyFields(k);
    for (const t of this.tasks.values()) {
      const pid = t.ptr('thread_pid');
      const numbers = !seen.has(pid) && k.isKernelPointer(pid) ? pidNumbersCached(k, pid) : undefined;
      seen.add(pid);
      if (numbers) {
        const { raw, base, level } = numbers;
        for (let i = 0; i <= level; i++) wantInum('pid_namespace', readU64LE(raw, base + i * upSize + nsOff));
      }
      const credAt = t.ptr('real_cred');
      const cred = !seen.has(credAt) && k.isKernelPointer(credAt) ? k.peek('cred', credAt) : undefined;
      seen.add(credAt);
      if (cred) wantInum('user_namespace', cred.ptr('user_ns'));
      const nsAt = t.ptr('nsproxy');
      const ns = !seen.has(nsAt) && k.isKernelPointer(nsAt) ? k.peek('nsproxy', nsAt) : undefined;
      seen.add(nsAt);
      if (ns) {
        for (const [, field, type] of nsFields) wantInum(type, ns.ptr(field));
        if (k.isKernelPointer(ns.ptr('uts_ns'))) utss.add(ns.ptr('uts_ns'));
      }
      const csetAt = t.ptr('cgroups');
      if (!csets.has(csetAt) && k.isKernelPointer(csetAt)) {
        csets.add(csetAt);
        const cs = k.peek('css_set', csetAt, { upTo: 'dfl_cgrp' });
        if (cs && k.isKernelPointer(cs.ptr('dfl_cgrp'))) cgroups.add(cs.ptr('dfl_cgrp'));
      }
    }
    const tables = this.#tables;
    const settle = (f: () => Promise<void>) => f().catch((err: unknown) => { if (isFatalReadError(err)) throw err; });
    const jobs: Promise<void>[] = [];
    for (const [type, set] of inums) {
      const m = new Map<bigint, number>();
      tables.inums.set(type, m);
      for (const at of set) jobs.push(settle(async () => { m.set(at, await this.inum(type, at)); }));
    }
    for (const uts of utss) jobs.push(settle(async () => { tables.hostnames.set(uts, await this.#hostname(uts)); }));
    for (const cgrp of cgroups) {
      jobs.push(settle(async () => {
        await this.#cached(this.#strings, `cgroup@${cgrp}`, () => cgroupPath(k, cgrp, this.opts));
        tables.frozen.set(cgrp, await this.#frozen(cgrp));
      }));
    }
    for (const cset of csets) jobs.push(settle(async () => { tables.v1.set(cset, await this.#cached(this.#v1, cset, () => cgroupV1Paths(k, cset, this.opts))); }));
    await Promise.all(jobs);
  }

  #hostname(uts: bigint): Promise<string> {
    const k = this.kernel;
    return this.#cached(this.#strings, `uts@${uts}`, async () => {
      const at = uts + BigInt(k.profile.fieldOffset('uts_namespace', 'name.nodename'));
      const raw = k.space.peek(at, 65) ?? await k.space.read(at, 65, this.opts);
      const nul = raw.indexOf(0);
      return raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8');
    });
  }

  /** Whether a struct cgroup * is frozen (v2 cgroup.freeze set, or the freeze done). */
  async #frozen(cgrp: bigint): Promise<boolean> {
    const k = this.kernel;
    const flags = BigInt(await this.#cached(this.#strings, `cgroup@${cgrp}/flags`, async () => (await readStruct(k, 'cgroup', cgrp, { ...this.opts, upTo: 'flags' })).uint('flags').toString()));
    const bit = (name: string, fallback: bigint) => k.profile.hasEnumConstant(undefined, name) ? k.profile.enumConstant(undefined, name) : fallback;
    return ((flags >> bit('CGRP_FREEZE', 2n)) & 1n) === 1n || ((flags >> bit('CGRP_FROZEN', 3n)) & 1n) === 1n;
  }

  #cached<K, T>(map: Map<K, Promise<T>>, key: K, f: () => Promise<T>): Promise<T> {
    let p = map.get(key);
    if (!p) map.set(key, (p = f()));
    return p;
  }

  /** `ns->ns.inum` of a namespace object of `type` (uts_namespace, net, ...). */
  inum(type: string, address: bigint): Promise<number> {
    return this.#cached(this.#inum, `${type}@${address}`, async () => {
      if (!this.kernel.isKernelPointer(address)) return 0;
      const at = address + BigInt(this.kernel.profile.fieldOffset(type, 'ns.inum'));
      const b = this.kernel.space.peek(at, 4) ?? await this.kernel.space.read(at, 4, this.opts);
      return b.readUInt32LE(0);
    });
  }

  /**
   * The TaskInfo of one task: at once when the cache and the shared tables hold all a brief listing
   * wants (nearly every task: a promise each was a good part of a listing's time), else a promise.
   */
  taskInfo(t: KObject, warnings: string[]): TaskInfo | Promise<TaskInfo> {
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
      namespaces: unknownNamespaces(),
      cgroup: '',
      exe: null,
      hostname: '',
      kernelThread,
      warnings,
    };
    const fast = decodeCached(k, t, info, this.#tables, this.tasks);
    if (fast && this.opts.brief) {
      if (info.pid === 0) info.ppid = 0;
      return info;
    }
    return this.#rest(t, info, fast, warnings);
  }

  /** What decodeCached() could not do, and what a full listing reads besides (command line, executable, root). */
  async #rest(t: KObject, info: TaskInfo, fast: boolean, warnings: string[]): Promise<TaskInfo> {
    const mm = t.ptr('mm');
    const full = !info.kernelThread && !this.opts.brief;
    await Promise.all([
      fast ? undefined : guarded(warnings, 'parent', undefined, () => this.#parent(t, info)),
      fast ? undefined : guarded(warnings, 'pid', undefined, () => this.#pids(t, info)),
      fast ? undefined : guarded(warnings, 'credentials', undefined, () => this.#creds(t, info)),
      fast ? undefined : guarded(warnings, 'namespaces', undefined, () => this.#namespaces(t, info)),
      fast ? undefined : guarded(warnings, 'cgroup', undefined, () => this.#cgroup(t, info)),
      full ? guarded(warnings, 'cmdline', undefined, () => this.#cmdline(mm, info, warnings)) : undefined,
      full ? guarded(warnings, 'exe', undefined, () => this.#exe(t, mm, info)) : undefined,
      // the root is extra detail: a bad fs pointer is already reported under 'exe'
      this.opts.brief ? undefined : this.#root(t, info).catch((err: unknown) => { if (isFatalReadError(err)) throw err; }),
    ]);
    if (info.pid === 0) info.ppid = 0;
    return info;
  }

  /** real_parent->tgid; a parent pointer that is not a kernel pointer is corrupt, not "no parent". */
  async #parent(t: KObject, info: TaskInfo): Promise<void> {
    const k = this.kernel;
    const parent = t.ptr('real_parent');
    if (parent === t.address) return;
    if (!k.isKernelPointer(parent)) throw new ValidationError(`bad real_parent pointer 0x${parent.toString(16)}`, t.address);
    const known = this.tasks.get(parent);
    if (known) { info.ppid = known.i32('tgid'); return; }
    const at = parent + BigInt(k.profile.fieldOffset('task_struct', 'tgid'));
    info.ppid = (k.space.peek(at, 4) ?? await k.space.read(at, 4, this.opts)).readInt32LE(0);
  }

  /** pid numbers at every level (struct pid.numbers[0..level]) and their namespaces. */
  async #pids(t: KObject, info: TaskInfo): Promise<void> {
    const k = this.kernel;
    const pid = t.ptr('thread_pid');
    if (pid === 0n) { info.nspids = [info.pid]; return; }
    const head = await readStruct(k, 'pid', pid, { ...this.opts, upTo: 'level' });
    const level = head.u32('level');
    if (level > 32) throw new ValidationError(`pid level ${level}`, pid);
    const upSize = k.profile.typeSize('upid');
    const numbersAt = pid + BigInt(k.profile.fieldOffset('pid', 'numbers'));
    const raw = k.space.peek(numbersAt, upSize * (level + 1)) ?? await k.space.read(numbersAt, upSize * (level + 1), this.opts);
    const nrOff = k.profile.fieldOffset('upid', 'nr');
    const nsOff = k.profile.fieldOffset('upid', 'ns');
    const nspids: number[] = [];
    const inums: Promise<number>[] = [];
    for (let i = 0; i <= level; i++) {
      nspids.push(raw.readInt32LE(i * upSize + nrOff));
      inums.push(this.inum('pid_namespace', readU64LE(raw, i * upSize + nsOff)));
    }
    const pidNamespaces = await Promise.all(inums);
    info.nspids = nspids;
    info.pidNamespaces = pidNamespaces;
    info.namespaces.pid = pidNamespaces[level];
  }

  async #creds(t: KObject, info: TaskInfo): Promise<void> {
    const cred = await readStruct(this.kernel, 'cred', t.ptr('real_cred'), this.opts);
    const user = await this.inum('user_namespace', cred.ptr('user_ns'));
    info.uid = cred.u32('uid.val');
    info.gid = cred.u32('gid.val');
    info.euid = cred.u32('euid.val');
    info.egid = cred.u32('egid.val');
    info.namespaces.user = user;
  }

  async #namespaces(t: KObject, info: TaskInfo): Promise<void> {
    const k = this.kernel;
    const nsproxy = t.ptr('nsproxy');
    if (nsproxy === 0n) return; // an exiting task has none
    const ns = await readStruct(k, 'nsproxy', nsproxy, this.opts);
    const fields = nsproxyFields(k);
    // every read settles before a failure is thrown: a late one must not change info after we return
    const settled = await Promise.allSettled(fields.map(async ([kind, field, type]) => { info.namespaces[kind] = await this.inum(type, ns.ptr(field)); }));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    const uts = ns.ptr('uts_ns');
    if (k.isKernelPointer(uts)) info.hostname = await this.#hostname(uts);
  }

  /** cgroup v2: task->cgroups->dfl_cgrp->kn, whether that cgroup is frozen, and the v1 paths. */
  async #cgroup(t: KObject, info: TaskInfo): Promise<void> {
    const k = this.kernel;
    const csetAt = t.ptr('cgroups');
    const cset = await readStruct(k, 'css_set', csetAt, { ...this.opts, upTo: 'dfl_cgrp' });
    const cgrp = cset.ptr('dfl_cgrp');
    const key = `cgroup@${cgrp}`;
    const [path, frozen, v1] = await Promise.all([
      this.#cached(this.#strings, key, () => cgroupPath(k, cgrp, this.opts)),
      this.#frozen(cgrp),
      this.#cached(this.#v1, csetAt, () => cgroupV1Paths(k, csetAt, this.opts)),
    ]);
    info.cgroup = path;
    if (Object.keys(v1).length > 0) info.cgroupV1 = { ...v1 };
    info.cgroupFrozen = frozen;
  }

  /** The command line, read once per mm (threads share it); its warnings go to every task. */
  async #cmdline(mm: bigint, info: TaskInfo, warnings: string[]): Promise<void> {
    const r = await this.#cached(this.#cmdlines, mm, async () => {
      const w: string[] = [];
      const args = await readCmdline(this.kernel, mm, { ...this.opts, max: this.opts.maxCmdline, warnings: w });
      return { args, warnings: w };
    });
    warnings.push(...r.warnings);
    info.cmdline = [...r.args];
  }

  /** `struct path` at `address`. */
  async #path(address: bigint): Promise<KPath> {
    const p = await readStruct(this.kernel, 'path', address, this.opts);
    return { mnt: p.ptr('mnt'), dentry: p.ptr('dentry') };
  }

  /** fs->root, or null without a usable fs. */
  async #fsRoot(t: KObject): Promise<KPath | null> {
    const fs = t.ptr('fs');
    if (!this.kernel.isKernelPointer(fs)) return null;
    return this.#path(fs + BigInt(this.kernel.profile.fieldOffset('fs_struct', 'root')));
  }

  /** The executable's path as the task itself sees it (relative to its fs->root). */
  #exe(t: KObject, mm: bigint, info: TaskInfo): Promise<void> {
    const k = this.kernel;
    return this.#cached(this.#exes, `${mm}:${t.ptr('fs')}`, async () => {
      const m = await readStruct(k, 'mm_struct', mm, { ...this.opts, upTo: 'exe_file' });
      const file = m.ptr('exe_file');
      if (file === 0n) return null;
      const exePath = await this.#path(file + BigInt(k.profile.fieldOffset('file', 'f_path')));
      return dPath(k, exePath, await this.#fsRoot(t), this.opts);
    }).then((exe) => { info.exe = exe; });
  }

  /** Where the task's root directory lies in its file system (a container's rootfs). */
  async #root(t: KObject, info: TaskInfo): Promise<void> {
    if (!this.kernel.profile.hasField('fs_struct', 'root')) return;
    const root = await this.#fsRoot(t);
    if (root) info.root = await dentryPath(this.kernel, root.dentry, this.opts);
  }
}
