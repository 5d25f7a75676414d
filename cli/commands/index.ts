import type { Command } from 'commander';
import { registerStatus } from './status';

/** Every command vmictl offers; each module registers one topic on the program. */
export const commands: Array<(program: Command) => void> = [registerStatus];
