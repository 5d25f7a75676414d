/**
 * Loaded modules as `lsmod` sees them: the `modules` list (kernel/module/main.c), and where each
 * one's executable code lies. The layout is found from the profile's shape: `module.mem[]`, one
 * `module_memory` per mod_mem_type (6.4+, MOD_TEXT read from the enum), or `module.core_layout`
 * with its text_size (before).
 */
import type { CallOptions } from '../../util/deadline';
import type { Kernel } from '../kernel';
import { listForEachEntry } from './list';
import { isFatalReadError } from '../../errors';

/** A module's core text, [start, end) (run-time addresses). */
export interface ModuleText {
  module: bigint;
  start: bigint;
  end: bigint;
}

/** Most modules a walk yields: no kernel loads more, a corrupt list could loop for good. */
const MAX_MODULES = 10_000;
/** Most text one module may claim; a bigger size is corrupt (the module area itself is 1 GiB or so). */
const MAX_MODULE_TEXT = 1n << 30n;

/** The struct module of every module on the `modules` list (a corrupt list ends the walk early). */
export async function forEachModule(kernel: Kernel, opts: CallOptions = {}): Promise<bigint[]> {
  const out: bigint[] = [];
  for await (const m of listForEachEntry(kernel, kernel.symbol('modules'), 'module', 'list', { ...opts, max: MAX_MODULES, onCorruption: () => undefined })) out.push(m);
  return out;
}

/** Where the core text of each listed module lies; a module whose layout reads as nonsense is left out. */
export async function moduleTexts(kernel: Kernel, opts: CallOptions = {}): Promise<ModuleText[]> {
  const p = kernel.profile;
  let at: bigint, struct: string, sizeField: string;
  if (p.hasField('module', 'mem') && p.hasType('module_memory')) {
    struct = 'module_memory';
    sizeField = 'size';
    at = BigInt(p.fieldOffset('module', 'mem') + p.typeSize(struct) * Number(p.enumConstant('mod_mem_type', 'MOD_TEXT')));
  } else if (p.hasField('module', 'core_layout')) {
    struct = 'module_layout';
    sizeField = 'text_size';
    at = BigInt(p.fieldOffset('module', 'core_layout'));
  } else return [];
  const base = p.fieldOffset(struct, 'base');
  const size = p.field(struct, sizeField);
  const sizeWidth = size.size;
  const span = Math.max(base + 8, size.offset + sizeWidth);
  const out: ModuleText[] = [];
  for (const module of await forEachModule(kernel, opts)) {
    // a struct module that cannot be read is one of a corrupt list's: it has no text to offer
    const bytes = await kernel.space.read(module + at, span, opts).catch((e: unknown) => { if (isFatalReadError(e)) throw e; return null; });
    if (!bytes) continue;
    const start = bytes.readBigUInt64LE(base);
    const length = sizeWidth === 4 ? BigInt(bytes.readUInt32LE(size.offset)) : bytes.readBigUInt64LE(size.offset);
    if (!kernel.isKernelPointer(start) || length === 0n || length > MAX_MODULE_TEXT) continue;
    out.push({ module, start, end: start + length });
  }
  return out;
}
