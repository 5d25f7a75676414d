/**
 * What each vCPU was doing when the VM stopped: from the gdbstub's registers on a live VM (one
 * gdb thread per vCPU), from the dump's notes offline. The privilege level is CS's low two bits.
 */
import type { Vm } from './vm';

export interface VcpuState {
  index: number;
  mode: 'kernel' | 'user' | 'unknown';
  rip?: bigint;
  cr3?: bigint;
  /** Host thread running the vCPU (live VMs). */
  threadId?: number;
}

function modeOf(cs: bigint | number | undefined): VcpuState['mode'] {
  if (cs === undefined) return 'unknown';
  return (BigInt(cs) & 3n) === 3n ? 'user' : 'kernel';
}

export async function describeVcpus(vm: Vm, signal?: AbortSignal): Promise<VcpuState[]> {
  if (vm.dump) {
    return vm.dump.vcpus().map((c) => ({ index: c.index, mode: modeOf(c.segments?.cs.selector), rip: c.rip, cr3: c.cr3 }));
  }
  const cpus = (await vm.qmp!.execute('query-cpus-fast', undefined, { signal })) as Array<{ 'cpu-index': number; 'thread-id': number }>;
  const gdb = await vm.gdb();
  const threads = await gdb.threads({ signal });
  const out: VcpuState[] = [];
  for (let i = 0; i < threads.length; i++) {
    const regs = await gdb.readRegisters({ thread: threads[i], signal });
    out.push({ index: cpus[i]?.['cpu-index'] ?? i, mode: modeOf(regs.get('cs')), rip: regs.get('rip'), cr3: regs.get('cr3'), threadId: cpus[i]?.['thread-id'] });
  }
  return out;
}
