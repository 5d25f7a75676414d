/**
 * A profile made from the running kernel itself, with no file: symbols from its kallsyms tables
 * and types from its BTF (between __start_BTF and __stop_BTF), both read from guest-physical
 * memory. The result has the same shape as one built from a debug vmlinux, with link-time
 * addresses (runtime minus the virtual slide), so it can be cached and reused after a reboot.
 */
import { VmiError } from '../../errors';
import type { CallOptions } from '../../util/deadline';
import type { PhysicalMemory, PhysicalRange } from '../../memory/physical';
import { parseBtf } from '../btf/parse';
import { btfToModel } from '../btf/model';
import { findKallsyms, type GuestKallsyms } from '../kallsyms/scan';
import { START_KERNEL_MAP } from '../kaslr';
import { modelToIsf, producerVersion } from './build';
import { ISF_FORMAT, dict, type IsfDocument, type IsfSymbol } from './isf';
import { normalizeBanner } from './profile';
import { stepper, type StepProgress } from '../../util/steps';

/** Larger than any vmlinux BTF (6.x: about 5 MiB). */
const MAX_BTF = 64 * 1024 * 1024;

export interface MemoryProfileStats {
  symbols: number;
  userTypes: number;
  enums: number;
  btfBytes: number;
  btfTypes: number;
  banner: string;
  virtualSlide: bigint;
  seconds: { kallsyms: number; btf: number; total: number };
}

export interface MemoryProfile {
  doc: IsfDocument;
  stats: MemoryProfileStats;
  kallsyms: GuestKallsyms;
}

export class NoBtfError extends VmiError {
  constructor(message: string) {
    super('ENOBTF', message);
  }
}

/**
 * The link-time address of a decoded symbol: kernel-image addresses move with KASLR, absolute ones
 * (per-CPU offsets such as `cpu_number`, stored as themselves) do not.
 */
export function linkTime(ks: GuestKallsyms, address: bigint): bigint {
  return address >= START_KERNEL_MAP ? address - ks.virtualSlide : address;
}

/** Builds the profile of the kernel running in `phys`; see the file comment. */
export async function buildProfileFromMemory(phys: PhysicalMemory, ram: readonly PhysicalRange[], opts: CallOptions & { onProgress?: StepProgress } = {}): Promise<MemoryProfile> {
  const next = stepper(['finding kallsyms', 'reading BTF', 'symbols and linux_banner'], opts.onProgress);
  const t0 = process.hrtime.bigint();
  next();
  const ks = await findKallsyms(phys, ram, opts);
  const t1 = process.hrtime.bigint();
  const text = ks.byName.get('_text')!.address;
  // the image is physically contiguous from _text
  const physOf = (virt: bigint) => ks.kaslr.physicalBase + (virt - text);
  const start = ks.byName.get('__start_BTF')?.address;
  const stop = ks.byName.get('__stop_BTF')?.address;
  if (start === undefined || stop === undefined) throw new NoBtfError('the kernel has no BTF (__start_BTF/__stop_BTF not in kallsyms; CONFIG_DEBUG_INFO_BTF is off)');
  if (stop <= start || stop - start > BigInt(MAX_BTF)) throw new NoBtfError(`implausible BTF bounds 0x${start.toString(16)}..0x${stop.toString(16)}`);
  next();
  const blob = await phys.read(physOf(start), Number(stop - start), opts);
  const btf = parseBtf(blob);
  const model = btfToModel(btf);
  const { base_types, user_types, enums } = modelToIsf(model);
  const t2 = process.hrtime.bigint();
  next();

  const symbols = dict<IsfSymbol>();
  for (const [name, e] of ks.byName) {
    const v = model.variables.get(name);
    symbols[name] = { address: linkTime(ks, e.address), type: v ? v.type : { kind: 'base', name: 'void' } };
  }
  const bannerBytes = await phys.read(physOf(ks.byName.get('linux_banner')!.address), 1024, opts);
  const nul = bannerBytes.indexOf(0);
  const banner = nul >= 0 ? bannerBytes.subarray(0, nul + 1) : bannerBytes;
  symbols.linux_banner.constant_data = banner.toString('base64');
  symbols.linux_banner.type = { kind: 'array', count: banner.length, subtype: { kind: 'base', name: 'char' } };

  const doc: IsfDocument = {
    metadata: {
      format: ISF_FORMAT,
      producer: { name: 'vmictl', version: producerVersion(), datetime: new Date().toISOString() },
      linux: { symbols: [{ name: 'kallsyms (guest memory)' }], types: [{ name: 'BTF (guest memory)' }] },
    },
    base_types,
    user_types,
    enums,
    symbols,
  };
  const sec = (a: bigint, b: bigint) => Number(b - a) / 1e9;
  return {
    doc,
    kallsyms: ks,
    stats: {
      symbols: ks.byName.size,
      userTypes: Object.keys(user_types).length,
      enums: Object.keys(enums).length,
      btfBytes: blob.length,
      btfTypes: btf.types.length - 1,
      banner: normalizeBanner(banner.toString('latin1')),
      virtualSlide: ks.virtualSlide,
      seconds: { kallsyms: sec(t0, t1), btf: sec(t1, t2), total: sec(t0, process.hrtime.bigint()) },
    },
  };
}
