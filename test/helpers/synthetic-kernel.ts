/**
 * A synthetic Linux guest for kernel-layer tests: a SparseMemory image holding a kernel image at a
 * 2 MiB-aligned physical base with a virtual (KASLR) slide, its init_top_pgt page tables (the image
 * range, and a direct map at page_offset_base → physical 0 for heap objects; 4- or 5-level paging,
 * with the layout variables a 6.1 kernel has), and a hand-written ISF
 * profile with exactly the structs and fields lib/containers/collect.ts reads (offsets as in
 * Debian's 6.1 kernel, anonymous members included).
 *
 * Tasks are added with addTask/addThread (pid numbers in nested pid namespaces, namespaces, cgroup
 * path, credentials, a command line in a user address space of its own, an executable path) and
 * kept on init_task.tasks as a proper circular list. Everything is plain memory afterwards, so a
 * test corrupts whatever it likes with set()/writeU64().
 */
import { Kernel } from '../../lib/kernel/kernel';
import { Profile } from '../../lib/kernel/profile';
import { PageCache } from '../../lib/memory/page-cache';
import type { PhysicalRange } from '../../lib/memory/physical';
import type { NamespaceKind, Namespaces } from '../../lib/containers/model';
import { SparseMemory } from './sparse-memory';
import { KiB4, MiB2, PageTableBuilder } from './page-tables';

/** page_offset_base of the 4-level guest (the default). */
export const PAGE_OFFSET = 0xffff888000000000n;
/** The 4-level guest's vmalloc_base and vmemmap_base. */
export const VMALLOC_BASE = 0xffffc90000000000n;
export const VMEMMAP_BASE = 0xffffea0000000000n;
/**
 * The 5-level guest's bases, as CONFIG_RANDOMIZE_MEMORY scatters them under LA57 (1 GiB steps):
 * every one outside the 4-level kernel half.
 */
export const LA57_PAGE_OFFSET = 0xff3686ad80000000n;
export const LA57_VMALLOC_BASE = 0xff64463ac0000000n;
export const LA57_VMEMMAP_BASE = 0xffe1a05ec0000000n;
export const START_KERNEL_MAP = 0xffffffff80000000n;
/** A kernel-half address that nothing maps (the vmalloc area): reading it page-faults. */
export const UNMAPPED_KERNEL = VMALLOC_BASE + 0x123000n;
/** Where command lines live in every synthetic process (not page aligned, so reads cross pages). */
export const ARG_START = 0x7ffd4a200c40n;
export const PF_KTHREAD = 0x00200000;
export const TASK_INTERRUPTIBLE = 0x1;
/** TASK_UNINTERRUPTIBLE | TASK_NOLOAD: what idle kernel threads sleep in ('I'). */
export const TASK_IDLE = 0x402;
export const BANNER = 'Linux version 6.1.0-synthetic (vmictl@test) (gcc-12 (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT_DYNAMIC';

/** Link-time addresses of the symbols in the image. */
const TEXT = 0xffffffff81000000n;
const LINK: Record<'_text' | 'linux_banner' | 'init_top_pgt' | 'phys_base' | 'init_task' | 'init_pid_ns'
  | 'page_offset_base' | 'vmalloc_base' | 'vmemmap_base' | '__pgtable_l5_enabled'
  | 'ftrace_pages_start' | 'ftrace_ops_list' | 'ftrace_list_end' | 'kprobe_table' | 'aggr_pre_handler' | 'pre_handler_kretprobe', bigint> = {
  _text: TEXT,
  linux_banner: TEXT + 0x400100n,
  init_top_pgt: TEXT + 0x600000n,
  phys_base: TEXT + 0x700010n,
  page_offset_base: TEXT + 0x700020n,
  vmalloc_base: TEXT + 0x700028n,
  vmemmap_base: TEXT + 0x700030n,
  __pgtable_l5_enabled: TEXT + 0x700038n,
  init_task: TEXT + 0x740000n,
  init_pid_ns: TEXT + 0x750000n,
  aggr_pre_handler: TEXT + 0x10000n,
  pre_handler_kretprobe: TEXT + 0x10100n,
  ftrace_pages_start: TEXT + 0x760000n,
  ftrace_ops_list: TEXT + 0x760008n,
  ftrace_list_end: TEXT + 0x760040n,
  kprobe_table: TEXT + 0x761000n,
};
const IMAGE_SIZE = 0x800000n;

/** The inodes of the initial namespaces, as a real kernel numbers them. */
export const ROOT_INUMS: Namespaces = {
  pid: 4026531836, mnt: 4026531841, uts: 4026531838, net: 4026531840,
  ipc: 4026531839, cgroup: 4026531835, user: 4026531837, time: 4026531834,
};

// ---------------------------------------------------------------------------------------------
// The profile: an ISF document written by hand.

type TypeDesc = Record<string, unknown>;
const base = (name: string): TypeDesc => ({ kind: 'base', name });
const struct = (name: string): TypeDesc => ({ kind: 'struct', name });
const union = (name: string): TypeDesc => ({ kind: 'union', name });
const ptr = (subtype: TypeDesc): TypeDesc => ({ kind: 'pointer', subtype });
const array = (count: number, subtype: TypeDesc): TypeDesc => ({ kind: 'array', count, subtype });

/** A user type: fields as [offset, type] or [offset, type, anonymous]. */
function userType(size: number, fields: Record<string, [number, TypeDesc] | [number, TypeDesc, true]>, kind = 'struct'): TypeDesc {
  const out: Record<string, TypeDesc> = {};
  for (const [name, [offset, type, anonymous]] of Object.entries(fields)) {
    out[name] = anonymous ? { offset, type, anonymous } : { offset, type };
  }
  return { kind, size, fields: out };
}

/** `struct X { ...; struct ns_common ns at nsOffset; ... }` */
const namespaceType = (size: number, nsOffset: number): TypeDesc => userType(size, { ns: [nsOffset, struct('ns_common')] });

function profileDocument(layoutVariables: boolean): Record<string, unknown> {
  const listHead = struct('list_head');
  const baseTypes: Record<string, TypeDesc> = {
    char: { kind: 'char', size: 1, signed: true, endian: 'little' },
    'unsigned char': { kind: 'char', size: 1, signed: false, endian: 'little' },
    int: { kind: 'int', size: 4, signed: true, endian: 'little' },
    'unsigned int': { kind: 'int', size: 4, signed: false, endian: 'little' },
    'long unsigned int': { kind: 'int', size: 8, signed: false, endian: 'little' },
    'long long unsigned int': { kind: 'int', size: 8, signed: false, endian: 'little' },
    pointer: { kind: 'int', size: 8, signed: false, endian: 'little' },
    void: { kind: 'void', size: 0, signed: false, endian: 'little' },
  };
  const userTypes: Record<string, TypeDesc> = {
    list_head: userType(16, { next: [0, ptr(listHead)], prev: [8, ptr(listHead)] }),
    task_struct: userType(9728, {
      __state: [24, base('unsigned int')],
      flags: [44, base('unsigned int')],
      tasks: [2192, listHead],
      mm: [2272, ptr(struct('mm_struct'))],
      exit_state: [2308, base('int')],
      pid: [2416, base('int')],
      tgid: [2420, base('int')],
      real_parent: [2432, ptr(struct('task_struct'))],
      thread_pid: [2520, ptr(struct('pid'))],
      pid_links: [2528, array(4, struct('hlist_node'))],
      thread_node: [2608, listHead],
      start_boottime: [2784, base('long long unsigned int')],
      real_cred: [2952, ptr(struct('cred'))],
      comm: [2976, array(16, base('char'))],
      fs: [3040, ptr(struct('fs_struct'))],
      nsproxy: [3064, ptr(struct('nsproxy'))],
      signal: [3072, ptr(struct('signal_struct'))],
      cgroups: [3600, ptr(struct('css_set'))],
    }),
    signal_struct: userType(1112, { thread_head: [16, listHead] }),
    // numbers[] is a flexible array at the end, as in the kernel
    pid: userType(96, { level: [4, base('unsigned int')], tasks: [16, array(4, struct('hlist_head'))], numbers: [96, array(0, struct('upid'))] }),
    hlist_head: userType(8, { first: [0, ptr(struct('hlist_node'))] }),
    hlist_node: userType(16, { next: [0, ptr(struct('hlist_node'))], pprev: [8, ptr(ptr(struct('hlist_node')))] }),
    // the pid IDR: struct idr { struct radix_tree_root (= struct xarray) idr_rt; ... }
    idr: userType(24, { idr_rt: [0, struct('xarray')] }),
    xarray: userType(16, { xa_head: [8, ptr(base('void'))] }),
    xa_node: userType(576, { shift: [0, base('unsigned char')], slots: [40, array(64, ptr(base('void')))] }),
    upid: userType(16, { nr: [0, base('int')], ns: [8, ptr(struct('pid_namespace'))] }),
    ns_common: userType(24, { inum: [16, base('unsigned int')] }),
    pid_namespace: userType(136, { idr: [0, struct('idr')], ns: [112, struct('ns_common')] }),
    uts_namespace: userType(432, { name: [0, struct('new_utsname')], ns: [408, struct('ns_common')] }),
    new_utsname: userType(390, { nodename: [65, array(65, base('char'))] }),
    ipc_namespace: namespaceType(1128, 1104),
    mnt_namespace: namespaceType(120, 0),
    net: namespaceType(4288, 128),
    cgroup_namespace: namespaceType(48, 0),
    time_namespace: namespaceType(88, 16),
    user_namespace: namespaceType(624, 240),
    nsproxy: userType(72, {
      uts_ns: [8, ptr(struct('uts_namespace'))],
      ipc_ns: [16, ptr(struct('ipc_namespace'))],
      mnt_ns: [24, ptr(struct('mnt_namespace'))],
      net_ns: [40, ptr(struct('net'))],
      time_ns: [48, ptr(struct('time_namespace'))],
      cgroup_ns: [64, ptr(struct('cgroup_namespace'))],
    }),
    kuid_t: userType(4, { val: [0, base('unsigned int')] }),
    kgid_t: userType(4, { val: [0, base('unsigned int')] }),
    cred: userType(176, {
      uid: [8, struct('kuid_t')],
      gid: [12, struct('kgid_t')],
      euid: [24, struct('kuid_t')],
      egid: [28, struct('kgid_t')],
      user_ns: [136, ptr(struct('user_namespace'))],
    }),
    css_set: userType(592, { dfl_cgrp: [128, ptr(struct('cgroup'))] }),
    cgroup: userType(1792, { flags: [200, base('long unsigned int')], kn: [248, ptr(struct('kernfs_node'))] }),
    kernfs_node: userType(128, { parent: [8, ptr(struct('kernfs_node'))], name: [16, ptr(base('char'))] }),
    // since 5.x nearly all of mm_struct sits in an anonymous struct
    mm_struct: userType(1096, { unnamed_field_0: [0, struct('unnamed_synthetic_mm'), true] }),
    unnamed_synthetic_mm: userType(1096, {
      pgd: [72, ptr(struct('pgd_t'))],
      arg_start: [312, base('long unsigned int')],
      arg_end: [320, base('long unsigned int')],
      exe_file: [944, ptr(struct('file'))],
    }),
    pgd_t: userType(8, { pgd: [0, base('long unsigned int')] }),
    file: userType(232, { f_path: [16, struct('path')] }),
    path: userType(16, { mnt: [0, ptr(struct('vfsmount'))], dentry: [8, ptr(struct('dentry'))] }),
    fs_struct: userType(56, { root: [24, struct('path')] }),
    dentry: userType(192, { d_parent: [24, ptr(struct('dentry'))], d_name: [32, struct('qstr')] }),
    // qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const unsigned char *name; }
    qstr: userType(16, { unnamed_field_0: [0, union('unnamed_synthetic_qstr_u'), true], name: [8, ptr(base('unsigned char'))] }),
    unnamed_synthetic_qstr_u: userType(8, {
      unnamed_field_0: [0, struct('unnamed_synthetic_qstr_s'), true],
      hash_len: [0, base('long long unsigned int')],
    }, 'union'),
    unnamed_synthetic_qstr_s: userType(8, { hash: [0, base('unsigned int')], len: [4, base('unsigned int')] }),
    vfsmount: userType(32, { mnt_root: [0, ptr(struct('dentry'))] }),
    // function tracing and kprobes, offsets as in Debian's 6.1 kernel
    ftrace_page: userType(24, { next: [0, ptr(struct('ftrace_page'))], records: [8, ptr(struct('dyn_ftrace'))], index: [16, base('int')], order: [20, base('int')] }),
    dyn_ftrace: userType(16, { ip: [0, base('long unsigned int')], flags: [8, base('long unsigned int')] }),
    ftrace_ops: userType(184, {
      func: [0, ptr(base('void'))],
      next: [8, ptr(struct('ftrace_ops'))],
      flags: [16, base('long unsigned int')],
      func_hash: [88, ptr(struct('ftrace_ops_hash'))],
      trampoline: [144, base('long unsigned int')],
      trampoline_size: [152, base('long unsigned int')],
    }),
    ftrace_ops_hash: userType(48, { notrace_hash: [0, ptr(struct('ftrace_hash'))], filter_hash: [8, ptr(struct('ftrace_hash'))] }),
    ftrace_hash: userType(48, { size_bits: [0, base('long unsigned int')], buckets: [8, ptr(struct('hlist_head'))], count: [16, base('long unsigned int')], flags: [24, base('long unsigned int')] }),
    ftrace_func_entry: userType(32, { hlist: [0, struct('hlist_node')], ip: [16, base('long unsigned int')], direct: [24, base('long unsigned int')] }),
    kprobe: userType(128, {
      hlist: [0, struct('hlist_node')],
      list: [16, listHead],
      addr: [40, ptr(base('void'))],
      pre_handler: [64, ptr(base('void'))],
      post_handler: [72, ptr(base('void'))],
      flags: [120, base('unsigned int')],
    }),
    kretprobe: userType(168, { kp: [0, struct('kprobe')], handler: [128, ptr(base('void'))], entry_handler: [136, ptr(base('void'))] }),
    mount: userType(320, {
      mnt_parent: [16, ptr(struct('mount'))],
      mnt_mountpoint: [24, ptr(struct('dentry'))],
      mnt: [32, struct('vfsmount')],
    }),
  };
  const symbol = (address: bigint, type: TypeDesc, extra: Record<string, unknown> = {}) => ({ type, address: address.toString(10), ...extra });
  return {
    metadata: {
      format: '6.2.0',
      producer: { name: 'vmictl-test', version: '1' },
      linux: { symbols: [{ kind: 'symtab', name: 'vmlinux-synthetic' }], types: [{ kind: 'dwarf', name: 'vmlinux-synthetic' }] },
    },
    base_types: baseTypes,
    user_types: userTypes,
    enums: {
      cgroup_flags: { size: 4, base: 'unsigned int', constants: { CGRP_NOTIFY_ON_RELEASE: 0, CGRP_CPUSET_CLONE_CHILDREN: 1, CGRP_FREEZE: 2, CGRP_FROZEN: 3 } },
      unnamed_ftrace_fl: { size: 4, base: 'unsigned int', constants: { FTRACE_FL_ENABLED: 2147483648, FTRACE_FL_REGS: 1073741824 } },
      unnamed_ftrace_ops_fl: { size: 4, base: 'unsigned int', constants: { FTRACE_OPS_FL_ENABLED: 1, FTRACE_OPS_FL_DYNAMIC: 2 } },
    },
    symbols: {
      _text: symbol(LINK._text, base('void')),
      linux_banner: symbol(LINK.linux_banner, array(BANNER.length + 2, base('char')), {
        constant_data: Buffer.from(BANNER + '\n\0', 'latin1').toString('base64'),
      }),
      phys_base: symbol(LINK.phys_base, base('long unsigned int')),
      ...(layoutVariables ? {
        page_offset_base: symbol(LINK.page_offset_base, base('long unsigned int')),
        vmalloc_base: symbol(LINK.vmalloc_base, base('long unsigned int')),
        vmemmap_base: symbol(LINK.vmemmap_base, base('long unsigned int')),
      } : {}),
      __pgtable_l5_enabled: symbol(LINK.__pgtable_l5_enabled, base('unsigned int')),
      init_top_pgt: symbol(LINK.init_top_pgt, array(512, struct('pgd_t'))),
      init_task: symbol(LINK.init_task, struct('task_struct')),
      init_pid_ns: symbol(LINK.init_pid_ns, struct('pid_namespace')),
      ftrace_pages_start: symbol(LINK.ftrace_pages_start, ptr(struct('ftrace_page'))),
      ftrace_ops_list: symbol(LINK.ftrace_ops_list, ptr(struct('ftrace_ops'))),
      ftrace_list_end: symbol(LINK.ftrace_list_end, struct('ftrace_ops')),
      kprobe_table: symbol(LINK.kprobe_table, array(64, struct('hlist_head'))),
      aggr_pre_handler: symbol(LINK.aggr_pre_handler, base('void')),
      pre_handler_kretprobe: symbol(LINK.pre_handler_kretprobe, base('void')),
    },
  };
}

/** The synthetic guest's profile (a fresh object each call); without `layoutVariables`, a kernel of fixed layout. */
export function syntheticProfile(opts: { layoutVariables?: boolean } = {}): Profile {
  return Profile.fromJson(JSON.stringify(profileDocument(opts.layoutVariables ?? true)), '<synthetic profile>');
}

// ---------------------------------------------------------------------------------------------
// The guest.

/** A set of namespaces as a task's nsproxy (and cred->user_ns) names them. */
export interface NsSet {
  /** struct nsproxy * */
  nsproxy: bigint;
  /** struct pid_namespace * at each level, the host's first */
  pidNs: bigint[];
  /** struct user_namespace * */
  user: bigint;
  /** struct uts_namespace * */
  uts: bigint;
  inums: Namespaces;
  hostname: string;
}

export interface NamespaceSpec {
  /** Namespaces taken from here unless given anew (default: the root set). */
  parent?: NsSet;
  /** New namespaces of these kinds with these inodes; `pid` adds a pid-namespace level. */
  inums?: Partial<Namespaces>;
  /** nodename of a new UTS namespace (only with inums.uts; bytes kept as given, cut at 65). */
  hostname?: string | Buffer;
}

export interface TaskSpec {
  /** host pid (the tid of a thread) */
  pid: number;
  /** task->comm: cut at 16 bytes, NUL-terminated when shorter */
  comm: string | Buffer;
  /** default: the root set */
  ns?: NsSet;
  /** pids below the host's, one per pid-namespace level of `ns` beyond the first (e.g. [1]); default: none */
  nsPids?: number[];
  /** cgroup v2 path; default '/' */
  cgroup?: string;
  frozen?: boolean;
  /** a kernel thread: PF_KTHREAD, no mm */
  kernelThread?: boolean;
  /** the arguments (joined with NULs, each NUL-terminated) or raw bytes; default [comm] */
  cmdline?: string[] | Buffer;
  /** mm->arg_end - mm->arg_start; default: the command line's length */
  argLength?: number;
  /** which pages of the argument area are present (index from the page holding ARG_START); default all */
  presentPage?: (index: number) => boolean;
  /** share this task's mm instead of building one */
  shareMm?: TaskHandle;
  /** executable path below the root file system ("/usr/bin/x") */
  exe?: string;
  uid?: number;
  gid?: number;
  euid?: number;
  egid?: number;
  /** task->real_parent; default init_task */
  parent?: TaskHandle;
  /** __state; default TASK_INTERRUPTIBLE (TASK_IDLE for kernel threads) */
  state?: number;
  exitState?: number;
  /** ns since boot; default pid ms */
  startTime?: bigint;
}

export interface TaskHandle {
  /** struct task_struct * */
  address: bigint;
  pid: number;
  tgid: number;
  /** &task->tasks */
  tasks: bigint;
  /** &task->thread_node */
  threadNode: bigint;
  /** struct signal_struct * (shared by the thread group) */
  signal: bigint;
  /** &signal->thread_head */
  threadHead: bigint;
  /** struct pid * */
  pidStruct: bigint;
  /** struct mm_struct *, 0 for kernel threads */
  mm: bigint;
  /** the threads on signal->thread_head, in list order (leader first); shared by the group */
  group: TaskHandle[];
}

export interface SyntheticGuestOptions {
  /** default 512 MiB */
  ramSize?: bigint;
  /** where the kernel image is loaded (2 MiB aligned); default 0x7200000 */
  physicalBase?: bigint;
  /** KASLR's virtual slide (2 MiB aligned, below 1 GiB); default 0x1c600000 */
  virtualSlide?: bigint;
  /** 5: LA57, the kernel's and every process's page tables with five levels, the LA57_* bases; default 4 */
  pagingLevels?: 4 | 5;
  /** Where command lines live in every process (default ARG_START). */
  argStart?: bigint;
  /** false: a profile without page_offset_base, vmalloc_base and vmemmap_base (a fixed-layout kernel) */
  layoutVariables?: boolean;
}

function align(v: bigint, a: bigint): bigint {
  return (v + a - 1n) / a * a;
}

function cmdlineBytes(args: string[] | Buffer): Buffer {
  if (Buffer.isBuffer(args)) return args;
  return Buffer.concat(args.map((a) => Buffer.concat([Buffer.from(a, 'utf8'), Buffer.from([0])])));
}

export class SyntheticGuest {
  readonly mem: SparseMemory;
  readonly profile: Profile;
  readonly ramSize: bigint;
  readonly physicalBase: bigint;
  readonly virtualSlide: bigint;
  readonly pagingLevels: 4 | 5;
  /** page_offset_base, vmalloc_base, vmemmap_base as written in the image */
  readonly pageOffset: bigint;
  readonly vmallocBase: bigint;
  readonly vmemmapBase: bigint;
  /** A kernel address that nothing maps (in vmalloc space). */
  readonly unmappedKernel: bigint;
  readonly argStart: bigint;
  /** init_task, the head of the task list */
  readonly initTask: TaskHandle;
  readonly rootNs: NsSet;
  /** struct fs_struct * every task shares: root is the root mount's root dentry */
  readonly rootFs: bigint;
  /** struct vfsmount * of the root mount, and its root dentry */
  readonly rootMnt: bigint;
  readonly rootDentry: bigint;
  /** The thread-group leaders on init_task.tasks, in list order (addTask appends, linkTasks replaces). */
  readonly taskList: TaskHandle[] = [];

  #heap: bigint;
  readonly #cssSets = new Map<string, bigint>();
  readonly #kernfs = new Map<string, bigint>();
  readonly #creds = new Map<string, bigint>();
  readonly #dentries = new Map<string, bigint>();
  /** host pid number → struct pid *, for the IDR of init_pid_ns */
  readonly #hostPids = new Map<number, bigint>();

  constructor(opts: SyntheticGuestOptions = {}) {
    this.ramSize = opts.ramSize ?? 512n << 20n;
    this.physicalBase = opts.physicalBase ?? 0x7200000n;
    this.virtualSlide = opts.virtualSlide ?? 0x1c600000n;
    if (this.physicalBase % MiB2 !== 0n || this.virtualSlide % MiB2 !== 0n) throw new Error('kernel base and slide must be 2 MiB aligned');
    this.mem = new SparseMemory(this.ramSize);
    this.profile = syntheticProfile({ layoutVariables: opts.layoutVariables });
    this.pagingLevels = opts.pagingLevels ?? 4;
    const la57 = this.pagingLevels === 5;
    this.pageOffset = la57 ? LA57_PAGE_OFFSET : PAGE_OFFSET;
    this.vmallocBase = la57 ? LA57_VMALLOC_BASE : VMALLOC_BASE;
    this.vmemmapBase = la57 ? LA57_VMEMMAP_BASE : VMEMMAP_BASE;
    this.unmappedKernel = this.vmallocBase + 0x123000n;
    this.argStart = opts.argStart ?? ARG_START;
    this.#heap = 0x100000n;

    // the image: banner, phys_base, the layout variables, page tables
    this.writeBytes(this.symbol('linux_banner'), Buffer.from(BANNER + '\n\0', 'latin1'));
    this.writeU64(this.symbol('phys_base'), this.physicalBase - this.virtualSlide - (TEXT - START_KERNEL_MAP));
    this.writeU64(this.symbol('page_offset_base'), this.pageOffset);
    this.writeU64(this.symbol('vmalloc_base'), this.vmallocBase);
    this.writeU64(this.symbol('vmemmap_base'), this.vmemmapBase);
    this.writeBytes(this.symbol('__pgtable_l5_enabled'), Buffer.from([la57 ? 1 : 0, 0, 0, 0]));
    const pt = new PageTableBuilder(this.mem, this.pagingLevels, this.physOf(this.symbol('init_top_pgt')));
    for (let off = 0n; off < IMAGE_SIZE; off += MiB2) pt.map(this.symbol('_text') + off, this.physicalBase + off, MiB2);
    for (let pa = 0n; pa < this.ramSize; pa += MiB2) pt.map(this.pageOffset + pa, pa, MiB2, { nx: true });

    // the root file system: one mount whose root dentry is its own parent
    this.rootDentry = this.#newDentry(0n, '/');
    const mount = this.alloc('mount');
    this.rootMnt = mount + this.offset('mount', 'mnt');
    this.set('mount', mount, 'mnt_parent', mount);
    this.set('mount', mount, 'mnt_mountpoint', this.rootDentry);
    this.set('mount', mount, 'mnt.mnt_root', this.rootDentry);
    this.#dentries.set('', this.rootDentry);
    this.rootFs = this.alloc('fs_struct');
    this.set('fs_struct', this.rootFs, 'root.mnt', this.rootMnt);
    this.set('fs_struct', this.rootFs, 'root.dentry', this.rootDentry);

    this.rootNs = this.#rootNamespaces();

    // init_task (pid 0, "swapper/0"): heads the task list and its own thread list
    const init = this.symbol('init_task');
    const signal = this.alloc('signal_struct');
    this.initTask = {
      address: init, pid: 0, tgid: 0,
      tasks: init + this.offset('task_struct', 'tasks'),
      threadNode: init + this.offset('task_struct', 'thread_node'),
      signal, threadHead: signal + this.offset('signal_struct', 'thread_head'),
      pidStruct: this.#pidStruct(0, [], this.rootNs),
      mm: 0n, group: [],
    };
    this.initTask.group.push(this.initTask);
    this.#fillTask(this.initTask, {
      pid: 0, comm: 'swapper/0', kernelThread: true, state: 0, startTime: 0n,
    }, this.rootNs, this.initTask);
    this.linkList(this.initTask.threadHead, [this.initTask.threadNode]);
    this.linkTasks([]);
  }

  /**
   * Opens the guest as vmictl does (lib/vm.ts): through a PageCache over the memory, KASLR found
   * from physical memory, init_task checked. With `cache: false` the kernel reads the SparseMemory
   * directly (no cached pages or translations: every read goes to the backend). Corrupt the guest
   * before opening it: a cached view does not see later writes.
   */
  open(opts: { cache?: boolean } = {}): Promise<Kernel> {
    const physical = opts.cache === false ? this.mem : new PageCache(this.mem);
    return Kernel.open(physical, this.profile, { ram: this.ram });
  }

  get ram(): PhysicalRange[] {
    return [{ address: 0n, length: Number(this.ramSize) }];
  }

  // --- memory -----------------------------------------------------------------------------------

  /** The runtime (slid) address of a symbol. */
  symbol(name: keyof typeof LINK): bigint {
    return LINK[name] + this.virtualSlide;
  }

  /** Physical address of a kernel virtual address in the image or the direct map. */
  physOf(va: bigint): bigint {
    const text = this.symbol('_text');
    if (va >= text && va < text + IMAGE_SIZE) return this.physicalBase + (va - text);
    if (va >= this.pageOffset && va < this.pageOffset + this.ramSize) return va - this.pageOffset;
    throw new Error(`0x${va.toString(16)} is not a mapped synthetic kernel address`);
  }

  writeBytes(va: bigint, data: Buffer): void {
    this.mem.writeSync(this.physOf(va), data);
  }

  writeU64(va: bigint, value: bigint): void {
    this.mem.writeU64(this.physOf(va), value);
  }

  /** Zeroed heap memory in the direct map (kernel virtual address); `what` is a type name or a size. */
  alloc(what: string | number, alignment = 64n): bigint {
    const size = BigInt(typeof what === 'number' ? what : this.profile.typeSize(what));
    let p = align(this.#heap, alignment);
    const imageEnd = this.physicalBase + IMAGE_SIZE;
    if (p < imageEnd && p + size > this.physicalBase) p = align(imageEnd, alignment);
    if (p + size > this.ramSize) throw new Error('synthetic guest out of RAM');
    this.#heap = p + size;
    return this.pageOffset + p;
  }

  /** Byte offset of a field path. */
  offset(type: string, path: string): bigint {
    return BigInt(this.profile.fieldOffset(type, path));
  }

  /** Writes an integer or pointer field of the struct `type` at `at`, in the field's own width. */
  set(type: string, at: bigint, path: string, value: bigint | number): void {
    const f = this.profile.field(type, path);
    const v = BigInt(value);
    const b = Buffer.alloc(f.size);
    switch (f.size) {
      case 1: b.writeUInt8(Number(BigInt.asUintN(8, v))); break;
      case 2: b.writeUInt16LE(Number(BigInt.asUintN(16, v))); break;
      case 4: b.writeUInt32LE(Number(BigInt.asUintN(32, v))); break;
      case 8: b.writeBigUInt64LE(BigInt.asUintN(64, v)); break;
      default: throw new Error(`${type}.${path} is ${f.size} bytes, not an integer`);
    }
    this.writeBytes(at + BigInt(f.offset), b);
  }

  /** Writes a char-array field: the bytes cut at its size, NUL-padded when shorter. */
  setChars(type: string, at: bigint, path: string, value: string | Buffer): void {
    const f = this.profile.field(type, path);
    const b = Buffer.alloc(f.size);
    (Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8')).copy(b, 0, 0, f.size);
    this.writeBytes(at + BigInt(f.offset), b);
  }

  /** A NUL-terminated copy of `s` in the heap. */
  cString(s: string | Buffer): bigint {
    const b = Buffer.concat([Buffer.isBuffer(s) ? s : Buffer.from(s, 'utf8'), Buffer.from([0])]);
    const at = this.alloc(b.length, 8n);
    this.writeBytes(at, b);
    return at;
  }

  /**
   * Writes a circular `struct list_head` list: `head` (list_head *) then `nodes` (list_head *), each
   * with consistent next and prev pointers.
   */
  linkList(head: bigint, nodes: readonly bigint[]): void {
    const ring = [head, ...nodes];
    ring.forEach((node, i) => {
      this.writeU64(node, ring[(i + 1) % ring.length]!);
      this.writeU64(node + 8n, ring[(i + ring.length - 1) % ring.length]!);
    });
  }

  /** Puts `order` on init_task.tasks (replacing what was there). */
  linkTasks(order: readonly TaskHandle[]): void {
    this.linkList(this.initTask.tasks, order.map((t) => t.tasks));
    this.taskList.splice(0, this.taskList.length, ...order);
  }

  // --- namespaces, cgroups, credentials, files ---------------------------------------------------

  #nsObject(kind: NamespaceKind, inum: number, hostname: string | Buffer = '', at = this.alloc(NS_TYPES[kind])): bigint {
    const type = NS_TYPES[kind];
    this.set(type, at, 'ns.inum', inum);
    if (kind === 'uts') this.setChars('uts_namespace', at, 'name.nodename', hostname);
    return at;
  }

  #nsproxy(objects: Record<Exclude<NamespaceKind, 'pid' | 'user'>, bigint>): bigint {
    const at = this.alloc('nsproxy');
    for (const [kind, field] of Object.entries(NSPROXY_FIELDS)) this.set('nsproxy', at, field, objects[kind as keyof typeof objects]);
    return at;
  }

  #rootNamespaces(): NsSet {
    const obj = {} as Record<NamespaceKind, bigint>;
    // the root pid namespace is init_pid_ns, in the image, as in the kernel
    for (const kind of Object.keys(NS_TYPES) as NamespaceKind[]) {
      obj[kind] = this.#nsObject(kind, ROOT_INUMS[kind], 'synthetic', kind === 'pid' ? this.symbol('init_pid_ns') : undefined);
    }
    return {
      nsproxy: this.#nsproxy(obj), pidNs: [obj.pid], user: obj.user, uts: obj.uts,
      inums: { ...ROOT_INUMS }, hostname: 'synthetic',
    };
  }

  /** A namespace set: new namespaces of the kinds `inums` names, the rest from `parent`. */
  namespaces(spec: NamespaceSpec = {}): NsSet {
    const parent = spec.parent ?? this.rootNs;
    const inums = { ...parent.inums, ...spec.inums };
    const obj = {} as Record<NamespaceKind, bigint>;
    // the parent's objects, found back from its nsproxy
    for (const [kind, field] of Object.entries(NSPROXY_FIELDS) as [NamespaceKind, string][]) {
      obj[kind] = this.mem.readU64(this.physOf(parent.nsproxy + this.offset('nsproxy', field)));
    }
    obj.pid = parent.pidNs[parent.pidNs.length - 1]!;
    obj.user = parent.user;
    let hostname = parent.hostname;
    for (const kind of Object.keys(spec.inums ?? {}) as NamespaceKind[]) {
      const h = kind === 'uts' ? spec.hostname ?? '' : '';
      obj[kind] = this.#nsObject(kind, inums[kind], h);
      if (kind === 'uts') hostname = Buffer.isBuffer(h) ? h.toString('utf8') : h;
    }
    return {
      nsproxy: this.#nsproxy(obj),
      pidNs: spec.inums?.pid !== undefined ? [...parent.pidNs, obj.pid] : [...parent.pidNs],
      user: obj.user, uts: obj.uts, inums, hostname,
    };
  }

  /** The kernfs_node of a cgroup path ('' or '/' is the root), creating the chain as needed. */
  kernfsNode(path: string): bigint {
    const parts = path.split('/').filter((p) => p.length > 0);
    let key = '';
    let node = this.#kernfs.get(key);
    if (node === undefined) {
      node = this.alloc('kernfs_node');
      this.set('kernfs_node', node, 'name', this.cString(''));
      this.#kernfs.set(key, node);
    }
    for (const part of parts) {
      key += '/' + part;
      let child = this.#kernfs.get(key);
      if (child === undefined) {
        child = this.alloc('kernfs_node');
        this.set('kernfs_node', child, 'parent', node);
        this.set('kernfs_node', child, 'name', this.cString(part));
        this.#kernfs.set(key, child);
      }
      node = child;
    }
    return node;
  }

  /** A css_set whose default-hierarchy cgroup is at `path` (one per path and frozen state). */
  cssSet(path: string, frozen = false): bigint {
    const key = `${frozen ? 'frozen' : 'thawed'}:${path}`;
    let at = this.#cssSets.get(key);
    if (at === undefined) {
      const cgrp = this.alloc('cgroup');
      this.set('cgroup', cgrp, 'kn', this.kernfsNode(path));
      if (frozen) this.set('cgroup', cgrp, 'flags', (1n << 2n) | (1n << 3n));
      at = this.alloc('css_set');
      this.set('css_set', at, 'dfl_cgrp', cgrp);
      this.#cssSets.set(key, at);
    }
    return at;
  }

  /** A cred (shared between tasks with the same ids and user namespace). */
  cred(ids: { uid: number; gid: number; euid: number; egid: number }, userNs: bigint): bigint {
    const key = `${ids.uid}/${ids.gid}/${ids.euid}/${ids.egid}@${userNs}`;
    let at = this.#creds.get(key);
    if (at === undefined) {
      at = this.alloc('cred');
      this.set('cred', at, 'uid.val', ids.uid);
      this.set('cred', at, 'gid.val', ids.gid);
      this.set('cred', at, 'euid.val', ids.euid);
      this.set('cred', at, 'egid.val', ids.egid);
      this.set('cred', at, 'user_ns', userNs);
      this.#creds.set(key, at);
    }
    return at;
  }

  #newDentry(parent: bigint, name: string): bigint {
    const d = this.alloc('dentry');
    this.set('dentry', d, 'd_parent', parent === 0n ? d : parent);
    const bytes = Buffer.from(name, 'utf8');
    this.set('dentry', d, 'd_name.len', bytes.length);
    this.set('dentry', d, 'd_name.name', this.cString(bytes));
    return d;
  }

  /** The dentry of `path` on the root file system, creating the chain as needed. */
  dentry(path: string): bigint {
    let key = '';
    let d = this.rootDentry;
    for (const part of path.split('/').filter((p) => p.length > 0)) {
      key += '/' + part;
      let child = this.#dentries.get(key);
      if (child === undefined) {
        child = this.#newDentry(d, part);
        this.#dentries.set(key, child);
      }
      d = child;
    }
    return d;
  }

  /** A struct file opened at `path` on the root mount. */
  file(path: string): bigint {
    const f = this.alloc('file');
    this.set('file', f, 'f_path.mnt', this.rootMnt);
    this.set('file', f, 'f_path.dentry', this.dentry(path));
    return f;
  }

  // --- tasks -------------------------------------------------------------------------------------

  #pidStruct(pid: number, nsPids: readonly number[], ns: NsSet): bigint {
    const level = nsPids.length;
    if (ns.pidNs.length !== level + 1) {
      throw new Error(`pid ${pid}: ${level + 1} pid numbers for ${ns.pidNs.length} pid-namespace levels`);
    }
    const upid = BigInt(this.profile.typeSize('upid'));
    const at = this.alloc(Number(this.offset('pid', 'numbers') + upid * BigInt(level + 1)));
    this.set('pid', at, 'level', level);
    [pid, ...nsPids].forEach((nr, i) => {
      const u = at + this.offset('pid', 'numbers') + upid * BigInt(i);
      this.set('upid', u, 'nr', nr);
      this.set('upid', u, 'ns', ns.pidNs[i]!);
    });
    // init_task's pid (init_struct_pid) is in no IDR
    if (pid !== 0) this.#hostPids.set(pid, at);
    return at;
  }

  /**
   * Fills the IDR of init_pid_ns (an xarray indexed by host pid) with the struct pid of every task
   * added so far, as alloc_pid() keeps it: nodes of 64 slots, `shift` 0 at the bottom, each inner
   * entry a node pointer tagged 2. Returns the nodes top-down (root first), for tests to damage.
   */
  buildPidIdr(): Array<{ node: bigint; shift: number; base: number }> {
    const nodes: Array<{ node: bigint; shift: number; base: number }> = [];
    const head = this.symbol('init_pid_ns') + this.offset('pid_namespace', 'idr.idr_rt.xa_head');
    const pids = [...this.#hostPids.keys()];
    if (pids.length === 0) { this.writeU64(head, 0n); return nodes; }
    const max = Math.max(...pids);
    let shift = 0;
    while (max >= 64 ** (shift / 6 + 1)) shift += 6;
    const build = (sh: number, base: number): bigint => {
      const node = this.alloc('xa_node');
      nodes.push({ node, shift: sh, base });
      this.set('xa_node', node, 'shift', sh);
      const span = 2 ** sh;
      for (let i = 0; i < 64; i++) {
        const from = base + i * span;
        let entry = 0n;
        if (sh === 0) entry = this.#hostPids.get(from) ?? 0n;
        else if (pids.some((p) => p >= from && p < from + span)) entry = build(sh - 6, from) | 2n;
        if (entry !== 0n) this.writeU64(node + this.offset('xa_node', 'slots') + BigInt(i * 8), entry);
      }
      return node;
    };
    this.writeU64(head, build(shift, 0) | 2n);
    return nodes;
  }

  /** A user address space whose argument area holds `bytes`; returns the pgd (a direct-map address). */
  #userSpace(bytes: Buffer, argLength: number, present: (index: number) => boolean): bigint {
    const firstPage = this.argStart & ~0xfffn;
    const pages = Number((align(this.argStart + BigInt(argLength), KiB4) - firstPage) / KiB4);
    // the top table and those under it down to the PD, then one page table per 2 MiB (the area may straddle one more)
    const tables = this.pagingLevels - 1 + Math.ceil(pages / 512) + 1;
    const region = this.alloc(tables * 4096, KiB4);
    const pt = new PageTableBuilder(this.mem, this.pagingLevels, this.physOf(region));
    for (let i = 0; i < pages; i++) {
      if (!present(i)) continue;
      const va = firstPage + BigInt(i) * KiB4;
      const page = this.alloc(4096, KiB4);
      // the part of the command line that falls in this page
      const from = Number(va - this.argStart);
      const src = bytes.subarray(Math.max(0, from), Math.max(0, from + 4096));
      if (src.length > 0) this.writeBytes(page + BigInt(Math.max(0, -from)), src);
      pt.map(va, this.physOf(page), KiB4, { user: true, nx: true });
    }
    return this.pageOffset + pt.root;
  }

  #mm(spec: TaskSpec): bigint {
    const mm = this.alloc('mm_struct');
    const bytes = cmdlineBytes(spec.cmdline ?? [Buffer.isBuffer(spec.comm) ? spec.comm.toString('utf8') : spec.comm]);
    const argLength = spec.argLength ?? bytes.length;
    this.set('mm_struct', mm, 'pgd', this.#userSpace(bytes, argLength, spec.presentPage ?? (() => true)));
    this.set('mm_struct', mm, 'arg_start', this.argStart);
    this.set('mm_struct', mm, 'arg_end', this.argStart + BigInt(argLength));
    if (spec.exe !== undefined) this.set('mm_struct', mm, 'exe_file', this.file(spec.exe));
    return mm;
  }

  #fillTask(h: TaskHandle, spec: TaskSpec, ns: NsSet, leader: TaskHandle): void {
    const T = 'task_struct';
    const at = h.address;
    const kthread = spec.kernelThread === true;
    this.set(T, at, '__state', spec.state ?? (kthread ? TASK_IDLE : TASK_INTERRUPTIBLE));
    this.set(T, at, 'exit_state', spec.exitState ?? 0);
    this.set(T, at, 'flags', kthread ? PF_KTHREAD : 0x400100);
    this.set(T, at, 'mm', h.mm);
    this.set(T, at, 'pid', spec.pid);
    this.set(T, at, 'tgid', leader.pid);
    this.set(T, at, 'real_parent', (spec.parent ?? this.initTask).address);
    this.set(T, at, 'thread_pid', h.pidStruct);
    // pid->tasks[PIDTYPE_PID] heads the one task using the pid, through task->pid_links[PIDTYPE_PID]
    this.set('pid', h.pidStruct, 'tasks[0].first', at + this.offset(T, 'pid_links[0]'));
    this.set(T, at, 'pid_links[0].pprev', h.pidStruct + this.offset('pid', 'tasks[0]'));
    this.set(T, at, 'start_boottime', spec.startTime ?? BigInt(spec.pid) * 1_000_000n);
    const uid = spec.uid ?? 0;
    const gid = spec.gid ?? 0;
    this.set(T, at, 'real_cred', this.cred({ uid, gid, euid: spec.euid ?? uid, egid: spec.egid ?? gid }, ns.user));
    this.setChars(T, at, 'comm', spec.comm);
    this.set(T, at, 'fs', this.rootFs);
    this.set(T, at, 'nsproxy', ns.nsproxy);
    this.set(T, at, 'signal', h.signal);
    this.set(T, at, 'cgroups', this.cssSet(spec.cgroup ?? '/', spec.frozen));
  }

  /** A new thread-group leader, appended to init_task.tasks. */
  addTask(spec: TaskSpec): TaskHandle {
    const ns = spec.ns ?? this.rootNs;
    const at = this.alloc('task_struct');
    const signal = this.alloc('signal_struct');
    const kthread = spec.kernelThread === true;
    const h: TaskHandle = {
      address: at, pid: spec.pid, tgid: spec.pid,
      tasks: at + this.offset('task_struct', 'tasks'),
      threadNode: at + this.offset('task_struct', 'thread_node'),
      signal, threadHead: signal + this.offset('signal_struct', 'thread_head'),
      pidStruct: this.#pidStruct(spec.pid, spec.nsPids ?? [], ns),
      mm: kthread ? 0n : spec.shareMm ? spec.shareMm.mm : this.#mm(spec),
      group: [],
    };
    h.group.push(h);
    this.#fillTask(h, spec, ns, h);
    this.linkList(h.threadHead, [h.threadNode]);
    // append: tail <-> h <-> head
    const head = this.initTask.tasks;
    const tail = this.taskList.length > 0 ? this.taskList[this.taskList.length - 1]!.tasks : head;
    this.writeU64(tail, h.tasks);
    this.writeU64(h.tasks, head);
    this.writeU64(h.tasks + 8n, tail);
    this.writeU64(head + 8n, h.tasks);
    this.taskList.push(h);
    return h;
  }

  /** A thread of `leader`'s group (same mm, signal, namespaces), appended to its thread list. */
  addThread(leader: TaskHandle, spec: Omit<TaskSpec, 'cmdline' | 'argLength' | 'presentPage' | 'shareMm' | 'exe' | 'kernelThread'>): TaskHandle {
    const ns = spec.ns ?? this.rootNs;
    const at = this.alloc('task_struct');
    const h: TaskHandle = {
      address: at, pid: spec.pid, tgid: leader.pid,
      tasks: at + this.offset('task_struct', 'tasks'),
      threadNode: at + this.offset('task_struct', 'thread_node'),
      signal: leader.signal, threadHead: leader.threadHead,
      pidStruct: this.#pidStruct(spec.pid, spec.nsPids ?? [], ns),
      mm: leader.mm,
      group: leader.group,
    };
    this.#fillTask(h, { parent: this.initTask, ...spec, kernelThread: leader.mm === 0n }, ns, leader);
    leader.group.push(h);
    this.linkList(leader.threadHead, leader.group.map((t) => t.threadNode));
    return h;
  }
}

const NS_TYPES: Record<NamespaceKind, string> = {
  pid: 'pid_namespace', mnt: 'mnt_namespace', uts: 'uts_namespace', net: 'net',
  ipc: 'ipc_namespace', cgroup: 'cgroup_namespace', user: 'user_namespace', time: 'time_namespace',
};

const NSPROXY_FIELDS: Record<Exclude<NamespaceKind, 'pid' | 'user'>, string> = {
  uts: 'uts_ns', ipc: 'ipc_ns', mnt: 'mnt_ns', net: 'net_ns', cgroup: 'cgroup_ns', time: 'time_ns',
};
