/**
 * `vmictl exec`: run a command inside a container, through injected system calls only. By default
 * the command is confined as the container's own processes (exec-confined.ts); `privileged` starts
 * it from the VM's root instead (exec-privileged.ts).
 */
import { VmiError } from '../errors';
import type { Vm } from '../vm';
import { resolveContainer } from '../containers/resolve';
import { execConfined } from './exec-confined';
import { execPrivileged } from './exec-privileged';
import { checkSpec, type ExecResult, type ExecSpec } from './exec-relay';

export type { ExecResult, ExecSource, ExecSpec } from './exec-relay';

/** Runs `spec.command` in the container; resolves with its exit status once it has ended. */
export async function execInContainer(vm: Vm, spec: ExecSpec): Promise<ExecResult> {
  checkSpec(spec);
  const list = await vm.listContainers({ signal: spec.signal });
  const c = resolveContainer(list.containers, spec.container);
  const init = c.processes.find((p) => p.pid === c.initPid);
  if (!init) throw new VmiError('ENOPROCESS', `container ${c.name ?? c.id} has no init process (${c.initPid})`);
  return spec.privileged ? execPrivileged(vm, list, c, init, spec) : execConfined(vm, c, init, spec);
}
