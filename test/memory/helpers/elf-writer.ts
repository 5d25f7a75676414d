/**
 * A minimal ELF core writer for tests, laid out as QEMU's dump-guest-memory writes it: header,
 * program headers (PT_NOTE first, then PT_LOADs), the notes, then the memory.
 */
export interface Note {
  name: string;
  type: number;
  desc: Buffer;
}

export interface Load {
  paddr: bigint;
  vaddr?: bigint;
  data: Buffer;
}

export interface CoreSpec {
  is64?: boolean;
  /** EM_X86_64 (62) by default; QEMU writes EM_386 (3) when the vCPU is not in long mode. */
  machine?: number;
  notes: Note[];
  loads: Load[];
  /** Write e_phnum = PN_XNUM with the real count in section header 0, as for huge dumps. */
  xnum?: boolean;
}

const pad4 = (n: number) => (n + 3) & ~3;

export function encodeNotes(notes: Note[]): Buffer {
  const parts: Buffer[] = [];
  for (const n of notes) {
    const name = Buffer.from(`${n.name}\0`, 'latin1');
    const h = Buffer.alloc(12);
    h.writeUInt32LE(name.length, 0);
    h.writeUInt32LE(n.desc.length, 4);
    h.writeUInt32LE(n.type, 8);
    parts.push(h, name, Buffer.alloc(pad4(name.length) - name.length), n.desc, Buffer.alloc(pad4(n.desc.length) - n.desc.length));
  }
  return Buffer.concat(parts);
}

export function buildElfCore(spec: CoreSpec): Buffer {
  const is64 = spec.is64 ?? true;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;
  const shentsize = is64 ? 64 : 40;
  const phnum = 1 + spec.loads.length;
  const phoff = ehsize;
  const shoff = spec.xnum ? phoff + phnum * phentsize : 0;
  const notes = encodeNotes(spec.notes);
  const notesAt = phoff + phnum * phentsize + (spec.xnum ? shentsize : 0);
  let dataAt = notesAt + notes.length;

  const eh = Buffer.alloc(ehsize);
  eh.write('\x7fELF', 0, 'latin1');
  eh[4] = is64 ? 2 : 1; // class
  eh[5] = 1; // little-endian
  eh[6] = 1; // version
  eh.writeUInt16LE(4, 16); // ET_CORE
  eh.writeUInt16LE(spec.machine ?? 62, 18);
  eh.writeUInt32LE(1, 20);
  if (is64) {
    eh.writeBigUInt64LE(BigInt(phoff), 32);
    eh.writeBigUInt64LE(BigInt(shoff), 40);
    eh.writeUInt16LE(ehsize, 52);
    eh.writeUInt16LE(phentsize, 54);
    eh.writeUInt16LE(spec.xnum ? 0xffff : phnum, 56);
    eh.writeUInt16LE(shentsize, 58);
    eh.writeUInt16LE(spec.xnum ? 1 : 0, 60);
  } else {
    eh.writeUInt32LE(phoff, 28);
    eh.writeUInt32LE(shoff, 32);
    eh.writeUInt16LE(ehsize, 40);
    eh.writeUInt16LE(phentsize, 42);
    eh.writeUInt16LE(spec.xnum ? 0xffff : phnum, 44);
    eh.writeUInt16LE(shentsize, 46);
    eh.writeUInt16LE(spec.xnum ? 1 : 0, 48);
  }

  const ph = Buffer.alloc(phnum * phentsize);
  const writePh = (i: number, type: number, offset: number, vaddr: bigint, paddr: bigint, size: number) => {
    const o = i * phentsize;
    ph.writeUInt32LE(type, o);
    if (is64) {
      ph.writeBigUInt64LE(BigInt(offset), o + 8);
      ph.writeBigUInt64LE(vaddr, o + 16);
      ph.writeBigUInt64LE(paddr, o + 24);
      ph.writeBigUInt64LE(BigInt(size), o + 32);
      ph.writeBigUInt64LE(BigInt(size), o + 40);
    } else {
      ph.writeUInt32LE(offset, o + 4);
      ph.writeUInt32LE(Number(vaddr), o + 8);
      ph.writeUInt32LE(Number(paddr), o + 12);
      ph.writeUInt32LE(size, o + 16);
      ph.writeUInt32LE(size, o + 20);
    }
  };
  writePh(0, 4, notesAt, 0n, 0n, notes.length);
  spec.loads.forEach((l, i) => {
    writePh(i + 1, 1, dataAt, l.vaddr ?? 0n, l.paddr, l.data.length);
    dataAt += l.data.length;
  });

  const sh = Buffer.alloc(spec.xnum ? shentsize : 0);
  if (spec.xnum) sh.writeUInt32LE(phnum, is64 ? 44 : 28);
  return Buffer.concat([eh, ph, sh, notes, ...spec.loads.map((l) => l.data)]);
}

/** QEMUCPUState (target/i386/arch_dump.c) with the given registers, `size` bytes recorded. */
export function qemuCpuState(regs: { rip?: bigint; rsp?: bigint; rax?: bigint; r15?: bigint; cr0?: bigint; cr3?: bigint; cr4?: bigint; gsBase?: bigint; fsBase?: bigint; kernelGsBase?: bigint }, size = 440): Buffer {
  const b = Buffer.alloc(440);
  b.writeUInt32LE(1, 0);
  b.writeUInt32LE(size, 4);
  b.writeBigUInt64LE(regs.rax ?? 0n, 8);
  b.writeBigUInt64LE(regs.rsp ?? 0n, 8 + 6 * 8);
  b.writeBigUInt64LE(regs.r15 ?? 0n, 8 + 15 * 8);
  b.writeBigUInt64LE(regs.rip ?? 0n, 136);
  b.writeBigUInt64LE(0x246n, 144);
  // segments: cs ds es fs gs ss ..., 24 bytes each from 152, base at +16
  b.writeUInt32LE(0x10, 152);
  b.writeBigUInt64LE(regs.fsBase ?? 0n, 152 + 3 * 24 + 16);
  b.writeBigUInt64LE(regs.gsBase ?? 0n, 152 + 4 * 24 + 16);
  b.writeBigUInt64LE(regs.cr0 ?? 0x80050033n, 392);
  b.writeBigUInt64LE(regs.cr3 ?? 0n, 392 + 24);
  b.writeBigUInt64LE(regs.cr4 ?? 0n, 392 + 32);
  b.writeBigUInt64LE(regs.kernelGsBase ?? 0n, 432);
  return b.subarray(0, size);
}

/** x86_64 NT_PRSTATUS: pr_pid at 32, user_regs_struct at 112. */
export function prstatus64(pid: number, regs: { rip?: bigint; rsp?: bigint; rax?: bigint; gsBase?: bigint }): Buffer {
  const b = Buffer.alloc(336);
  b.writeUInt32LE(pid, 32);
  const at = (i: number) => 112 + i * 8;
  b.writeBigUInt64LE(regs.rax ?? 0n, at(10));
  b.writeBigUInt64LE(regs.rip ?? 0n, at(16));
  b.writeBigUInt64LE(0x202n, at(18));
  b.writeBigUInt64LE(regs.rsp ?? 0n, at(19));
  b.writeBigUInt64LE(regs.gsBase ?? 0n, at(22));
  return b;
}
