/**
 * Which process of a container `vmictl exec` forks the command from. The command inherits that
 * process's confinement (credentials, capability sets, securebits, LSM label, seccomp filter,
 * no_new_privs, namespaces, cgroup, root), so the choice decides what it may do:
 * - without -u, a process confined exactly as the container's init (same ids, the same five
 *   capability sets, securebits, seccomp filter and no_new_privs, namespaces and cgroup), init first;
 * - with -u, one that can also take another user (CAP_SETUID and CAP_SETGID in its effective
 *   set) and is otherwise bounded as init (bounding set, seccomp, no_new_privs, namespaces,
 *   cgroup); none: a PrivilegeError, since the user alone is what -u widens.
 */
import type { Container, ProcessInfo } from '../containers/model';
import { CAP_SETGID, CAP_SETUID, hasCapability, type TaskConfinement } from '../kernel/helpers/cred';
import { PrivilegeError } from './errors';

export interface SourceCandidate {
  process: ProcessInfo;
  confinement: TaskConfinement;
}

const NS_KINDS = ['mnt', 'uts', 'ipc', 'net', 'pid', 'user', 'cgroup', 'time'] as const;

function sameBounds(a: TaskConfinement, b: TaskConfinement): boolean {
  return a.capBset === b.capBset && a.seccompMode === b.seccompMode && a.seccompFilter === b.seccompFilter && a.noNewPrivs === b.noNewPrivs;
}

function sameCredentials(a: TaskConfinement, b: TaskConfinement): boolean {
  return sameBounds(a, b) && a.uid === b.uid && a.gid === b.gid && a.euid === b.euid && a.egid === b.egid
    && a.capInheritable === b.capInheritable && a.capPermitted === b.capPermitted && a.capEffective === b.capEffective
    && a.capAmbient === b.capAmbient && a.securebits === b.securebits;
}

function samePlace(p: ProcessInfo, init: ProcessInfo): boolean {
  return p.cgroup === init.cgroup && NS_KINDS.every((k) => p.namespaces[k] === init.namespaces[k]);
}

/** Whether a process can be injected and forked from (not a kernel thread, not a zombie, not stopped). */
function runnable(p: ProcessInfo): boolean {
  return !p.kernelThread && p.state !== 'Z' && p.state !== 'X' && p.state !== 'T' && p.state !== 't';
}

export function canSetUser(c: TaskConfinement): boolean {
  return hasCapability(c.capEffective, CAP_SETUID) && hasCapability(c.capEffective, CAP_SETGID);
}

/**
 * The processes fit to fork from, init first. `init` is the container's init with its
 * confinement; `user` is -u's, if given.
 */
export function forkSources(c: Container, init: SourceCandidate, others: readonly SourceCandidate[], user?: { uid: number; gid?: number }): ProcessInfo[] {
  const all = [init, ...others.filter((o) => o.process.pid !== init.process.pid)].filter((o) => runnable(o.process) && samePlace(o.process, init.process));
  const asInit = all.filter((o) => sameCredentials(o.confinement, init.confinement));
  const wantsOther = user !== undefined && !(user.uid === init.confinement.uid && user.uid === init.confinement.euid && (user.gid ?? user.uid) === init.confinement.gid && (user.gid ?? user.uid) === init.confinement.egid);
  if (!wantsOther) return asInit.map((o) => o.process);
  // -u: a process as init that can set the user, else one bounded as init that can
  const able = [...asInit, ...all.filter((o) => !asInit.includes(o) && sameBounds(o.confinement, init.confinement))].filter((o) => canSetUser(o.confinement));
  if (able.length === 0) {
    const ic = init.confinement;
    throw new PrivilegeError(c.name ?? c.id, `exec -u ${user.uid}${user.gid === undefined ? '' : `:${user.gid}`}: no process of container ${c.name ?? c.id} can take another user (its init, pid ${init.process.pid}, runs as uid ${ic.euid} gid ${ic.egid} without CAP_SETUID and CAP_SETGID)`);
  }
  return able.map((o) => o.process);
}
