/**
 * vCPU state in the notes QEMU's dump-guest-memory writes (target/i386/arch_dump.c): first one
 * NT_PRSTATUS ("CORE") note per vCPU, then one "QEMU" note per vCPU holding QEMUCPUState, which
 * alone has the control registers (CR3 to find page tables, CR4 for LA57) and the segment bases.
 * QEMUCPUState grows only at its end, its `size` field says how much is there (kernel_gs_base was
 * added last). When the vCPU was not in long mode QEMU writes i386 prstatus notes instead.
 */
import type { ElfNote } from './elf-core';

export const NT_PRSTATUS = 1;

export interface SegmentState {
  selector: number;
  limit: number;
  flags: number;
  base: bigint;
}

const SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'ldt', 'tr', 'gdt', 'idt'] as const;
export type SegmentName = (typeof SEGMENTS)[number];

const GPRS = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
export type GprName = (typeof GPRS)[number];

/** One vCPU as the dump recorded it. Register names follow QEMU's gdb target description. */
export type DumpVcpu = Record<GprName, bigint> & {
  /** Position in the dump (QEMU's CPU order). */
  index: number;
  rip: bigint;
  rflags: bigint;
  fs_base: bigint;
  gs_base: bigint;
  /** Only from QEMU notes of QEMU versions that record it. */
  kernel_gs_base?: bigint;
  /** Only from QEMU notes: NT_PRSTATUS has no control registers. */
  cr0?: bigint;
  cr2?: bigint;
  cr3?: bigint;
  cr4?: bigint;
  segments?: Record<SegmentName, SegmentState>;
  source: 'qemu-note' | 'prstatus';
};

/** Offsets in QEMUCPUState: version, size, 16 GPRs, rip, rflags, 10 segments, cr[5], kernel_gs_base. */
const QEMU_GPRS_AT = 8;
const QEMU_RIP_AT = 136;
const QEMU_SEGMENTS_AT = 152;
const QEMU_SEGMENT_SIZE = 24;
const QEMU_CR_AT = 392;
const QEMU_KERNEL_GS_BASE_AT = 432;

function decodeQemuNote(desc: Buffer, index: number): DumpVcpu | undefined {
  if (desc.length < QEMU_CR_AT + 40) return undefined;
  const size = Math.min(desc.readUInt32LE(4), desc.length);
  const u64 = (o: number) => desc.readBigUInt64LE(o);
  const segments = {} as Record<SegmentName, SegmentState>;
  SEGMENTS.forEach((name, i) => {
    const o = QEMU_SEGMENTS_AT + i * QEMU_SEGMENT_SIZE;
    segments[name] = { selector: desc.readUInt32LE(o), limit: desc.readUInt32LE(o + 4), flags: desc.readUInt32LE(o + 8), base: u64(o + 16) };
  });
  const gprs = {} as Record<GprName, bigint>;
  GPRS.forEach((name, i) => (gprs[name] = u64(QEMU_GPRS_AT + i * 8)));
  const vcpu: DumpVcpu = {
    ...gprs,
    index,
    rip: u64(QEMU_RIP_AT),
    rflags: u64(QEMU_RIP_AT + 8),
    fs_base: segments.fs.base,
    gs_base: segments.gs.base,
    cr0: u64(QEMU_CR_AT),
    cr2: u64(QEMU_CR_AT + 16),
    cr3: u64(QEMU_CR_AT + 24),
    cr4: u64(QEMU_CR_AT + 32),
    segments,
    source: 'qemu-note',
  };
  if (size >= QEMU_KERNEL_GS_BASE_AT + 8) vcpu.kernel_gs_base = u64(QEMU_KERNEL_GS_BASE_AT);
  return vcpu;
}

/** x86_64 elf_prstatus: pr_reg (user_regs_struct) at 112, 27 registers. */
const PRSTATUS64_SIZE = 336;
const PRSTATUS64_REGS = ['r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi',
  'orig_rax', 'rip', 'cs', 'eflags', 'rsp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs'];
/** i386 elf_prstatus: pr_reg at 72, 17 32-bit registers. */
const PRSTATUS32_SIZE = 144;
const PRSTATUS32_REGS = ['rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rax', 'ds', 'es', 'fs', 'gs', 'orig_rax', 'rip', 'cs', 'eflags', 'rsp', 'ss'];

function decodePrstatus(desc: Buffer, index: number): DumpVcpu | undefined {
  const r: Record<string, bigint> = {};
  if (desc.length >= PRSTATUS64_SIZE) {
    PRSTATUS64_REGS.forEach((name, i) => (r[name] = desc.readBigUInt64LE(112 + i * 8)));
  } else if (desc.length >= PRSTATUS32_SIZE) {
    PRSTATUS32_REGS.forEach((name, i) => (r[name] = BigInt(desc.readUInt32LE(72 + i * 4))));
  } else {
    return undefined;
  }
  const gprs = {} as Record<GprName, bigint>;
  for (const name of GPRS) gprs[name] = r[name] ?? 0n;
  return { ...gprs, index, rip: r.rip, rflags: r.eflags, fs_base: r.fs_base ?? 0n, gs_base: r.gs_base ?? 0n, source: 'prstatus' };
}

/** vCPUs from the QEMU notes when present (they are complete), else from NT_PRSTATUS. */
export function vcpusFromNotes(notes: readonly ElfNote[]): DumpVcpu[] {
  const qemu = notes.filter((n) => n.name === 'QEMU' && n.type === 0);
  if (qemu.length > 0) {
    return qemu.map((n, i) => decodeQemuNote(n.desc, i)).filter((v): v is DumpVcpu => v !== undefined);
  }
  return notes
    .filter((n) => n.name === 'CORE' && n.type === NT_PRSTATUS)
    .map((n, i) => decodePrstatus(n.desc, i))
    .filter((v): v is DumpVcpu => v !== undefined);
}

/** The guest's VMCOREINFO text (when the VM has a vmcoreinfo device and the kernel filled it). */
export function vmcoreinfoFromNotes(notes: readonly ElfNote[]): string | undefined {
  const n = notes.find((x) => x.name === 'VMCOREINFO');
  return n ? n.desc.toString('latin1').replace(/\0+$/, '') : undefined;
}
