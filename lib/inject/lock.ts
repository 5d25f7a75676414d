/**
 * One injector per VM at a time: two vmictl runs on one VM would each take the other's breakpoint
 * hits for foreign stops and step the other's hijacked thread on with injected registers. The lock
 * is a file in the default journal directory (whatever directory a run keeps its journals in),
 * named after the VM's QMP socket (its device and inode for a unix
 * socket, so that two spellings of one path meet), created exclusively and holding the owner's
 * pid. A lock whose owner is gone (killed: it could not remove it) is taken over. Sessions of one
 * process share the lock (a helper session inside another, or a library user's two sessions).
 */
import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { VmiError } from '../errors';
import { ensureJournalDirectory } from './journal';
import { processAlive } from './stale';

/** Another process injects into this VM now. */
export class InjectorBusyError extends VmiError {
  readonly owner: number;
  readonly lockPath: string;
  constructor(owner: number, lockPath: string) {
    super('EBUSY', `another vmictl (pid ${owner}) is injecting into this VM (lock ${lockPath}): wait for it to end`);
    this.owner = owner;
    this.lockPath = lockPath;
  }
}

/** The VM's identity for the lock: a unix socket's device and inode, else its address. */
export function vmIdentity(qmp: string): string {
  const unix = /^unix:(\/[^,]*)/.exec(qmp);
  if (unix) {
    try {
      const st = statSync(unix[1]);
      return `unix-inode:${st.dev}:${st.ino}`;
    } catch {
      // not there (yet): its path is all there is
    }
  }
  return qmp;
}

export function lockPathFor(qmp: string, dir?: string): string {
  // one place for every run on this host, whatever journal directory each uses
  const name = createHash('sha256').update(vmIdentity(qmp)).digest('hex').slice(0, 24);
  return join(ensureJournalDirectory(dir), `lock-${name}`);
}

/** Holders in this process, by lock path. */
const held = new Map<string, number>();

function owner(path: string): number | null {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Takes the VM's injector lock (or another hold of this process's); returns its release. */
export function lockVm(qmp: string, dir?: string): () => void {
  const path = lockPathFor(qmp, dir);
  const mine = held.get(path);
  if (mine === undefined) {
    for (let attempt = 0; ; attempt++) {
      try {
        const fd = openSync(path, 'wx', 0o600);
        try {
          writeSync(fd, `${process.pid}\n`);
        } finally {
          closeSync(fd);
        }
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new VmiError('ELOCK', `cannot create the injector lock ${path}: ${(err as Error).message}`);
      }
      const pid = owner(path);
      if (pid === null) continue;
      // a pid of 0: a file being written, or a torn one; one more look, then it counts as dead
      if (pid !== process.pid && (pid === 0 ? attempt === 0 : processAlive(pid))) {
        if (pid !== 0) throw new InjectorBusyError(pid, path);
        continue;
      }
      if (attempt >= 3) throw new VmiError('ELOCK', `cannot take the injector lock ${path}`);
      try {
        unlinkSync(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  }
  held.set(path, (mine ?? 0) + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const n = (held.get(path) ?? 1) - 1;
    if (n > 0) return void held.set(path, n);
    held.delete(path);
    try {
      if (owner(path) === process.pid) unlinkSync(path);
    } catch {
      // gone already
    }
  };
}
