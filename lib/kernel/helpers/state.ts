/**
 * The one-letter task state `ps` shows, computed as fs/proc/array.c's get_task_state(): the bits
 * of __state | exit_state within TASK_REPORT pick a letter of "RSDTtXZP", and TASK_IDLE is "I".
 */
import type { KObject } from '../object';

const LETTERS = 'RSDTtXZP';
const TASK_REPORT = 0x7f;
const TASK_UNINTERRUPTIBLE = 0x2;
const TASK_NOLOAD = 0x400;

/** `task_state_index()` as a letter, from a task_struct read at least up to exit_state. */
export function taskStateLetter(task: KObject): string {
  // __state since 5.14 (commit 2f064a59a11f), state before
  const stateField = task.profile.hasField('task_struct', '__state') ? '__state' : 'state';
  const state = Number(task.uint(stateField) & 0xffffffffn);
  const exitState = task.i32('exit_state');
  if (state === (TASK_UNINTERRUPTIBLE | TASK_NOLOAD) && exitState === 0) return 'I';
  const bits = (state | exitState) & TASK_REPORT;
  if (bits === 0) return 'R';
  return LETTERS[Math.min(31 - Math.clz32(bits) + 1, LETTERS.length - 1)];
}
