/**
 * Container management from the hypervisor with docker's verbs, by syscall injection only:
 * pause/unpause (cgroup freezer, or SIGSTOP/SIGCONT), kill/stop (signals from a root-namespace
 * helper, checked against the task list), exec (forked from a process of the container, confined
 * as it), cp (files and trees in and out, resolved inside the container's root, written all or
 * nothing, never outside the local destination).
 */
export { OperationError, ContainerStateError, WouldOverwriteError, PrivilegeError } from './errors';
export { parseSignal, signalName, SIGNALS, type Signal } from './signals';
export { openRootHelper, type HelperOptions } from './helper';
export { parseCgroupMounts, cgroupPathUnder, unescapeMountField, type CgroupMount, type CgroupMounts } from './mounts';
export { pauseContainer, unpauseContainer, pauseContainers, unpauseContainers, pauseMethod, type PauseMethod, type PauseResult } from './pause';
export { killContainer, stopContainer, killContainers, stopContainers, type KillOptions, type KillResult, type StopOptions, type StopResult } from './kill';
export { eachContainer, type BatchOutcome } from './batch';
export { signalProcesses, type SignalOutcome } from './signal';
export { snapshot, findContainer, stillAlive, containerLabel } from './snapshot';
export { GuestFs, parseRawDirents, parseStat, fileKind, type GuestStat, type RawDirent } from './guest-fs';
export { unsafeComponent, joinInside, printableName, lastComponent, parseCopyOperand, NAME_MAX } from './names';
export { copyFromContainer, type Sink } from './cp-out';
export { copyToContainer, rechunk, type Source } from './cp-in';
export { CHUNK, type CopyOptions, type CopyReport } from './copy-common';
export { execInContainer, type ExecSpec, type ExecResult, type ExecSource } from './exec';
