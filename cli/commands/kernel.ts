import type { Command } from 'commander';
import { connectionOptions, type ConnectionFlags } from '../options';
import { withVm } from '../session';
import { escapeForTerminal } from '../../lib/util/escape';
import { describeVcpus, type VcpuState } from '../../lib/vcpus';
import { printJson } from '../render/json';
import { vcpuJson, type KernelJson } from '../render/vm-info';

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** `vmictl kernel`: what vmictl found out about the guest kernel, from memory alone. */
export function registerKernel(program: Command): void {
  connectionOptions(program.command('kernel').description('show the guest kernel: banner, KASLR slides, page tables, profile, vCPUs'))
    .option('--json', 'print JSON')
    .action(async (flags: ConnectionFlags & { json?: boolean }) => {
      await withVm(flags, async (vm, signal) => {
        const t0 = process.hrtime.bigint();
        const k = await vm.kernel();
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        const vcpus: VcpuState[] = await describeVcpus(vm, signal);
        const memory = await vm.memory();
        const out: KernelJson = {
          banner: k.kaslr.banner,
          virtualSlide: hex(k.kaslr.virtualSlide),
          physicalSlide: hex(k.kaslr.physicalSlide),
          physicalBase: hex(k.kaslr.physicalBase),
          text: hex(k.symbol('_text')),
          pageTableRoot: hex(k.kaslr.pageTableRoot),
          paging: `${k.pagingLevels}-level`,
          ...(k.layout.bases ? { directMap: hex(k.layout.bases.pageOffset), vmallocStart: hex(k.layout.bases.vmallocStart), vmemmapStart: hex(k.layout.bases.vmemmapStart) } : {}),
          profile: k.profile.source,
          memory: memory.backend.name,
          foundInMs: Math.round(ms),
          vcpus: vcpus.map(vcpuJson),
        };
        if (flags.json) {
          printJson(out, { indent: 2 });
          return;
        }
        const lines = [
          `banner:          ${escapeForTerminal(out.banner)}`,
          `_text:           ${out.text}`,
          `virtual slide:   ${out.virtualSlide}`,
          `physical base:   ${out.physicalBase} (slide ${out.physicalSlide})`,
          `page-table root: ${out.pageTableRoot} (init_top_pgt, ${out.paging} paging)`,
          ...(out.directMap ? [`direct map:      ${out.directMap} (vmalloc ${out.vmallocStart}, vmemmap ${out.vmemmapStart})`] : []),
          `profile:         ${escapeForTerminal(out.profile)}`,
          `memory:          ${escapeForTerminal(out.memory)}`,
          `found in:        ${out.foundInMs} ms`,
          `vCPUs:           ${vcpus.length}`,
          ...out.vcpus.map((c) => `  cpu ${c.index}: ${c.mode}${c.rip ? ` rip=${c.rip}` : ''}${c.cr3 ? ` cr3=${c.cr3}` : ''}${c.threadId ? ` host-tid=${c.threadId}` : ''}`),
        ];
        process.stdout.write(lines.join('\n') + '\n');
      });
    });
}
