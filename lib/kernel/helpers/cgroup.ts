/**
 * Cgroups of a task (kernel/cgroup/cgroup.c, include/linux/cgroup-defs.h): task->cgroups is a
 * css_set; its dfl_cgrp is the task's cgroup on the v2 (default) hierarchy, and its cgrp_links
 * list holds one cgrp_cset_link per mounted hierarchy, v1 ones included, as proc_cgroup_show()
 * walks them for /proc/<pid>/cgroup.
 */
import { ValidationError } from '../../errors';
import type { CallOptions } from '../../util/deadline';
import type { Kernel } from '../kernel';
import { kernfsPath, prefetchKernfsPaths } from './kernfs';
import { listForEachEntry } from './list';
import { readU64LE } from '../../util/bytes';

/** Most hierarchies a css_set may link to (the kernel allows 16 v1 roots plus the default one). */
const MAX_LINKS = 64;
const MAX_NAME = 64;

/** Whether the profile describes v1 hierarchies (css_set.cgrp_links and cgroup_root). */
export function hasCgroupV1(kernel: Kernel): boolean {
  const p = kernel.profile;
  return p.hasField('css_set', 'cgrp_links') && p.hasField('cgrp_cset_link', 'cgrp') && p.hasField('cgroup', 'root') &&
    p.hasField('cgroup_root', 'subsys_mask') && kernel.hasSymbol('cgrp_dfl_root');
}

/** `cgroup_path(cgrp)`: the path of a struct cgroup * in its hierarchy. */
export async function cgroupPath(kernel: Kernel, cgrp: bigint, opts: CallOptions = {}): Promise<string> {
  const c = await kernel.read('cgroup', cgrp, { ...opts, upTo: 'kn' });
  return kernfsPath(kernel, c.ptr('kn'), opts);
}

/**
 * The v1 hierarchies a css_set (struct css_set *) belongs to, as /proc/<pid>/cgroup names them
 * ("cpu,cpuacct", "name=systemd") → the path in each. Empty where only cgroup2 is mounted.
 */
export async function cgroupV1Paths(kernel: Kernel, cset: bigint, opts: CallOptions = {}): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  if (!hasCgroupV1(kernel)) return out;
  const p = kernel.profile;
  const dfl = kernel.symbol('cgrp_dfl_root');
  const head = cset + BigInt(p.fieldOffset('css_set', 'cgrp_links'));
  for await (const link of listForEachEntry(kernel, head, 'cgrp_cset_link', 'cgrp_link', { ...opts, max: MAX_LINKS })) {
    const l = await kernel.read('cgrp_cset_link', link, { ...opts, upTo: 'cgrp' });
    const cgrp = l.ptr('cgrp');
    if (!kernel.isKernelPointer(cgrp)) throw new ValidationError(`bad cgrp_cset_link->cgrp 0x${cgrp.toString(16)}`, link);
    const root = (await kernel.read('cgroup', cgrp, { ...opts, upTo: 'root' })).ptr('root');
    if (root === dfl) continue;
    if (!kernel.isKernelPointer(root)) throw new ValidationError(`bad cgroup->root 0x${root.toString(16)}`, cgrp);
    out[await hierarchyName(kernel, root, opts)] = await cgroupPath(kernel, cgrp, opts);
  }
  return out;
}

/**
 * Brings into the cache what cgroupV1Paths() and the v2 paths will read for every css_set of
 * `csets`: their cgrp_links lists (walked in step, one batch per position on the lists), the
 * cgroups linked and their roots, and the kernfs nodes of every cgroup (with prefetchKernfsPaths).
 * `cgroups` are v2 cgroups (struct cgroup *) whose paths will be wanted too. Best effort and
 * bounded: the walks that follow check everything.
 */
export async function prefetchCgroupPaths(kernel: Kernel, csets: Iterable<bigint>, cgroups: Iterable<bigint>, opts: CallOptions = {}): Promise<void> {
  const p = kernel.profile;
  const cgrps = new Set<bigint>([...cgroups].filter((c) => kernel.isKernelPointer(c)));
  if (hasCgroupV1(kernel)) {
    const linksOff = BigInt(p.fieldOffset('css_set', 'cgrp_links'));
    const linkOff = BigInt(p.fieldOffset('cgrp_cset_link', 'cgrp_link'));
    const cgrpOff = BigInt(p.fieldOffset('cgrp_cset_link', 'cgrp'));
    const start = linkOff < cgrpOff ? linkOff : cgrpOff;
    const linkLen = Number((linkOff + 16n > cgrpOff + 8n ? linkOff + 16n : cgrpOff + 8n) - start);
    // one cursor per list: [head, current entry]
    let cursors: Array<[bigint, bigint]> = [];
    const heads = [...new Set(csets)].filter((c) => kernel.isKernelPointer(c)).map((c) => c + linksOff);
    await kernel.prefetch(heads.map((address) => ({ address, length: 16 })), opts);
    for (const h of heads) {
      const b = kernel.space.peek(h, 8);
      if (b) cursors.push([h, readU64LE(b, 0)]);
    }
    const seen = new Set<bigint>();
    for (let step = 0; cursors.length > 0 && step < MAX_LINKS; step++) {
      cursors = cursors.filter(([h, cur]) => cur !== h && kernel.isKernelPointer(cur) && !seen.has(cur));
      for (const [, cur] of cursors) seen.add(cur);
      await kernel.prefetch(cursors.map(([, cur]) => ({ address: cur - linkOff + start, length: linkLen })), opts);
      const next: Array<[bigint, bigint]> = [];
      for (const [h, cur] of cursors) {
        const b = kernel.space.peek(cur - linkOff + start, linkLen);
        if (!b) continue;
        cgrps.add(readU64LE(b, Number(cgrpOff - start)));
        next.push([h, readU64LE(b, Number(linkOff - start))]);
      }
      cursors = next;
    }
  }
  const cgLen = (field: string) => p.fieldOffset('cgroup', field) + 8;
  const len = Math.max(cgLen('kn'), hasCgroupV1(kernel) ? cgLen('root') : 0, p.hasField('cgroup', 'flags') ? cgLen('flags') : 0);
  const list = [...cgrps].filter((c) => kernel.isKernelPointer(c));
  await kernel.prefetch(list.map((address) => ({ address, length: len })), opts);
  const kns: bigint[] = [];
  for (const c of list) {
    const cg = kernel.peek('cgroup', c, { size: len });
    if (cg) kns.push(cg.ptr('kn'));
  }
  await prefetchKernfsPaths(kernel, kns, opts);
}

/** "cpu,cpuacct" or "name=systemd" (or both, comma-separated) for a struct cgroup_root *. */
async function hierarchyName(kernel: Kernel, root: bigint, opts: CallOptions): Promise<string> {
  const cache = derived<bigint, string>(kernel, 'cgroup-root-name');
  const hit = cache.get(root);
  if (hit !== undefined) return hit;
  const r = await kernel.read('cgroup_root', root, { ...opts, upTo: 'name' });
  const mask = Number(r.uint('subsys_mask'));
  const names = await subsystemNames(kernel, opts);
  const parts = names.filter((_, i) => (mask >> i) & 1);
  const own = r.chars('name');
  if (own) parts.push(`name=${own}`);
  const name = parts.join(',') || `hierarchy-${r.u32('hierarchy_id')}`;
  cache.set(root, name);
  return name;
}

/** `cgroup_subsys[i]->name` for every compiled-in controller, in subsystem id order. */
async function subsystemNames(kernel: Kernel, opts: CallOptions): Promise<string[]> {
  const cached = kernel.cache.get('cgroup-subsys-names') as string[] | undefined;
  if (cached) return cached;
  const p = kernel.profile;
  const count = p.hasField('css_set', 'subsys') ? p.field('css_set', 'subsys').size / 8 : 0;
  const names: string[] = [];
  if (kernel.hasSymbol('cgroup_subsys') && count > 0 && count <= 64) {
    const table = await kernel.space.read(kernel.symbol('cgroup_subsys'), count * 8, opts);
    for (let i = 0; i < count; i++) {
      const ss = readU64LE(table, i * 8);
      if (!kernel.isKernelPointer(ss)) { names.push(`subsys${i}`); continue; }
      const s = await kernel.read('cgroup_subsys', ss, { ...opts, upTo: 'name' });
      names.push(await kernel.space.readCString(s.ptr('name'), MAX_NAME, opts));
    }
  }
  kernel.cache.set('cgroup-subsys-names', names);
  return names;
}

function derived<K, V>(kernel: Kernel, key: string): Map<K, V> {
  let m = kernel.cache.get(key) as Map<K, V> | undefined;
  if (!m) kernel.cache.set(key, (m = new Map()));
  return m;
}
