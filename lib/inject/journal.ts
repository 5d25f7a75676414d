/**
 * The injection journal: before the engine changes the first register of a target, it writes what
 * it needs to put the target back (the saved registers, the stack bytes it may overwrite, the
 * breakpoint, the scratch mapping) to a file on the host, and removes the file once the target is
 * restored. If vmictl is killed in between, `vmictl recover` reads the file and finishes the job.
 *
 * The files hold a process's registers and stack: they live in a private directory (0700, owned by
 * us, not a symlink), $XDG_RUNTIME_DIR/vmictl or else /tmp/vmictl-<uid>, and are created 0600 with
 * O_EXCL. What a journal says is written into a guest process by `recover`, so the directory and
 * each file are checked again on every read: in /tmp another local user could have made the
 * directory first and filled it.
 */
import { closeSync, constants, fstatSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, readSync, renameSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { VmiError } from '../errors';
import { fsyncDirectory, writeFully } from '../util/host-file';

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
  /**
   * Children forked off the target (vfork) and being driven: each comes back to returnAddress with
   * callSp in its own address space, and would run the target's code from there if left alone.
   */
  children?: { pid: number; task: string }[];
  /**
   * When the session gave up on a call that did not end and rewrote the thread's pt_regs to send
   * it home (state `in-syscall`, lib/inject/redirect.ts): the journal is kept for what is left.
   */
  redirectedAt?: string;
}

/** The directory the journal lives in (not created). */
export function journalDirectory(): string {
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime && runtime.startsWith('/')) return join(runtime, 'vmictl');
  return `/tmp/vmictl-${process.getuid?.() ?? 'user'}`;
}

/** A journal directory or file that is not private to us: refused, never read or written. */
export class UntrustedJournalError extends VmiError {
  readonly path: string;
  constructor(path: string, why: string) {
    super('EJOURNAL', `${path} ${why}: refusing to use it as an injection journal`);
    this.path = path;
  }
}

/** Most driven children a journal names (a vfork child, and its own for a privileged exec). */
const MAX_CHILDREN = 8;
/** Most bytes a journal file may hold (its stack copy is at most 32 KiB, as hex). */
const MAX_JOURNAL_BYTES = 1 << 20;

/** Checks that `dir` is a real directory (not a symlink), ours, and closed to everyone else. */
export function checkJournalDirectory(dir: string): void {
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (st.isSymbolicLink() || !st.isDirectory()) throw new UntrustedJournalError(dir, 'is not a directory');
  if (uid !== undefined && st.uid !== uid) throw new UntrustedJournalError(dir, `belongs to uid ${st.uid}, not to us (${uid})`);
  if ((st.mode & 0o077) !== 0) throw new UntrustedJournalError(dir, `is accessible to others (mode ${(st.mode & 0o777).toString(8)})`);
}

/** Creates the directory if needed and checks that it is private to us. */
export function ensureJournalDirectory(dir = journalDirectory()): string {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new VmiError('EJOURNAL', `cannot create the journal directory ${dir}: ${(err as Error).message}`);
  }
  checkJournalDirectory(dir);
  return dir;
}

/** Creates `path` (0600, O_EXCL), writes all of `text` and syncs it; the caller syncs the directory. */
export function writeFileExclusive(path: string, text: string): void {
  const fd = openSync(path, 'wx', 0o600);
  try {
    writeFully(fd, Buffer.from(text));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Creates `path` with `text`, whole or not at all: written to a temporary name first and linked
 * in place, so that another vmictl listing the directory meanwhile (on another VM) never reads a
 * journal half written, which it would have to count as unreadable, hence stale. Fails with
 * EEXIST when `path` exists, as an exclusive create does.
 */
export function publishFileExclusive(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.new.tmp`;
  writeFileExclusive(tmp, text);
  try {
    linkSync(tmp, path);
  } finally {
    unlinkSync(tmp);
  }
}

/**
 * Reads a journal file: its directory must pass checkJournalDirectory(), and the file, opened
 * without following a symlink, must be a regular file of ours that no one else can write.
 */
export function readTrustedFile(path: string): string {
  checkJournalDirectory(dirname(path));
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new UntrustedJournalError(path, 'is a symlink');
    throw new VmiError('EJOURNAL', `${path}: not a readable journal: ${(err as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    const uid = process.getuid?.();
    if (!st.isFile()) throw new UntrustedJournalError(path, 'is not a regular file');
    if (uid !== undefined && st.uid !== uid) throw new UntrustedJournalError(path, `belongs to uid ${st.uid}, not to us (${uid})`);
    if ((st.mode & 0o022) !== 0) throw new UntrustedJournalError(path, `can be written by others (mode ${(st.mode & 0o777).toString(8)})`);
    if (st.size > MAX_JOURNAL_BYTES) throw new VmiError('EJOURNAL', `${path}: ${st.size} bytes is too large for a journal`);
    const buf = Buffer.alloc(MAX_JOURNAL_BYTES + 1);
    let n = 0;
    for (let got; n < buf.length && (got = readSync(fd, buf, n, buf.length - n, null)) > 0;) n += got;
    if (n > MAX_JOURNAL_BYTES) throw new VmiError('EJOURNAL', `${path}: too large for a journal`);
    return buf.toString('utf8', 0, n);
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
    publishFileExclusive(path, JSON.stringify(entry, null, 1));
    fsyncDirectory(d);
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
    try {
      writeFileExclusive(tmp, JSON.stringify(this.#entry, null, 1));
      renameSync(tmp, this.path);
    } catch (err) {
      try { unlinkSync(tmp); } catch { /* not made, or renamed already */ }
      throw err;
    }
    fsyncDirectory(dirname(this.path));
  }

  /** Deletes the file: the target is back as it was. */
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

/** Reads and checks one journal file. */
export function readJournal(path: string): JournalEntry {
  let data: unknown;
  try {
    data = JSON.parse(readTrustedFile(path));
  } catch (err) {
    if (err instanceof VmiError) throw err;
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
    !Object.values(e.registers).every(wide) || (e.gadget !== undefined && !hex(e.gadget)) || (e.redirectedAt !== undefined && typeof e.redirectedAt !== 'string') ||
    (e.scratch !== undefined && (typeof e.scratch !== 'object' || e.scratch === null || !hex(e.scratch.address) || !Number.isSafeInteger(e.scratch.length))) ||
    (e.children !== undefined && (!Array.isArray(e.children) || e.children.length > MAX_CHILDREN || !e.children.every((c) => typeof c === 'object' && c !== null && Number.isInteger(c.pid) && c.pid > 0 && hex(c.task))))
  ) {
    throw new VmiError('EJOURNAL', `${path}: not a vmictl injection journal (version ${JOURNAL_VERSION})`);
  }
  return e;
}

/** The journal files in the directory (oldest first); a directory that is not private is refused. */
export function listJournals(dir = journalDirectory()): string[] {
  try {
    checkJournalDirectory(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const names = readdirSync(dir);
  return names.filter((n) => /^inject-\d+-\d+-\d+\.json$/.test(n)).sort((a, b) => Number(a.split('-')[3].slice(0, -5)) - Number(b.split('-')[3].slice(0, -5))).map((n) => join(dir, n));
}

export function hex(v: bigint): string {
  return v.toString(16);
}

export function fromHex(s: string): bigint {
  return BigInt(`0x${s}`);
}
