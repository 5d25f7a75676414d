/**
 * A process's own memory (include/linux/mm_types.h): its page table is mm->pgd, a kernel virtual
 * address whose physical page is the root to walk (with KPTI this is the kernel half's pgd, which
 * maps user space too). The command line lies between mm->arg_start and mm->arg_end.
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
 * `get_cmdline()`: the NUL-separated arguments, read from the process's own address space. At most
 * `max` bytes are read; a longer command line, or one whose pages are not present, is cut there
 * with a warning (the valid part is returned).
 */
export async function readCmdline(kernel: Kernel, mm: bigint, opts: CallOptions & { max?: number; warnings?: string[] } = {}): Promise<string[]> {
  const m = await kernel.read('mm_struct', mm, { ...opts, upTo: 'arg_end' });
  const start = m.u64('arg_start');
  const end = m.u64('arg_end');
  if (end <= start || end > kernel.layout.userTop) return [];
  const max = opts.max ?? DEFAULT_MAX_CMDLINE;
  let length = end - start;
  if (length > BigInt(max)) {
    opts.warnings?.push(`command line of ${length} bytes cut to ${max}`);
    length = BigInt(max);
  }
  const space = await mmAddressSpace(kernel, mm, opts);
  let bytes: Buffer;
  try {
    bytes = await space.read(start, Number(length), opts);
  } catch (err) {
    if (!(err instanceof PageFaultError || err instanceof MemoryReadError)) throw err;
    // read page by page and keep what is present
    const parts: Buffer[] = [];
    for (let a = start; a < start + length;) {
      const n = Number(((a | 0xfffn) + 1n < start + length ? (a | 0xfffn) + 1n : start + length) - a);
      try { parts.push(await space.read(a, n, opts)); } catch (e) {
        if (!(e instanceof PageFaultError || e instanceof MemoryReadError)) throw e;
        opts.warnings?.push(`command line page at 0x${a.toString(16)} not present`); break; }
      a += BigInt(n);
    }
    bytes = Buffer.concat(parts);
  }
  const text = bytes.toString('utf8');
  const args = text.split('\0');
  // processes that rewrite their argv (busybox init) leave NUL padding: drop the empty tail
  while (args.length > 0 && args[args.length - 1] === '') args.pop();
  return args;
}
