/**
 * Every fuzz harness, in the order `make fuzz` runs them.
 * TODO(btf): a harness for the BTF reader (lib/kernel/btf) once it is merged: mutated .BTF
 * sections from `pahole -J` on the DWARF fixture, same property as the DWARF harness.
 */
import type { Harness } from '../engine';
import { gdbPackets, gdbStopReply, gdbTargetXml } from './gdb';
import { qmpStream } from './qmp';
import { profileIsf } from './profile';
import { dwarfElf, dwarfSections } from './dwarf';
import { elfDump } from './elf-dump';
import { kernelWalkers } from './kernel';

export const HARNESSES: Harness[] = [gdbPackets, gdbStopReply, gdbTargetXml, qmpStream, profileIsf, dwarfSections, dwarfElf, elfDump, kernelWalkers];

export function harnessByName(name: string): Harness | undefined {
  return HARNESSES.find((h) => h.name === name);
}
