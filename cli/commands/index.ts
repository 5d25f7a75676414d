import type { Command } from 'commander';
import { registerStatus } from './status';
import { registerKernel } from './kernel';
import { registerContainers } from './containers';
import { registerProfile } from './profile';
import { registerSyscall } from './syscall';
import { registerExec } from './exec';
import { registerPause } from './pause';
import { registerKill } from './kill';
import { registerStop } from './stop';
import { registerCp } from './cp';
import { registerCheck } from './check';
import { registerCompletion } from './completion';
import { registerMan } from './man';

/** Every command vmictl offers; each module registers one topic on the program. */
export const commands: Array<(program: Command) => void> = [registerStatus, registerKernel, registerContainers, registerProfile, registerSyscall, registerExec, registerPause, registerKill, registerStop, registerCp, registerCheck, registerCompletion, registerMan];
