/**
 * The known-good kernel from its vmlinux: the image, its patch sites, and the code regions a
 * set of system calls goes through (entry, dispatch, handlers and the functions they call).
 * Loading parses a few tens of MB of tables, so one baseline per vmlinux is kept per process.
 */
import { existsSync } from 'node:fs';
import { VmiError } from '../errors';
import { SYSCALLS_X86_64 } from '../inject/syscalls';
import { KernelImage } from './image';
import { readPatchSites } from './patch-sites';
import { PatchSiteIndex } from './compare';

/**
 * What vmictl's injections call (lib/inject, lib/ops): the default set `check` and `protectFor`
 * watch. A syscall missing here would be a path an attacker could hook unseen: keep it complete.
 */
export const INJECTED_SYSCALLS: readonly string[] = [
  'read', 'write', 'openat', 'openat2', 'close', 'close_range', 'getdents64', 'kill', 'pidfd_open', 'pidfd_send_signal',
  'mmap', 'munmap', 'getpid', 'uname', 'fork', 'clone', 'setns', 'execve', 'exit', 'exit_group', 'wait4',
  'fchmod', 'fcntl', 'fsync', 'lseek', 'newfstatat', 'fstat', 'readlinkat', 'unlinkat', 'mkdirat', 'renameat',
  'symlinkat', 'chdir', 'fchdir', 'chroot', 'dup3', 'pipe2', 'poll', 'getrandom', 'rt_sigprocmask', 'rt_sigaction',
  'setgroups', 'setresuid', 'setresgid', 'setsid', 'ioctl', 'fchown', 'fchownat', 'utimensat', 'linkat',
];

/** Code vmictl never wants followed into: thunks every function calls (covered by the .text check). */
const SHARED = /^(__fentry__|__x86_return_thunk|__x86_indirect_thunk_|__x86_indirect_its_thunk_|__stack_chk_fail|__SCT__)/;

export interface CodeRegion {
  /** Symbol name. */
  name: string;
  /** Link-time address and size. */
  address: bigint;
  size: number;
  /** Why it is watched: the entry path, the dispatch, a handler, or called by a handler. */
  role: 'entry' | 'dispatch' | 'handler' | 'callee';
}

export class KernelBaseline {
  readonly index: PatchSiteIndex;
  readonly #regions = new Map<string, CodeRegion[]>();

  private constructor(readonly image: KernelImage) {
    this.index = new PatchSiteIndex(readPatchSites(image));
  }

  static #cache = new Map<string, KernelBaseline>();

  /** The baseline of a vmlinux file (cached per path). */
  static load(vmlinux: string): KernelBaseline {
    let b = KernelBaseline.#cache.get(vmlinux);
    if (!b) {
      if (!existsSync(vmlinux)) throw new VmiError('EVMLINUX', `no vmlinux at ${vmlinux}`);
      b = new KernelBaseline(KernelImage.open(vmlinux));
      KernelBaseline.#cache.set(vmlinux, b);
    }
    return b;
  }

  #region(name: string, role: CodeRegion['role']): CodeRegion | undefined {
    const s = this.image.symbol(name);
    if (!s) return undefined;
    let size = s.size;
    if (size === 0) {
      // assembly entry points often have no size: up to the next code symbol
      const fns = this.image.functions();
      const next = fns.find((f) => f.address > s.address);
      size = next ? Number(next.address - s.address) : 64;
    }
    return { name, address: s.address, size: Math.min(size, 64 * 1024), role };
  }

  /** The handler symbol of a system call (`__x64_sys_<name>`), or undefined when this kernel has none. */
  handlerOf(syscall: string): string | undefined {
    const n = `__x64_sys_${syscall}`;
    return this.image.symbol(n) ? n : undefined;
  }

  /** The functions a function calls or jumps to directly (from its relocations). */
  calleesOf(region: CodeRegion): string[] {
    const out = new Set<string>();
    for (const r of this.image.relocationsIn(region.address, region.size)) {
      if (r.type !== 2 && r.type !== 4) continue;
      const op = this.image.raw(r.place - 1n, 1)[0];
      if (op !== 0xe8 && op !== 0xe9) continue;
      const f = this.image.functionAt(r.target + 4n);
      if (f && !SHARED.test(f.name) && f.address !== region.address) out.add(f.name);
    }
    return [...out];
  }

  /** Entry, dispatch, the handlers of `syscalls` and their direct callees (deduplicated). */
  regionsFor(syscalls: readonly string[]): CodeRegion[] {
    const key = [...syscalls].sort().join(',');
    const have = this.#regions.get(key);
    if (have) return have;
    const out = new Map<string, CodeRegion>();
    const add = (r: CodeRegion | undefined) => { if (r && !out.has(r.name)) out.set(r.name, r); };
    add(this.#region('entry_SYSCALL_64', 'entry'));
    add(this.#region('do_syscall_64', 'dispatch'));
    add(this.#region('x64_sys_call', 'dispatch'));
    for (const s of syscalls) {
      if (SYSCALLS_X86_64[s] === undefined) throw new VmiError('EUSAGE', `unknown system call ${JSON.stringify(s)}`);
      const h = this.handlerOf(s);
      const region = h ? this.#region(h, 'handler') : undefined;
      if (!region) continue;
      add(region);
      for (const c of this.calleesOf(region)) add(this.#region(c, 'callee'));
    }
    const regions = [...out.values()];
    this.#regions.set(key, regions);
    return regions;
  }

  /** The vmlinux's own linux_banner ("Linux version ..."), without the trailing newline. */
  get banner(): string | undefined {
    const s = this.image.symbol('linux_banner');
    if (!s) return undefined;
    const raw = this.image.raw(s.address, Math.min(Math.max(s.size, 1), 512));
    const end = raw.indexOf(0);
    return raw.subarray(0, end < 0 ? raw.length : end).toString('latin1').trimEnd();
  }

  /**
   * Refuses a vmlinux of another kernel than the guest's: its "known-good" bytes would be
   * someone else's code, and protection would write them into the guest.
   */
  assertMatches(guestBanner: string): void {
    const mine = this.banner;
    if (mine !== undefined && mine !== guestBanner.trimEnd()) {
      throw new VmiError('EVMLINUX', `${this.image.path} is not the guest's kernel: its banner is ${JSON.stringify(mine)}, the guest's ${JSON.stringify(guestBanner.trimEnd())}`);
    }
  }

  /** sys_call_table: link-time address and number of entries. */
  get syscallTable(): { address: bigint; entries: number } {
    const s = this.image.symbol('sys_call_table');
    if (!s) throw new VmiError('EVMLINUX', `${this.image.path} has no sys_call_table`);
    return { address: s.address, entries: Math.max(1, Math.floor(s.size / 8)) };
  }

  /** The name of the code symbol at a link-time address, as `name+0xoff`. */
  describe(addr: bigint): string {
    const f = this.image.functionContaining(addr);
    if (!f || (f.size > 0 && addr >= f.address + BigInt(f.size) + 4096n)) return `0x${addr.toString(16)}`;
    return addr === f.address ? f.name : `${f.name}+0x${(addr - f.address).toString(16)}`;
  }
}

/** The vmlinux to use: the option, $VMICTL_VMLINUX, or $VMICTL_DBG_VMLINUX. */
export function vmlinuxPath(given?: string): string {
  const p = given ?? process.env.VMICTL_VMLINUX ?? process.env.VMICTL_DBG_VMLINUX;
  if (!p) throw new VmiError('EUSAGE', 'the kernel integrity check needs the vmlinux of the guest kernel (linux-image-*-dbg): pass --vmlinux FILE or set VMICTL_VMLINUX');
  return p;
}
