/**
 * A process's own memory (include/linux/mm_types.h): its page table is mm->pgd, a kernel virtual
 * address whose physical page is the root to walk (with KPTI this is the kernel half's pgd, which
 * maps user space too). The command line lies between mm->arg_start and mm->arg_end, the
 * environment between mm->env_start and mm->env_end.
 */
import { MemoryReadError, PageFaultError, ValidationError } from '../../errors';
import type { CallOptions } from '../../util/deadline';
import { AddressSpace } from '../../memory/address-space';
import type { Kernel } from '../kernel';

export const DEFAULT_MAX_CMDLINE = 128 * 1024;

/** The address space of the process whose struct mm_struct is at `mm`. */
export async function mmAddressSpace(kernel: Kernel, mm: bigint, opts: CallOptions = {}): Promise<AddressSpace> {
  const m = await kernel.read('mm_struct', mm, { ...opts, upTo: 'pgd' });
  const pgd = m.ptr('pgd');
  if (!kernel.isKernelPointer(pgd)) throw new ValidationError(`bad mm->pgd 0x${pgd.toString(16)}`, mm);
  const root = (await kernel.space.translate(pgd, opts)).physical;
  return AddressSpace.fromCr3(kernel.physical, root, {
    format: kernel.layout.format,
    keepKptiBit: true,
    name: `mm 0x${mm.toString(16)}`,
  });
}

/**
 * The bytes between two mm_struct fields (arg_start..arg_end, env_start..env_end), read from the
 * process's own address space: at most `max`; a longer range, or one whose pages are not
 * present, is cut there with a warning (the valid part is returned).
 */
async function readMmRange(kernel: Kernel, mm: bigint, from: string, to: string, what: string, opts: CallOptions & { max?: number; warnings?: string[] }): Promise<Buffer> {
  const m = await kernel.read('mm_struct', mm, { ...opts, upTo: to });
  const start = m.u64(from);
  const end = m.u64(to);
  if (end <= start || end > kernel.layout.userTop) return Buffer.alloc(0);
  const max = opts.max ?? DEFAULT_MAX_CMDLINE;
  let length = end - start;
  if (length > BigInt(max)) {
    opts.warnings?.push(`${what} of ${length} bytes cut to ${max}`);
    length = BigInt(max);
  }
  const space = await mmAddressSpace(kernel, mm, opts);
  try {
    return await space.read(start, Number(length), opts);
  } catch (err) {
    if (!(err instanceof PageFaultError || err instanceof MemoryReadError)) throw err;
    // read page by page and keep what is present
    const parts: Buffer[] = [];
    for (let a = start; a < start + length;) {
      const n = Number(((a | 0xfffn) + 1n < start + length ? (a | 0xfffn) + 1n : start + length) - a);
      try { parts.push(await space.read(a, n, opts)); } catch (e) {
        if (!(e instanceof PageFaultError || e instanceof MemoryReadError)) throw e;
        opts.warnings?.push(`${what} page at 0x${a.toString(16)} not present`); break; }
      a += BigInt(n);
    }
    return Buffer.concat(parts);
  }
}

/**
 * `get_cmdline()`: the NUL-separated arguments, read from the process's own address space (at
 * most `max` bytes, see readMmRange()).
 */
export async function readCmdline(kernel: Kernel, mm: bigint, opts: CallOptions & { max?: number; warnings?: string[] } = {}): Promise<string[]> {
  const text = (await readMmRange(kernel, mm, 'arg_start', 'arg_end', 'command line', opts)).toString('utf8');
  const args = text.split('\0');
  // processes that rewrite their argv (busybox init) leave NUL padding: drop the empty tail
  while (args.length > 0 && args[args.length - 1] === '') args.pop();
  return args;
}

/** /proc/<pid>/environ: the NUL-separated environment as the process started with it (at most `max` bytes). */
export function readEnviron(kernel: Kernel, mm: bigint, opts: CallOptions & { max?: number; warnings?: string[] } = {}): Promise<Buffer> {
  return readMmRange(kernel, mm, 'env_start', 'env_end', 'environment', opts);
}
