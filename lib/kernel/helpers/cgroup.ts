/**
 * Cgroups of a task (kernel/cgroup/cgroup.c, include/linux/cgroup-defs.h): task->cgroups is a
 * css_set; its dfl_cgrp is the task's cgroup on the v2 (default) hierarchy, and its cgrp_links
 * list holds one cgrp_cset_link per mounted hierarchy, v1 ones included, as proc_cgroup_show()
 * walks them for /proc/<pid>/cgroup.
 */
import { ValidationError } from '../../errors';
import type { CallOptions } from '../../util/deadline';
import type { Kernel } from '../kernel';
import { kernfsPath } from './kernfs';
import { listForEachEntry } from './list';

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
      const ss = table.readBigUInt64LE(i * 8);
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
