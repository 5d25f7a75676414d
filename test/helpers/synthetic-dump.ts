/**
 * A synthetic guest (test/helpers/synthetic-kernel.ts) as the ELF dump dump-guest-memory would
 * write, so the CLI can be run on it end to end with --dump; and a way to run vmictl in-process,
 * capturing what it writes.
 */
import * as fs from 'node:fs';
import { main } from '../../cli/main';
import { captureMain, type CliRun } from './run-cli';
import type { SyntheticGuest } from './synthetic-kernel';

/** An ELF core of the guest's RAM: one PT_LOAD, written sparse (only the pages the guest has). */
export function writeDump(g: SyntheticGuest, file: string): void {
  const dataAt = 4096;
  const eh = Buffer.alloc(64 + 56);
  eh.write('\x7fELF', 0, 'latin1');
  eh[4] = 2; eh[5] = 1; eh[6] = 1;
  eh.writeUInt16LE(4, 16); // ET_CORE
  eh.writeUInt16LE(62, 18); // EM_X86_64
  eh.writeUInt32LE(1, 20);
  eh.writeBigUInt64LE(64n, 32); // e_phoff
  eh.writeUInt16LE(64, 52);
  eh.writeUInt16LE(56, 54);
  eh.writeUInt16LE(1, 56); // e_phnum
  eh.writeUInt16LE(64, 58);
  eh.writeUInt32LE(1, 64); // PT_LOAD
  eh.writeBigUInt64LE(BigInt(dataAt), 64 + 8);
  eh.writeBigUInt64LE(0n, 64 + 24); // p_paddr
  eh.writeBigUInt64LE(g.ramSize, 64 + 32);
  eh.writeBigUInt64LE(g.ramSize, 64 + 40);
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, eh, 0, eh.length, 0);
    fs.ftruncateSync(fd, dataAt + Number(g.ramSize));
    for (const [page, bytes] of g.mem.pages) fs.writeSync(fd, bytes, 0, bytes.length, dataAt + Number(page) * 4096);
  } finally {
    fs.closeSync(fd);
  }
}

/** Runs vmictl in this process, capturing what it writes. */
export function runCli(...args: string[]): Promise<CliRun> {
  return captureMain(main, args);
}
