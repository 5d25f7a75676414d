/**
 * `cp - CONTAINER:DIR`: a tar stream from the host extracted into DIR by a process of the
 * container. The reader (tar.ts) has already reduced each entry's path to safe components below
 * DIR and refused the archive at the first entry that would leave it; here every directory on the
 * way is entered by fd with O_NOFOLLOW, so a symlink already in the container is not followed
 * either (that entry fails and is reported). Files are written all or nothing (guest-write.ts),
 * with their mode and mtime; owners only with -a, and only as far as the container's process may
 * chown. A directory's mode is given at the end, so that a read-only one can still be filled.
 */
import { VmiError } from '../errors';
import { isPerEntry, MAX_ENTRIES, noteEntry, type CopyOptions, type CopyReport } from './copy-common';
import { GuestFs, O_DIRECTORY, O_NOFOLLOW, O_PATH, O_RDONLY } from './guest-fs';
import { guestDirectory, writeGuestFile, type EntryMeta, type Source } from './guest-write';
import { printableName } from './names';
import { TarReader, type TarEntry } from './tar';

const EEXIST = 17;

/**
 * The open directories from DIR down to the last entry's parent: tar streams list a tree depth
 * first, so each entry mostly reuses them rather than opening its path again.
 */
class DirCursor {
  readonly #fs: GuestFs;
  readonly #root: number;
  #stack: { name: Buffer; fd: number }[] = [];

  constructor(fs: GuestFs, root: number) {
    this.#fs = fs;
    this.#root = root;
  }

  /** An fd of DIR/components (made, 0755, where missing, as tar does). */
  async at(components: readonly Buffer[]): Promise<number> {
    let keep = 0;
    while (keep < this.#stack.length && keep < components.length && this.#stack[keep].name.equals(components[keep])) keep++;
    await this.#closeFrom(keep);
    for (let i = keep; i < components.length; i++) {
      const parent = i ? this.#stack[i - 1].fd : this.#root;
      const e = await this.#fs.mkdirAt(parent, components[i], 0o755);
      if (e && e !== EEXIST) throw new VmiError('ESYSCALL', `mkdirat ${printableName(components[i])}: errno ${e}`);
      const fd = await this.#fs.openAt(parent, components[i], O_PATH | O_DIRECTORY | O_NOFOLLOW);
      this.#stack.push({ name: components[i], fd });
    }
    return components.length ? this.#stack[components.length - 1].fd : this.#root;
  }

  async #closeFrom(n: number): Promise<void> {
    while (this.#stack.length > n) await this.#fs.close(this.#stack.pop()!.fd);
  }

  close(): Promise<void> {
    return this.#closeFrom(0);
  }
}

function metaOf(e: TarEntry, opts: CopyOptions): EntryMeta {
  return { mtime: e.mtime, ...(opts.archive ? { owner: { uid: e.uid, gid: e.gid } } : {}) };
}

async function extractEntry(fs: GuestFs, cursor: DirCursor, reader: TarReader, e: TarEntry, report: CopyReport, opts: CopyOptions, dirModes: { components: Buffer[]; mode: number }[]): Promise<void> {
  const parentPath = e.components.slice(0, -1);
  const name = e.components[e.components.length - 1];
  if (e.kind === 'directory') {
    if (!name) return; // DIR itself (./): left as it is
    const fd = await guestDirectory(fs, await cursor.at(parentPath), name, e.mode, metaOf(e, opts), true);
    await fs.close(fd);
    if (dirModes.length < MAX_ENTRIES) dirModes.push({ components: e.components, mode: e.mode });
    report.directories++;
    return;
  }
  if (e.kind === 'other') {
    noteEntry(report, 'skipped', printableName(e.path), `tar type ${JSON.stringify(e.typeflag)} (device, fifo or other): not copied`);
    return;
  }
  const parent = await cursor.at(parentPath);
  if (e.kind === 'file') {
    await writeGuestFile(fs, parent, name, reader.body(), e.mode, report, opts, e.size, metaOf(e, opts));
    return;
  }
  await fs.unlinkAt(parent, name);
  if (e.kind === 'symlink') {
    await fs.symlinkAt(e.linkname!, parent, name);
    if (opts.archive) await fs.chown(parent, name, e.uid, e.gid);
    report.symlinks++;
    return;
  }
  // a hard link to an entry extracted before: its parent is opened apart, the cursor keeps this one
  const target = e.linkComponents!;
  const targetParent = await openBelow(fs, cursor, target.slice(0, -1));
  try {
    await fs.linkAt(targetParent.fd, target[target.length - 1], parent, name);
    report.files++;
  } finally {
    await targetParent.close();
  }
}

/** DIR/components opened on its own (every step O_NOFOLLOW), for a hard link's target. */
async function openBelow(fs: GuestFs, cursor: DirCursor, components: readonly Buffer[]): Promise<{ fd: number; close: () => Promise<void> }> {
  const opened: number[] = [];
  let fd = await cursor.at([]);
  try {
    for (const c of components) {
      fd = await fs.openAt(fd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW);
      opened.push(fd);
    }
  } catch (err) {
    for (const f of opened) await fs.close(f);
    throw err;
  }
  return { fd, close: async () => { for (const f of opened) await fs.close(f); } };
}

/** Extracts the tar stream `source` into the guest directory `dirfd` (see the file's comment). */
export async function extractTar(fs: GuestFs, dirfd: number, source: Source, report: CopyReport, opts: CopyOptions): Promise<void> {
  const reader = new TarReader(source);
  const cursor = new DirCursor(fs, dirfd);
  const dirModes: { components: Buffer[]; mode: number }[] = [];
  try {
    for (;;) {
      // the next header may be slow to come (a pipe): the VM runs meanwhile
      const e = await fs.s.awaitHost(reader.next());
      if (!e) break;
      try {
        await extractEntry(fs, cursor, reader, e, report, opts, dirModes);
      } catch (err) {
        if (!isPerEntry(err)) throw err;
        noteEntry(report, 'errors', printableName(e.path), (err as Error).message);
      }
    }
    // children before their parents (a tar lists a directory before its entries), so that a
    // read-only directory is made so only once nothing more goes in it
    for (const d of dirModes.reverse()) {
      try {
        const parent = await cursor.at(d.components.slice(0, -1));
        const fd = await fs.openAt(parent, d.components[d.components.length - 1], O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        try {
          await fs.fchmod(fd, d.mode);
        } finally {
          await fs.close(fd);
        }
      } catch (err) {
        if (!isPerEntry(err)) throw err;
        noteEntry(report, 'errors', printableName(Buffer.concat(d.components.flatMap((c, i) => (i ? [Buffer.from('/'), c] : [c])))), `its mode: ${(err as Error).message}`);
      }
    }
  } finally {
    await cursor.close();
  }
}
