/**
 * The injection journal: before the engine changes the first register of a target, it writes what
 * it needs to put the target back (the saved registers, the stack bytes it may overwrite, the
 * breakpoint, the scratch mapping) to a file on the host, and removes the file once the target is
 * restored. If vmictl is killed in between, `vmictl recover` reads the file and finishes the job.
 *
 * The files hold a process's registers and stack: they live in a private directory (0700, owned by
 * us, not a symlink), $XDG_RUNTIME_DIR/vmictl or else /tmp/vmictl-<uid>, and are created 0600 with
 * O_EXCL.
 */
import { closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { VmiError } from '../errors';

export const JOURNAL_VERSION = 1;

export interface JournalEntry {
  version: number;
  /** When the injection started (ISO 8601). */
  createdAt: string;
  /** The vmictl process that wrote it. */
  writer: number;
  /** The VM: its QMP and gdbstub addresses as given to vmictl. */
  qmp?: string;
  gdb?: string;
  target: {
    /** struct task_struct * (hex) */
    task: string;
    pid: number;
    tgid: number;
    comm: string;
  };
  /** The syscall return address the breakpoint is on (hex). */
  returnAddress: string;
  /** The stack pointer the target has while an injected syscall runs (hex). */
  callSp: string;
  /** The vCPU (gdb thread) the target was caught on. */
  vcpu: string;
  /** Every register as caught (hex values, by gdb name). */
  registers: Record<string, string>;
  /** The registers that belong to the thread and are put back (not the vCPU's CR3, KERNEL_GS_BASE…). */
  restore: string[];
  /** Stack bytes below the red zone that may be overwritten, as they were. */
  stack?: { address: string; data: string };
  /** A scratch mapping the engine made in the target (munmap it). */
  scratch?: { address: string; length: number };
  /**
   * Watchpoint mode: the `syscall; ret` gadget calls run from (hex); while one runs, the thread's
   * rsp is callSp − 8 (the slot holding R that the `ret` reads) and it comes back to R with callSp.
   */
  gadget?: string;
}

/** The directory the journal lives in (not created). */
export function journalDirectory(): string {
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime && runtime.startsWith('/')) return join(runtime, 'vmictl');
  return `/tmp/vmictl-${process.getuid?.() ?? 'user'}`;
}

/** Creates the directory if needed and checks that it is private to us. */
export function ensureJournalDirectory(dir = journalDirectory()): string {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new VmiError('EJOURNAL', `cannot create the journal directory ${dir}: ${(err as Error).message}`);
  }
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || st.isSymbolicLink()) throw new VmiError('EJOURNAL', `${dir} is not a directory`);
  if (uid !== undefined && st.uid !== uid) throw new VmiError('EJOURNAL', `${dir} belongs to uid ${st.uid}, not to us (${uid})`);
  if ((st.mode & 0o077) !== 0) throw new VmiError('EJOURNAL', `${dir} is accessible to others (mode ${(st.mode & 0o777).toString(8)}): refusing to keep registers there`);
  return dir;
}

function writeFileExclusive(path: string, text: string): void {
  const fd = openSync(path, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A journal file for one injection. */
export class Journal {
  readonly path: string;
  #entry: JournalEntry;
  #removed = false;

  private constructor(path: string, entry: JournalEntry) {
    this.path = path;
    this.#entry = entry;
  }

  /** Writes a new journal (durably: fsync) and returns it. */
  static create(entry: JournalEntry, dir?: string): Journal {
    const d = ensureJournalDirectory(dir);
    const name = `inject-${entry.target.pid}-${process.pid}-${Date.now()}.json`;
    const path = join(d, name);
    writeFileExclusive(path, JSON.stringify(entry, null, 1));
    return new Journal(path, entry);
  }

  /** Opens an existing journal file. */
  static open(path: string): Journal {
    return new Journal(path, readJournal(path));
  }

  get entry(): Readonly<JournalEntry> {
    return this.#entry;
  }

  /** Replaces the entry (written to a new file, then renamed over the old one). */
  update(change: Partial<JournalEntry>): void {
    if (this.#removed) return;
    this.#entry = { ...this.#entry, ...change };
    const tmp = `${this.path}.${process.pid}.tmp`;
    writeFileExclusive(tmp, JSON.stringify(this.#entry, null, 1));
    renameSync(tmp, this.path);
  }

  /** Deletes the file: the target is back as it was. */
  remove(): void {
    if (this.#removed) return;
    this.#removed = true;
    try {
      unlinkSync(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/** Reads and checks one journal file. */
export function readJournal(path: string): JournalEntry {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new VmiError('EJOURNAL', `${path}: not a readable journal: ${(err as Error).message}`);
  }
  const e = data as JournalEntry;
  const hex = (s: unknown) => typeof s === 'string' && /^[0-9a-f]{1,16}$/.test(s);
  // registers go up to 512 bits (zmm)
  const wide = (s: unknown) => typeof s === 'string' && /^[0-9a-f]{1,128}$/.test(s);
  if (
    typeof e !== 'object' || e === null || e.version !== JOURNAL_VERSION || typeof e.target !== 'object' || !hex(e.target.task) ||
    !Number.isInteger(e.target.pid) || !hex(e.returnAddress) || !hex(e.callSp) || typeof e.vcpu !== 'string' ||
    typeof e.registers !== 'object' || !Array.isArray(e.restore) || !e.restore.every((n) => typeof n === 'string' && wide(e.registers[n])) ||
    !Object.values(e.registers).every(wide) || (e.gadget !== undefined && !hex(e.gadget))
  ) {
    throw new VmiError('EJOURNAL', `${path}: not a vmictl injection journal (version ${JOURNAL_VERSION})`);
  }
  return e;
}

/** The journal files in the directory (oldest first). */
export function listJournals(dir = journalDirectory()): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names.filter((n) => /^inject-\d+-\d+-\d+\.json$/.test(n)).sort((a, b) => Number(a.split('-')[3].slice(0, -5)) - Number(b.split('-')[3].slice(0, -5))).map((n) => join(dir, n));
}

export function hex(v: bigint): string {
  return v.toString(16);
}

export function fromHex(s: string): bigint {
  return BigInt(`0x${s}`);
}
