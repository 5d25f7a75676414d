/**
 * Host filesystem safety for copies out of a container: names come from the guest (a hostile
 * kernel can return anything from getdents64), and nothing may be written outside the directory
 * the user named. A name is used only if it is one path component: not empty, not `.` or `..`, no
 * `/` and no NUL, at most NAME_MAX bytes. Control characters and non-UTF-8 bytes are legal in a
 * Linux name and are kept byte for byte (paths are handled as Buffers, never decoded); they are
 * escaped whenever a name is printed. Local paths are joined from checked components only.
 */
import { sep } from 'node:path';
import { escapeForTerminal } from '../util/escape';

/** Longest file name component (NAME_MAX). */
export const NAME_MAX = 255;

/** Why `name` cannot be used as one local path component, or null when it can. */
export function unsafeComponent(name: Uint8Array): string | null {
  if (name.length === 0) return 'empty name';
  if (name.length > NAME_MAX) return `name longer than ${NAME_MAX} bytes`;
  if (name.includes(0)) return 'name contains NUL';
  if (name.includes(0x2f)) return 'name contains /';
  if (name.length === 1 && name[0] === 0x2e) return 'name is .';
  if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) return 'name is ..';
  return null;
}

/** `root/a/b`, as bytes, from checked components; throws if any is unsafe. */
export function joinInside(root: Buffer | string, components: readonly Uint8Array[]): Buffer {
  const parts: Buffer[] = [Buffer.isBuffer(root) ? root : Buffer.from(root, 'utf8')];
  for (const c of components) {
    const why = unsafeComponent(c);
    if (why) throw new RangeError(`unsafe path component ${JSON.stringify(printableName(c))}: ${why}`);
    parts.push(Buffer.from(sep), Buffer.from(c));
  }
  return Buffer.concat(parts);
}

/** A guest name for messages: decoded leniently and escaped for a terminal. */
export function printableName(name: Uint8Array): string {
  return escapeForTerminal(Buffer.from(name).toString('utf8'));
}

/** The last component of a guest path (`/a/b/` → `b`); null for `/` or a path ending in `..`. */
export function lastComponent(path: string): string | null {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  const last = parts[parts.length - 1];
  if (last === undefined || last === '..') return null;
  return last;
}

/** `CONTAINER:PATH` → its parts, or null for a local path (`./a:b` and `/x:y` are local). */
export function parseCopyOperand(text: string): { container: string; path: string } | null {
  if (text === '-' || text.startsWith('/') || text.startsWith('.')) return null;
  const colon = text.indexOf(':');
  if (colon <= 0) return null;
  let container = text.slice(0, colon);
  let path = text.slice(colon + 1);
  // `pid:123:/etc` names a container by pid, as everywhere else
  if (container === 'pid') {
    const second = path.indexOf(':');
    if (second < 0) return null;
    container = `pid:${path.slice(0, second)}`;
    path = path.slice(second + 1);
  }
  if (path === '') path = '/';
  return { container, path };
}
