/**
 * Where the cgroup hierarchies are mounted, from the text of /proc/self/mountinfo as a guest
 * process reads it (proc_pid_mountinfo(5)): `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] -
 * FSTYPE SOURCE SUPEROPTIONS`, with space, tab, newline and backslash in paths written as octal
 * escapes. Guest data: lines that do not parse are skipped.
 */

export interface CgroupMount {
  /** Where it is mounted, in the reading process's mount namespace. */
  mountPoint: string;
  /** The cgroup the mount shows as its top (`/` unless a cgroup namespace or bind mount narrows it). */
  root: string;
}

export interface CgroupMounts {
  v2?: CgroupMount;
  /** The v1 hierarchy that has the freezer controller. */
  freezer?: CgroupMount;
}

/** Most lines looked at (a guest could mount a great many things). */
const MAX_LINES = 100_000;

/** `\040` → space, as show_mountinfo() escapes with mangle(). */
export function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseCgroupMounts(text: string): CgroupMounts {
  const out: CgroupMounts = {};
  const lines = text.split('\n', MAX_LINES);
  for (const line of lines) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-', 6);
    if (dash < 0 || fields.length < dash + 4) continue;
    const fstype = fields[dash + 1];
    const mount = { root: unescapeMountField(fields[3]), mountPoint: unescapeMountField(fields[4]) };
    if (!mount.mountPoint.startsWith('/') || !mount.root.startsWith('/')) continue;
    // the first one mounted wins: later ones may be over-mounts inside a container's view
    if (fstype === 'cgroup2') out.v2 ??= mount;
    else if (fstype === 'cgroup' && fields[dash + 3].split(',').includes('freezer')) out.freezer ??= mount;
  }
  return out;
}

/**
 * The directory of `cgroup` (a path from the hierarchy's real root) under a mount whose top is
 * `mount.root`; null when the mount does not show it.
 */
export function cgroupPathUnder(mount: CgroupMount, cgroup: string): string | null {
  const root = mount.root === '/' ? '' : mount.root.replace(/\/+$/, '');
  if (cgroup !== root && !cgroup.startsWith(`${root}/`)) return null;
  const rest = cgroup.slice(root.length);
  return rest === '' ? '/' : rest;
}
