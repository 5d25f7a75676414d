/**
 * Comparing what confines a process, as the process itself sees it: `id`, the capability sets,
 * NoNewPrivs and seccomp lines of /proc/self/status, the LSM label (/proc/self/attr/current,
 * where there is one) and /proc/self/cgroup. One shell line prints them all; it is run under
 * `vmictl exec` and under the ground truth's own exec (`runc exec` in the initramfs guest,
 * `docker exec` in a distribution guest), and the fields compared one by one.
 */
import type { Test } from 'tap';

/** One line of sh (busybox or dash) printing the confinement of the shell running it. */
export const CONFINEMENT_SCRIPT = "id; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status; "
  + "printf 'lsm:\\t%s\\n' \"$(cat /proc/self/attr/current 2>/dev/null || echo none)\"; sed 's/^/cgroup:\\t/' /proc/self/cgroup";

export const CONFINEMENT_FIELDS = ['id', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp', 'Seccomp_filters', 'lsm', 'cgroup'] as const;

/** The fields of CONFINEMENT_SCRIPT's output (a field seen twice, cgroup v1 lines, is joined). */
export function parseConfinement(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const raw of text.replace(/\r/g, '').split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith('uid=')) { m.set('id', line); continue; }
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const k = line.slice(0, i);
    const v = line.slice(i + 1).trim();
    m.set(k, m.has(k) ? `${m.get(k)} ${v}` : v);
  }
  return m;
}

/**
 * The confinement of a process as /proc/<pid>/status and attr/current show it from outside (the
 * container's init read from the guest's root namespace): no id line, no cgroup (its path is the
 * root namespace's view), but the same capability, NoNewPrivs and seccomp lines.
 */
export const OUTSIDE_SCRIPT = (pid: number) => `grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/${pid}/status; `
  + `printf 'lsm:\\t%s\\n' "$(cat /proc/${pid}/attr/current 2>/dev/null || echo none)"`;

/**
 * Runs CONFINEMENT_SCRIPT through `ours` and `truth` and checks every field `fields` names
 * (default: all that the truth printed) is the same; returns both, parsed.
 */
export async function compareConfinement(
  t: Test,
  what: string,
  ours: (script: string) => Promise<string>,
  truth: (script: string) => Promise<string>,
  fields: readonly string[] = CONFINEMENT_FIELDS,
): Promise<{ ours: Map<string, string>; truth: Map<string, string> }> {
  const want = parseConfinement(await truth(CONFINEMENT_SCRIPT));
  const got = parseConfinement(await ours(CONFINEMENT_SCRIPT));
  for (const f of fields) {
    if (!want.has(f)) continue;
    t.equal(got.get(f), want.get(f), `${what}: ${f} ${JSON.stringify(want.get(f))}`);
  }
  t.ok(want.has('CapBnd') && want.has('NoNewPrivs'), `${what}: the ground truth printed the capability and NoNewPrivs lines`);
  return { ours: got, truth: want };
}
