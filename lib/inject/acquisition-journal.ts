/**
 * The journal of an acquisition: what catching a thread has left in QEMU and in the guest before
 * the session's own journal exists. The stop points (hardware breakpoints at return addresses,
 * read watchpoints) stay in QEMU when vmictl dies, and stop the VM whenever any process reaches
 * them; a cgroup frozen to wake a sleeping target stays frozen. `vmictl recover` removes the
 * points and thaws the cgroup; a new injection refuses to start over one (stale.ts).
 * Files `acquire-<pid>-<ms>.json`, beside the injection journals and checked the same way.
 */
import { join, dirname } from 'node:path';
import { readdirSync, renameSync, unlinkSync } from 'node:fs';
import { VmiError } from '../errors';
import { fsyncDirectory } from '../util/host-file';
import { checkJournalDirectory, ensureJournalDirectory, journalDirectory, publishFileExclusive, readTrustedFile, writeFileExclusive } from './journal';

export const ACQUISITION_VERSION = 1;

/** A stop point as the gdbstub's Z packet takes it: type (1 breakpoint, 3 read watchpoint), address (hex), length. */
export interface StopPoint {
  type: 1 | 3;
  address: string;
  length: number;
}

export interface AcquisitionEntry {
  version: number;
  kind: 'acquisition';
  createdAt: string;
  writer: number;
  qmp?: string;
  gdb?: string;
  /** Every stop point the acquisition has in QEMU now. */
  points: StopPoint[];
  /** A cgroup (v2 path) it froze to wake its target and has not thawed yet. */
  frozen?: string;
}

/** Most stop points one acquisition has at once (16 under TCG, a few under KVM), with margin. */
const MAX_POINTS = 256;

export class AcquisitionJournal {
  readonly path: string;
  #entry: AcquisitionEntry;
  #removed = false;

  private constructor(path: string, entry: AcquisitionEntry) {
    this.path = path;
    this.#entry = entry;
  }

  static create(vm: { qmp?: string; gdb?: string }, dir?: string): AcquisitionJournal {
    const d = ensureJournalDirectory(dir);
    const entry: AcquisitionEntry = { version: ACQUISITION_VERSION, kind: 'acquisition', createdAt: new Date().toISOString(), writer: process.pid, qmp: vm.qmp, gdb: vm.gdb, points: [] };
    const path = join(d, `acquire-${process.pid}-${Date.now()}-${Math.floor(Math.random() * 1e6)}.json`);
    publishFileExclusive(path, JSON.stringify(entry));
    fsyncDirectory(d);
    return new AcquisitionJournal(path, entry);
  }

  static open(path: string): AcquisitionJournal {
    return new AcquisitionJournal(path, readAcquisition(path));
  }

  get entry(): Readonly<AcquisitionEntry> {
    return this.#entry;
  }

  /** Records the points and the frozen cgroup as they are now (new file renamed over the old). */
  update(change: Partial<Pick<AcquisitionEntry, 'points' | 'frozen'>>): void {
    if (this.#removed) return;
    const next = { ...this.#entry, ...change };
    if (JSON.stringify(next) === JSON.stringify(this.#entry)) return;
    this.#entry = next;
    const tmp = `${this.path}.${process.pid}.tmp`;
    try {
      writeFileExclusive(tmp, JSON.stringify(next));
      renameSync(tmp, this.path);
    } catch (err) {
      try { unlinkSync(tmp); } catch { /* not made, or renamed already */ }
      throw err;
    }
    fsyncDirectory(dirname(this.path));
  }

  remove(): void {
    if (this.#removed) return;
    this.#removed = true;
    try {
      unlinkSync(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      return;
    }
    fsyncDirectory(dirname(this.path));
  }
}

/** Reads and checks one acquisition journal. */
export function readAcquisition(path: string): AcquisitionEntry {
  let data: unknown;
  try {
    data = JSON.parse(readTrustedFile(path));
  } catch (err) {
    if (err instanceof VmiError) throw err;
    throw new VmiError('EJOURNAL', `${path}: not a readable journal: ${(err as Error).message}`);
  }
  const e = data as AcquisitionEntry;
  const point = (p: StopPoint) => typeof p === 'object' && p !== null && (p.type === 1 || p.type === 3) && typeof p.address === 'string' && /^[0-9a-f]{1,16}$/.test(p.address) && Number.isInteger(p.length) && p.length > 0 && p.length <= 8;
  if (
    typeof e !== 'object' || e === null || e.version !== ACQUISITION_VERSION || e.kind !== 'acquisition' || !Number.isInteger(e.writer) ||
    !Array.isArray(e.points) || e.points.length > MAX_POINTS || !e.points.every(point) ||
    (e.frozen !== undefined && (typeof e.frozen !== 'string' || !/^(\/[^/\0]+)+$/.test(e.frozen) || e.frozen.split('/').includes('..')))
  ) {
    throw new VmiError('EJOURNAL', `${path}: not a vmictl acquisition journal (version ${ACQUISITION_VERSION})`);
  }
  return e;
}

/** The acquisition journals in the directory (oldest first); a directory that is not private is refused. */
export function listAcquisitions(dir = journalDirectory()): string[] {
  try {
    checkJournalDirectory(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return readdirSync(dir).filter((n) => /^acquire-\d+-\d+-\d+\.json$/.test(n))
    .sort((a, b) => Number(a.split('-')[2]) - Number(b.split('-')[2])).map((n) => join(dir, n));
}
