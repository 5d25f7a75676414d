// cgroup v1 paths: on a synthetic image whose profile has the v1 types (css_set.cgrp_links,
// cgrp_cset_link, cgroup_root, cgroup_subsys), each task's css_set links to a cgroup per mounted
// hierarchy; the collection names each v1 hierarchy as /proc/<pid>/cgroup does and skips the
// default (v2) one.
import t from 'tap';
import { collectTasks } from '../../lib/containers/collect';
import { Profile } from '../../lib/kernel/profile';
import { SyntheticGuest } from '../helpers/synthetic-kernel';

const ptr = (name: string) => ({ kind: 'pointer', subtype: { kind: 'struct', name } });
const listHead = { kind: 'struct', name: 'list_head' };
const SUBSYS = ['cpuset', 'cpu', 'cpuacct', 'memory'];

/** Adds the v1 types and symbols to the guest's profile (before anything looked them up). */
function addV1Types(g: SyntheticGuest): void {
  const doc = g.profile.doc as unknown as { user_types: Record<string, any>; symbols: Record<string, any> };
  const ut = doc.user_types;
  ut.css_set.fields.subsys = { offset: 0, type: { kind: 'array', count: SUBSYS.length, subtype: ptr('cgroup_subsys_state') } };
  ut.css_set.fields.cgrp_links = { offset: 200, type: listHead };
  ut.cgroup.fields.root = { offset: 656, type: ptr('cgroup_root') };
  ut.cgrp_cset_link = {
    kind: 'struct', size: 48,
    fields: { cgrp: { offset: 0, type: ptr('cgroup') }, cset: { offset: 8, type: ptr('css_set') }, cset_link: { offset: 16, type: listHead }, cgrp_link: { offset: 32, type: listHead } },
  };
  ut.cgroup_root = {
    kind: 'struct', size: 6016,
    fields: {
      subsys_mask: { offset: 8, type: { kind: 'base', name: 'unsigned int' } },
      hierarchy_id: { offset: 12, type: { kind: 'base', name: 'int' } },
      name: { offset: 5952, type: { kind: 'array', count: 64, subtype: { kind: 'base', name: 'char' } } },
    },
  };
  ut.cgroup_subsys = { kind: 'struct', size: 240, fields: { name: { offset: 200, type: { kind: 'pointer', subtype: { kind: 'base', name: 'char' } } } } };
  // kernel data on the heap: a symbol's profile address is its link-time one, before the slide
  const dfl = g.alloc('cgroup_root');
  const table = g.alloc(SUBSYS.length * 8);
  SUBSYS.forEach((name, i) => {
    const ss = g.alloc('cgroup_subsys');
    g.set('cgroup_subsys', ss, 'name', g.cString(name));
    g.writeU64(table + BigInt(i * 8), ss);
  });
  doc.symbols.cgrp_dfl_root = { address: dfl - g.virtualSlide, type: { kind: 'struct', name: 'cgroup_root' } };
  doc.symbols.cgroup_subsys = { address: table - g.virtualSlide, type: { kind: 'array', count: SUBSYS.length, subtype: ptr('cgroup_subsys') } };
  // a fresh Profile: the guest's own has cached the layouts of the structs it already wrote
  const text = JSON.stringify(doc, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString(10) : v));
  (g as unknown as { profile: Profile }).profile = Profile.fromJson(text, '<synthetic profile with cgroup v1>');
}

/** A v1 hierarchy root with these controllers (indexes into SUBSYS) and name. */
function hierarchy(g: SyntheticGuest, id: number, controllers: number[], name = ''): bigint {
  const root = g.alloc('cgroup_root');
  g.set('cgroup_root', root, 'subsys_mask', controllers.reduce((m, i) => m | (1 << i), 0));
  g.set('cgroup_root', root, 'hierarchy_id', id);
  g.setChars('cgroup_root', root, 'name', name);
  return root;
}

/** Links `cset` to the default hierarchy's cgroup and to a cgroup at each [root, path]. */
function linkCset(g: SyntheticGuest, cset: bigint, v1: Array<[bigint, string]>): void {
  const dflRoot = g.profile.symbol('cgrp_dfl_root') + g.virtualSlide;
  const cgroups: Array<[bigint, bigint]> = [];
  // the v2 cgroup the css_set already has
  const dflCgrp = readU64(g, cset + g.offset('css_set', 'dfl_cgrp'));
  g.set('cgroup', dflCgrp, 'root', dflRoot);
  cgroups.push([dflCgrp, dflRoot]);
  for (const [root, path] of v1) {
    const cgrp = g.alloc('cgroup');
    g.set('cgroup', cgrp, 'kn', g.kernfsNode(path));
    g.set('cgroup', cgrp, 'root', root);
    cgroups.push([cgrp, root]);
  }
  const links = cgroups.map(([cgrp]) => {
    const link = g.alloc('cgrp_cset_link');
    g.set('cgrp_cset_link', link, 'cgrp', cgrp);
    g.set('cgrp_cset_link', link, 'cset', cset);
    return link + g.offset('cgrp_cset_link', 'cgrp_link');
  });
  g.linkList(cset + g.offset('css_set', 'cgrp_links'), links);
}

function readU64(g: SyntheticGuest, va: bigint): bigint {
  return g.mem.readU64(g.physOf(va));
}

t.test('v1 hierarchies per task, named like /proc/<pid>/cgroup; the v2 one is not among them', async (t) => {
  const g = new SyntheticGuest();
  addV1Types(g);
  g.addTask({ pid: 1, comm: 'init', cgroup: '/init.scope' });
  g.addTask({ pid: 100, comm: 'app', cgroup: '/system.slice/app.service' });
  g.addTask({ pid: 200, comm: 'v2only', cgroup: '/user.slice' });
  const cpu = hierarchy(g, 2, [1, 2]);
  const systemd = hierarchy(g, 1, [], 'systemd');
  const memory = hierarchy(g, 3, [3]);
  linkCset(g, g.cssSet('/init.scope'), [[cpu, '/'], [systemd, '/init.scope']]);
  linkCset(g, g.cssSet('/system.slice/app.service'), [[cpu, '/docker/abc'], [systemd, '/system.slice/app.service'], [memory, '/docker/abc']]);
  linkCset(g, g.cssSet('/user.slice'), []);

  const { processes, warnings } = await collectTasks(await g.open());
  t.same(warnings, []);
  const by = new Map(processes.map((p) => [p.pid, p]));
  t.same(by.get(100)!.warnings, []);
  t.equal(by.get(100)!.cgroup, '/system.slice/app.service', 'the v2 path is unchanged');
  t.same(by.get(100)!.cgroupV1, { 'cpu,cpuacct': '/docker/abc', 'name=systemd': '/system.slice/app.service', memory: '/docker/abc' });
  t.same(by.get(1)!.cgroupV1, { 'cpu,cpuacct': '/', 'name=systemd': '/init.scope' });
  t.equal(by.get(200)!.cgroupV1, undefined, 'only the default hierarchy: no v1 paths');
});

t.test('a corrupt cgrp_links list is a cgroup warning on the task, the rest still read', async (t) => {
  const g = new SyntheticGuest();
  addV1Types(g);
  g.addTask({ pid: 1, comm: 'init', cgroup: '/init.scope' });
  g.addTask({ pid: 100, comm: 'app', cgroup: '/broken.scope' });
  linkCset(g, g.cssSet('/init.scope'), []);
  const broken = g.cssSet('/broken.scope');
  g.writeU64(broken + g.offset('css_set', 'cgrp_links'), 0xdead000000000000n);
  const { processes } = await collectTasks(await g.open());
  const app = processes.find((p) => p.pid === 100)!;
  t.match(app.warnings, [/^cgroup: /]);
  t.equal(processes.find((p) => p.pid === 1)!.cgroupV1, undefined);
  t.same(processes.find((p) => p.pid === 1)!.warnings, []);
});
