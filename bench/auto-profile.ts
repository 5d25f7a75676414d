/**
 * Automatic-profile benchmark: how long building a profile from guest memory takes (kallsyms scan
 * and decode, then BTF read and conversion), and what `ps` costs with that profile against the
 * DWARF profile of the same kernel (when there is one: the 6.1 test kernel's).
 *
 *   build   buildProfileFromMemory() on the local fast path (or the gdbstub when that is not
 *           available); median of VMICTL_BENCH_AUTO_RUNS (3).
 *   ps      vm.listContainers() with each profile, caches dropped before each run (the VM resumed
 *           and stopped again); one warm-up, then the median of VMICTL_BENCH_PS_RUNS (5).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Vm } from '../lib/vm';
import { buildProfileFromMemory } from '../lib/kernel/profile/from-memory';
import { listProfiles, writeProfile } from '../lib/kernel/profile';
import { closeVm, median, nowMs } from './common';
import type { Figure, Log } from './run';

export interface AutoProfileBenchOptions {
  qmp: string;
  gdb: string;
  /** Directories where a DWARF profile of the running kernel may be. */
  profileDirs: string[];
  log: Log;
}

async function psMs(qmp: string, gdb: string, profile: string, runs: number): Promise<number[]> {
  const vm = await Vm.connect({ qmp, gdb, profile, memory: 'auto' });
  try {
    await vm.listContainers();
    const ms: number[] = [];
    for (let i = 0; i < runs; i++) {
      await vm.resume();
      await vm.pause();
      const t0 = nowMs();
      await vm.listContainers();
      ms.push(nowMs() - t0);
    }
    return ms;
  } finally {
    await closeVm(vm, true);
  }
}

export async function runAutoProfileBench(o: AutoProfileBenchOptions): Promise<Figure[]> {
  const runs = Number(process.env.VMICTL_BENCH_AUTO_RUNS ?? 3);
  const psRuns = Number(process.env.VMICTL_BENCH_PS_RUNS ?? 5);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmictl-bench-auto-'));
  try {
    const total: number[] = [];
    const kallsyms: number[] = [];
    const btf: number[] = [];
    let banner = '';
    let file = '';
    const vm = await Vm.connect({ qmp: o.qmp, gdb: o.gdb, memory: 'auto' });
    try {
      const memory = await vm.memory();
      const ram = await vm.ram();
      for (let i = 0; i < runs; i++) {
        const b = await buildProfileFromMemory(memory.backend, ram);
        total.push(b.stats.seconds.total * 1000);
        kallsyms.push(b.stats.seconds.kallsyms * 1000);
        btf.push(b.stats.seconds.btf * 1000);
        if (i === 0) {
          banner = b.stats.banner;
          file = path.join(dir, 'auto.json');
          writeProfile(b.doc, file);
          o.log(`  ${b.stats.symbols} symbols, ${b.stats.btfTypes} BTF types (${(b.stats.btfBytes / 1048576).toFixed(1)} MiB) from ${memory.backend.name}`);
        }
      }
    } finally {
      await closeVm(vm, true);
    }
    const release = banner.split(' ')[2] ?? '?';
    o.log(`  build from guest memory (${release}): ${total.map((x) => x.toFixed(0)).join(', ')} ms (kallsyms ${median(kallsyms).toFixed(0)} ms, BTF ${median(btf).toFixed(0)} ms)`);
    const figures: Figure[] = [
      { name: `autoprofile.build[${release}]`, value: median(total), unit: 'ms', note: `kallsyms ${median(kallsyms).toFixed(0)} ms + BTF ${median(btf).toFixed(0)} ms` },
    ];
    const auto = median(await psMs(o.qmp, o.gdb, file, psRuns));
    const dwarf = listProfiles(o.profileDirs).find((c) => c.banner === banner)?.path;
    if (dwarf) {
      const withDwarf = median(await psMs(o.qmp, o.gdb, dwarf, psRuns));
      o.log(`  ps: ${auto.toFixed(0)} ms with the automatic profile, ${withDwarf.toFixed(0)} ms with the DWARF one`);
      figures.push({ name: `autoprofile.ps[${release}]`, value: auto, unit: 'ms', baseline: { value: withDwarf, what: 'DWARF profile' }, ratio: withDwarf / auto });
    } else {
      o.log(`  ps: ${auto.toFixed(0)} ms with the automatic profile (no DWARF profile of ${release} to compare)`);
      figures.push({ name: `autoprofile.ps[${release}]`, value: auto, unit: 'ms' });
    }
    return figures;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
