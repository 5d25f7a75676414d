/** The JSON of `vmictl syscall` and `vmictl recover`. */
import type { RecoverOutcome } from '../../lib/inject/recover';
import type { Utsname } from '../../lib/inject/structs';

export interface SyscallJson {
  /** the process the call was made in: host pid, pid in its namespace, comm (guest data) */
  target: { pid: number; nspid: number; comm: string };
  syscall: string;
  number: number;
  /** the return value, in decimal (it may not fit a JSON number) */
  result: string;
  /** the error's name when the call failed */
  errno?: string;
  /** each buf:N argument after the call, in hex */
  buffers?: string[];
  /** uname with no arguments: the fields of struct utsname (guest data) */
  uname?: Utsname;
}

export type RecoverJson = Pick<RecoverOutcome, 'journal' | 'pid' | 'comm' | 'action' | 'detail'>[];
