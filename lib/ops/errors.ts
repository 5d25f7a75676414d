/**
 * What container operations throw: a failure half-way says what was done and what was not, so the
 * user knows the state the container is in (an operation is all-or-nothing only where the kernel
 * offers it: a rename, a freeze written back).
 */
import { VmiError } from '../errors';

export class OperationError extends VmiError {
  /** What had been done in the guest when it failed (already undone where `undone` says so). */
  readonly done: readonly string[];
  /** What was not done. */
  readonly notDone: readonly string[];
  constructor(message: string, progress: { done?: readonly string[]; notDone?: readonly string[] } = {}, options?: { cause?: unknown }) {
    const done = progress.done ?? [];
    const notDone = progress.notDone ?? [];
    const parts = [message];
    if (done.length) parts.push(`done: ${done.join('; ')}`);
    if (notDone.length) parts.push(`not done: ${notDone.join('; ')}`);
    super('EOPERATION', parts.join('. '), options);
    this.done = done;
    this.notDone = notDone;
  }
}

/** The container is not in a state the operation applies to (pausing a paused one). */
export class ContainerStateError extends VmiError {
  constructor(message: string) {
    super('ESTATE', message);
  }
}

/** A copy would write over an existing local file and --force was not given. */
export class WouldOverwriteError extends VmiError {
  readonly path: string;
  constructor(path: string) {
    super('EEXIST', `${path} exists (use --force to overwrite)`);
    this.path = path;
  }
}

/**
 * A guest file gave more bytes than fstat said it has (it grew while copied, or the kernel lies);
 * the copy of that file stops there and its partial copy is removed.
 */
export class FileGrewError extends VmiError {
  readonly path: string;
  readonly size: bigint;
  constructor(path: string, size: bigint, why: string) {
    super('EGREW', `${path}: ${why}: not copied`);
    this.path = path;
    this.size = size;
  }
}

/**
 * What was asked needs more privilege than the container's own processes have (exec -u of a user
 * none of them can take): only --privileged, asked for explicitly, goes beyond them.
 */
export class PrivilegeError extends VmiError {
  readonly container: string;
  constructor(container: string, message: string) {
    super('EPRIVILEGE', `${message}; --privileged runs the command from the VM's root instead, with every privilege`);
    this.container = container;
  }
}
