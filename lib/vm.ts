/**
 * A VM as vmictl sees it: a live QEMU (QMP, plus the gdbstub when needed) or an ELF dump, its
 * guest-physical memory through the fastest backend allowed, and the guest kernel found in it.
 * This is the library's entry point; every command goes through it.
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { isFatalReadError, ProfileMismatchError, VmiError } from './errors';
import { scanForBanner } from './kernel/kaslr';
import type { CallOptions } from './util/deadline';
import { GdbStubBusyError, QmpClient, startGdbStub } from './transport/qmp';
import { GdbClient } from './transport/gdb';
import { ElfDumpMemory, GdbstubPhysicalMemory, openProcMem, PageCache, parseMtreeFlat, type PhysicalMemory, type PhysicalRange } from './memory';
import { Kernel } from './kernel/kernel';
import { ReadBudgetMemory } from './memory/read-budget';
import { listProfiles, Profile } from './kernel/profile';
import { listContainers, type ContainerList } from './containers/list';
import { autoProfileKernel, defaultProfileCache } from './kernel/profile/auto';
import type { CollectOptions } from './containers/collect';
import type { Container } from './containers/model';
import { openInjection, type InjectionOptions, type InjectionSession, type InjectionTargetSpec } from './inject';
import { fanOutSignal } from './util/fan-out';
import { RunState } from './target/run-state';


/** How long an ack of ours takes to reach QEMU's stub, at most, on a loaded machine; and how often to retry. */
const SETTLE_MS = 20;
const SETTLE_ROUNDS = 8;
export type MemoryBackendChoice = 'auto' | 'gdbstub' | 'procmem';

export interface VmConnectOptions extends CallOptions {
  /** QMP socket of a running QEMU (unix:/path or tcp:127.0.0.1:PORT). */
  qmp?: string;
  /** gdbstub socket; when absent and needed, one is started through QMP and stopped at close(). */
  gdb?: string;
  /** An ELF dump from dump-guest-memory instead of a live VM (read-only). */
  dump?: string;
  /** A profile file to use; otherwise the one matching the banner from `profileDirs`. */
  profile?: string;
  profileDirs?: string[];
  memory?: MemoryBackendChoice;
  /**
   * Where profiles built from guest memory are cached (default $XDG_CACHE_HOME/vmictl or
   * ~/.cache/vmictl), and under its `packed/` the packed form of large profile files, which
   * the next process loads instead of parsing the JSON again; false: neither.
   */
  profileCache?: string | false;
  /** One-line notices for the user (fallbacks taken). */
  onNotice?: (message: string) => void;
  /** Most guest memory read from the backend over the Vm's life (bytes); LimitExceededError beyond. */
  maxReadBytes?: number;
  /**
   * What every injection on this VM runs behind unless it names its own (lib/integrity's
   * operationGuard: the kernel paths checked and, where tampered, restored for the operation).
   */
  protect?: InjectionOptions['protect'];
}

/** 8 GiB: far above what a command needs on a real guest, but a bound on a hostile one. */
export const DEFAULT_MAX_READ_BYTES = 8 * 1024 ** 3;

/** Where profiles are looked for: the project's profiles/, $VMICTL_PROFILES, ~/.config/vmictl/profiles. */
export function defaultProfileDirs(): string[] {
  const dirs = [resolve(__dirname, '../../profiles'), resolve(__dirname, '../profiles')];
  if (process.env.VMICTL_PROFILES) dirs.unshift(...process.env.VMICTL_PROFILES.split(':').filter(Boolean));
  dirs.push(join(process.env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'vmictl', 'profiles'));
  return dirs;
}

export class Vm {
  #gdb: GdbClient | undefined;
  #gdbStub: { address: string; stop(): Promise<void> } | undefined;
  #gdbMemory: GdbstubPhysicalMemory | undefined;
  #memory: PageCache | undefined;
  #rawBackend: PhysicalMemory | undefined;
  #kernel: Promise<Kernel> | undefined;
  #pausedByUs = false;
  /** The VM is to be left running at close(): we stopped it or restarted it, and nobody said otherwise. */
  #leaveRunning = false;
  #closed = false;
  #accelerator: Promise<'kvm' | 'tcg'> | undefined;
  /** Every stop, cont and query-status goes through it; undefined for a dump. */
  readonly runState: RunState | undefined;

  private constructor(
    readonly options: VmConnectOptions,
    readonly qmp: QmpClient | undefined,
    readonly dump: ElfDumpMemory | undefined,
  ) {
    this.runState = qmp ? new RunState(qmp) : undefined;
  }

  static async connect(opts: VmConnectOptions): Promise<Vm> {
    if (opts.dump) return new Vm(opts, undefined, await ElfDumpMemory.open(opts.dump));
    if (!opts.qmp) throw new VmiError('EUSAGE', 'no VM given: pass --qmp ADDR (or VMICTL_QMP), or --dump FILE');
    const qmp = await QmpClient.connect(opts.qmp, { timeout: opts.timeout ?? 15_000, signal: opts.signal });
    return new Vm(opts, qmp, undefined);
  }

  get live(): boolean {
    return this.qmp !== undefined;
  }

  /** The gdbstub client, connecting (or starting the stub through QMP) on first use. */
  async gdb(): Promise<GdbClient> {
    if (this.#gdb) return this.#gdb;
    if (!this.qmp) throw new VmiError('EUSAGE', 'a dump has no gdbstub: this needs a live VM');
    await this.pause();
    let address = this.options.gdb;
    if (!address) {
      try {
        this.#gdbStub = await startGdbStub(this.qmp, { signal: this.options.signal });
        address = this.#gdbStub.address;
      } catch (err) {
        // QEMU serves one gdbstub: reuse the VM's own when it listens where we may go (unix or loopback)
        const reuse = err instanceof GdbStubBusyError && reusableStub(err.existing);
        if (!reuse) throw err;
        this.options.onNotice?.(`using the VM's own gdbstub at ${reuse}`);
        address = reuse;
      }
    }
    this.#gdb = await GdbClient.connect(address, { timeout: this.options.timeout ?? 15_000, signal: this.options.signal });
    return this.#gdb;
  }

  /** Stops the vCPUs so memory holds still; resume() restarts them only if we stopped them. */
  async pause(): Promise<void> {
    if (!this.runState) return;
    if (await this.runState.stop()) {
      this.#pausedByUs = true;
      this.#leaveRunning = true;
    }
  }

  /**
   * QEMU 7.2's stub has no no-ack mode, and any byte it reads while the VM runs stops it. The ack
   * of the stub's last reply can be read after our `cont`; the stop it makes sends us a stop
   * packet, whose ack can stop the VM again. Each round is over once that ack is read with the VM
   * stopped, so: wait a moment, and continue again while it was stopped so (a few rounds at most).
   */
  async #settleRunning(): Promise<void> {
    for (let round = 0; round < SETTLE_ROUNDS; round++) {
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      // only a pause is ours to undo (a guest panic, shutdown or a debug stop is not)
      if (!(await this.runState!.contIfPaused())) return;
    }
    this.options.onNotice?.(`the VM kept stopping after it was resumed (its gdbstub reads our acks as interrupts); it may be left paused`);
  }

  /** Leaves the VM stopped at close(): a thread is hijacked and only `vmictl recover` can put it back. */
  keepStopped(): void {
    this.#pausedByUs = false;
    this.#leaveRunning = false;
  }

  async resume(): Promise<void> {
    this.#memory?.invalidate();
    if (this.#kernel) (await this.#kernel.catch(() => undefined))?.invalidate();
    if (this.runState && this.#pausedByUs) {
      this.#pausedByUs = false;
      this.#leaveRunning = true;
      await this.runState.cont();
      if (this.#gdb) await this.#settleRunning();
    }
  }

  /**
   * resume(), then continue the VM from any stop, not only ours (a breakpoint's debug stop, another
   * client's pause): for an operation whose end is to leave the VM running.
   */
  async resumeWhoeverStopped(): Promise<void> {
    await this.resume();
    await this.runState?.contIfStopped();
  }

  /**
   * How the vCPUs run: 'kvm' (hardware: 4 debug registers, real breakpoints) or 'tcg' (QEMU's
   * translator; any other accelerator counts as that, as gdbstub debugging goes through it the same way).
   */
  accelerator(): Promise<'kvm' | 'tcg'> {
    if (!this.qmp) return Promise.reject(new VmiError('EUSAGE', 'a dump has no accelerator: this needs a live VM'));
    this.#accelerator ??= this.qmp.execute('query-kvm').then((r) => ((r as { enabled?: boolean }).enabled ? 'kvm' : 'tcg'));
    return this.#accelerator;
  }

  /** Guest RAM ranges (from QEMU's memory map, or the dump's segments). */
  async ram(): Promise<PhysicalRange[]> {
    if (this.dump) return this.dump.ram();
    const regions = parseMtreeFlat(await this.qmp!.hmp('info mtree -f')).filter((r) => r.kind === 'ram');
    return regions.map((r) => ({ address: r.start, length: Number(r.end - r.start) }));
  }

  /** Guest-physical memory through the chosen backend, with a page cache valid while paused. */
  async memory(): Promise<PageCache> {
    if (this.#memory) return this.#memory;
    let backend: PhysicalMemory;
    if (this.dump) backend = this.dump;
    else {
      await this.pause();
      const choice = this.options.memory ?? 'auto';
      let proc: PhysicalMemory | null = null;
      if (choice !== 'gdbstub') {
        const r = await openProcMem(this.qmp!);
        if (r.memory) proc = r.memory;
        else if (choice === 'procmem') throw new VmiError('EMEMBACKEND', `the local fast path is not available: ${r.reason}`);
        else this.options.onNotice?.(`reading guest memory through the gdbstub (local fast path unavailable: ${r.reason})`);
      }
      if (proc) backend = proc;
      else {
        this.#gdbMemory = await GdbstubPhysicalMemory.open(await this.gdb());
        backend = this.#gdbMemory;
      }
    }
    this.#rawBackend = backend;
    // over the gdbstub a prefetch is paid by the byte (hex in packets): only the sectors wanted
    const prefetchSectors = backend instanceof GdbstubPhysicalMemory;
    this.#memory = new PageCache(new ReadBudgetMemory(backend, this.options.maxReadBytes ?? DEFAULT_MAX_READ_BYTES), { prefetchSectors });
    return this.#memory;
  }

  /** The profile: the file given, or the one whose banner matches, found by trying each. */
  async #profile(memory: PageCache, ram: PhysicalRange[]): Promise<Kernel> {
    const signal = this.options.signal;
    if (this.options.profile) {
      const cache = this.options.profileCache ?? defaultProfileCache();
      const profile = Profile.load(this.options.profile, packedCacheOf(cache));
      try {
        return await Kernel.open(memory, profile, { ram, signal });
      } catch (err) {
        if (!(err instanceof VmiError) || err.code !== 'EKASLR') throw err;
        const running = await scanForBanner(memory, ram, { signal });
        if (running !== null && running === profile.banner) {
          throw new VmiError('EPROFILE', `the profile ${profile.source} has the running kernel's banner, but its symbols do not fit this build (${err.message})`);
        }
        throw new ProfileMismatchError(profile.banner ?? '(profile has no banner)', running ?? '(no Linux banner found in guest memory)');
      }
    }
    const dirs = this.options.profileDirs ?? defaultProfileDirs();
    const cache = this.options.profileCache ?? defaultProfileCache();
    try {
      return await findKernel(memory, ram, cache ? [...dirs, cache] : dirs, packedCacheOf(cache), signal);
    } catch (err) {
      if (!(err instanceof VmiError) || (err.code !== 'EPROFILE' && err.code !== 'ENOPROFILE')) throw err;
      if (cache) {
        // no file fits: the kernel's own kallsyms and BTF make the profile
        try {
          return await autoProfileKernel(memory, ram, cache, { signal, onNotice: this.options.onNotice });
        } catch (autoErr) {
          if (isFatalReadError(autoErr)) throw autoErr;
          err.message += `; building one from guest memory failed too: ${(autoErr as Error).message}`;
        }
      }
      const running = await scanForBanner(memory, ram, { signal });
      throw new VmiError(err.code, `${err.message}; the guest runs ${JSON.stringify(running ?? 'no recognisable Linux kernel')}`);
    }
  }

  /** The guest kernel (KASLR found, profile chosen, init_task checked); cached. */
  async kernel(): Promise<Kernel> {
    this.#kernel ??= (async () => {
      const memory = await this.memory();
      return this.#profile(memory, await this.ram());
    })();
    return this.#kernel;
  }

  /** Every container (and the host), read from the guest kernel with the VM paused. */
  async listContainers(opts: CollectOptions = {}): Promise<ContainerList> {
    const kernel = await this.kernel();
    const fanned = fanOutSignal(opts.signal ?? this.options.signal);
    try {
      return await listContainers(kernel, { ...opts, signal: fanned.signal });
    } finally {
      fanned.release();
    }
  }

  /** `for await (const c of vm.containers())`: the containers of the VM. */
  async *containers(opts: CollectOptions = {}): AsyncGenerator<Container> {
    yield* (await this.listContainers(opts)).containers;
  }

  /**
   * Catches a thread of the target for syscall injection: `await using s = await vm.inject({ container: 'web' })`.
   * The session holds the VM stopped between calls; ending it restores the thread and resumes the VM.
   */
  inject(target: InjectionTargetSpec, opts: InjectionOptions = {}): Promise<InjectionSession> {
    return openInjection(this, target, { signal: this.options.signal, ...opts });
  }

  /** Disconnects; restarts the VM if we stopped it, and stops a gdbstub we started. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const errors: unknown[] = [];
    const attempt = async (f: () => Promise<unknown>) => { try { await f(); } catch (e) { errors.push(e); } };
    const backend = this.#rawBackend;
    // the /proc/<tid>/mem backend holds a file descriptor of its own
    if (backend && backend !== this.#gdbMemory && backend !== this.dump) await attempt(async () => backend.close?.());
    if (this.#gdbMemory) {
      // any byte QEMU's stub receives while the VM runs stops it, and leaving physical mode is
      // such a byte: a VM the caller resumed (after an injection, between two reads) is held for
      // that packet and let go again, not left stopped
      const running = this.runState && !this.#pausedByUs && (await this.runState.running().catch(() => false));
      if (running) await attempt(() => this.pause());
      await attempt(() => this.#gdbMemory!.close());
    }
    if (this.#gdb) await attempt(() => this.#gdb!.close());
    if (this.#gdbStub) await attempt(() => this.#gdbStub!.stop());
    if (this.qmp) {
      await attempt(() => this.resume());
      // with the gdbstub connection gone no late byte can stop the VM again: one that did (an ack
      // QEMU read after our last `cont`, the disconnect) is undone here, once and for all
      if (this.#leaveRunning) await attempt(() => this.runState!.contIfPaused());
      await attempt(() => this.qmp!.close());
    }
    if (this.dump) await attempt(() => this.dump!.close());
    if (errors.length) throw errors[0];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** `unix:/path,server=on` or `tcp:127.0.0.1:1234,...` as a connectable address; null for anything else. */
function reusableStub(chardev: string): string | null {
  const spec = chardev.split(',')[0];
  if (/^unix:\//.test(spec)) return spec;
  if (/^tcp:(127\.0\.0\.1|localhost):\d+$/.test(spec)) return spec;
  return null;
}

/**
 * Tries the profiles in `dirs` until one finds its own kernel in memory: the banner of the running
 * kernel is only known once a profile has told where to look for it.
 */
/** Profile.load's options for a profile cache directory (or none). */
function packedCacheOf(cache: string | false): { packedCache?: string } {
  return cache ? { packedCache: join(cache, 'packed') } : {};
}

async function findKernel(memory: PhysicalMemory, ram: PhysicalRange[], dirs: string[], load: { packedCache?: string }, signal?: AbortSignal): Promise<Kernel> {
  const candidates = listProfiles(dirs);
  if (candidates.length === 0) {
    throw new VmiError('ENOPROFILE', `no kernel profile found in ${dirs.join(', ')} (make one with 'vmictl profile build')`);
  }
  const tried: string[] = [];
  for (const c of candidates) {
    const profile = Profile.load(c.path, load);
    try {
      return await Kernel.open(memory, profile, { ram, signal });
    } catch (err) {
      if (err instanceof VmiError && (err.code === 'EKASLR' || err.code === 'EINVALID')) {
        tried.push(`${c.path} (${profile.banner ?? 'no banner'})`);
        continue;
      }
      throw err;
    }
  }
  throw new VmiError('EPROFILE', `none of the profiles fits the running kernel; tried: ${tried.join('; ')}`);
}
