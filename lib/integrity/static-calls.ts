/**
 * Static calls the running kernel pointed into modules. static_call_update() rewrites every site
 * of a key, and its trampoline, to call the key's new function; when a module registers one (KVM
 * sets perf's guest-state callbacks to its own), those sites call into module text, which no
 * vmlinux can predict. Such a site is legitimate when its target is what the key's `func` holds
 * and that lies in the text of a module on the modules list: a hidden module's code never is.
 */
import type { CallOptions } from '../util/deadline';
import type { Kernel } from '../kernel/kernel';
import { moduleTexts } from '../kernel/helpers/module';
import type { KernelBaseline } from './baseline';

/** Each static_call_key (link-time address) whose `func` is a listed module's code, to that function. */
export async function moduleStaticCalls(kernel: Kernel, base: KernelBaseline, opts: CallOptions = {}): Promise<Map<bigint, bigint>> {
  const out = new Map<bigint, bigint>();
  const p = kernel.profile;
  if (!p.hasField('static_call_key', 'func')) return out;
  const texts = await moduleTexts(kernel, opts);
  if (texts.length === 0) return out;
  const func = BigInt(p.fieldOffset('static_call_key', 'func'));
  const slide = kernel.kaslr.virtualSlide;
  const keys = new Set<bigint>();
  for (const s of base.index.sites) if (s.kind === 'static_call' && s.key !== undefined) keys.add(s.key);
  for (const key of keys) {
    const target = await kernel.readU64(key + slide + func, opts);
    if (texts.some((t) => target >= t.start && target < t.end)) out.set(key, target);
  }
  return out;
}
