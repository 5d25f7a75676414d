/** The JSON of `vmictl status` (QMP's view of the VM) and `vmictl kernel` (what was found in guest memory). */
import type { VcpuState } from '../../lib/vcpus';

export interface StatusJson {
  /** QMP's run state: running, paused, shutdown… */
  status: string;
  running: boolean;
  /** QEMU's version, MAJOR.MINOR.MICRO */
  qemu: string;
}

export interface VcpuJson {
  index: number;
  mode: VcpuState['mode'];
  rip?: string;
  cr3?: string;
  threadId?: number;
}

export interface KernelJson {
  /** linux_banner (guest data) */
  banner: string;
  virtualSlide: string;
  physicalSlide: string;
  physicalBase: string;
  text: string;
  pageTableRoot: string;
  paging: string;
  directMap?: string;
  vmallocStart?: string;
  vmemmapStart?: string;
  profile: string;
  memory: string;
  foundInMs: number;
  vcpus: VcpuJson[];
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

export function vcpuJson(c: VcpuState): VcpuJson {
  return {
    index: c.index,
    mode: c.mode,
    ...(c.rip !== undefined ? { rip: hex(c.rip) } : {}),
    ...(c.cr3 !== undefined ? { cr3: hex(c.cr3) } : {}),
    ...(c.threadId !== undefined ? { threadId: c.threadId } : {}),
  };
}
