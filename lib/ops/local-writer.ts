/**
 * Writing what comes out of a container onto the host, all or nothing per file: data goes to a
 * temporary file created with O_EXCL next to the final name (never through an existing name or
 * symlink), and only when complete is it given its name — link() when nothing may be
 * overwritten (it fails if the name exists, atomically), rename() with --force (which replaces a
 * symlink itself, never what it points to). On failure the temporary file is removed.
 */
import { chmodSync, closeSync, fchmodSync, fchownSync, lchownSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, renameSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import { writeFully } from '../util/host-file';
import { WouldOverwriteError } from './errors';

/** A temporary name in the same directory as `final` (so that rename and link stay on one filesystem). */
function tempBeside(final: Buffer): Buffer {
  const dir = dirname(final.toString('latin1'));
  return Buffer.concat([Buffer.from(dir, 'latin1'), Buffer.from(`/.vmictl-cp-${randomBytes(6).toString('hex')}.tmp`)]);
}

function exists(p: Buffer): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * The permission bits a guest file or directory gets on the host: no setuid, setgid or sticky bit
 * and the user's umask applied, as `docker cp` and `tar` without `-p` do; a guest cannot make a
 * host file 0777 or setuid.
 */
export function hostMode(guestMode: number): number {
  // process.umask() without an argument reads it (the read-and-set race is Node's only with workers)
  return guestMode & 0o777 & ~process.umask();
}

function display(p: Buffer): string {
  return p.toString('utf8');
}

/** A guest file's owner, given to its host copy (only asked for as root, with -a). */
export interface Owner {
  uid: number;
  gid: number;
}

export interface LocalFile {
  write(data: Buffer): void;
  /** Gives the file its final name with the guest's `mode`, through hostMode(), and `owner` if given. */
  commit(mode: number, owner?: Owner): void;
  /** Removes the temporary file (after a failure). */
  abort(): void;
}

/** Starts a local file that becomes `final` on commit; `force` allows replacing an existing one. */
export function createLocalFile(final: Buffer, force: boolean): LocalFile {
  if (!force && exists(final)) throw new WouldOverwriteError(display(final));
  const tmp = tempBeside(final);
  const fd = openSync(tmp, 'wx', 0o600);
  let open = true;
  const closeFd = () => {
    if (open) {
      open = false;
      closeSync(fd);
    }
  };
  return {
    write(data: Buffer) {
      writeFully(fd, data);
    },
    commit(mode: number, owner?: Owner) {
      try {
        // chown first: it clears set-id bits, which hostMode() never gives anyway
        if (owner) fchownSync(fd, owner.uid, owner.gid);
        fchmodSync(fd, hostMode(mode));
        fsyncSync(fd);
        closeFd();
        if (force) renameSync(tmp, final);
        else {
          try {
            linkSync(tmp, final);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new WouldOverwriteError(display(final));
            throw err;
          }
          unlinkSync(tmp);
        }
      } catch (err) {
        this.abort();
        throw err;
      }
    },
    abort() {
      try {
        closeFd();
      } finally {
        rmSync(tmp, { force: true });
      }
    },
  };
}

/** A symlink `final` → `target` (bytes as they were); never follows anything. */
export function createLocalSymlink(final: Buffer, target: Buffer, force: boolean, owner?: Owner): void {
  if (!force) {
    try {
      symlinkSync(target, final);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new WouldOverwriteError(display(final));
      throw err;
    }
    if (owner) lchownSync(final, owner.uid, owner.gid);
    return;
  }
  const tmp = tempBeside(final);
  symlinkSync(target, tmp);
  try {
    if (owner) lchownSync(tmp, owner.uid, owner.gid);
    renameSync(tmp, final);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Gives a directory made by createLocalDirectory() the guest's `mode`, through hostMode(), and `owner` if given. */
export function finishLocalDirectory(path: Buffer, guestMode: number, owner?: Owner): void {
  // lchown: the name was made a real directory by createLocalDirectory(), and is never followed
  if (owner) lchownSync(path, owner.uid, owner.gid);
  chmodSync(path, hostMode(guestMode));
}

/**
 * A directory `path` to write into: made new (0700 while the copy fills it), or, with `force`, an
 * existing real directory (a symlink or a file in its place is removed first, so the copy never
 * goes through a link). Returns whether it was made.
 */
export function createLocalDirectory(path: Buffer, force: boolean): boolean {
  try {
    mkdirSync(path, { mode: 0o700 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if (!force) throw new WouldOverwriteError(display(path));
    const st = lstatSync(path);
    if (st.isDirectory()) return false;
    unlinkSync(path);
    mkdirSync(path, { mode: 0o700 });
    return true;
  }
}
