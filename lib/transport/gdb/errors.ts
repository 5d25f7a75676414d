/**
 * Errors specific to the gdb remote protocol. All are VmiErrors; the reply-carrying ones are
 * CommandErrors with the packet that was sent (`command`) and the reply (`reply`).
 */
import { CommandError, ProtocolError, VmiError } from '../../errors';

/** errno values as the gdb protocol uses them (gdb's fileio errno set; QEMU sends these for E replies). */
const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  9: 'EBADF',
  13: 'EACCES',
  14: 'EFAULT',
  16: 'EBUSY',
  22: 'EINVAL',
  28: 'ENOSPC',
  38: 'ENOSYS',
};

/**
 * The stub answered a well-formed request with `Enn` (or `E.text`).
 *
 * The protocol calls NN hexadecimal, but QEMU writes errno values in decimal digits (`E14` is
 * EFAULT, `E22` is EINVAL), so `errno` reads the digits as decimal when they are all decimal, as
 * QEMU means them, and as hex otherwise. `reply` keeps the exact text.
 */
export class GdbErrorReply extends CommandError {
  /** The number in `Enn`, or undefined for the `E.message` form. */
  readonly errno: number | undefined;
  /** Symbolic name of `errno` when it is one gdb defines (E14 → EFAULT). */
  readonly errnoName: string | undefined;
  constructor(command: string, reply: string, message?: string) {
    const m = /^E([0-9a-fA-F]{1,2})$/.exec(reply);
    const errno = m ? Number.parseInt(m[1], /^\d+$/.test(m[1]) ? 10 : 16) : undefined;
    const errnoName = errno === undefined ? undefined : ERRNO_NAMES[errno];
    const text = reply.startsWith('E.') ? reply.slice(2) : errnoName ? `${reply} (${errnoName})` : reply;
    super(command, reply, message ?? `${command}: gdbstub replied ${text}`);
    this.errno = errno;
    this.errnoName = errnoName;
  }
}

/**
 * A memory access (`m`/`M`) failed: `address` and `length` are those of the packet that failed,
 * which is one piece of what the caller asked for when a read or write was split. `request` is
 * the whole range the caller asked for.
 */
export class GdbMemoryAccessError extends GdbErrorReply {
  readonly address: bigint;
  readonly length: number;
  readonly request: { address: bigint; length: number; index?: number };
  constructor(
    command: string,
    reply: string,
    address: bigint,
    length: number,
    request: { address: bigint; length: number; index?: number },
    physical: boolean | undefined,
  ) {
    const what = command.startsWith('M') ? 'write' : 'read';
    const space = physical === true ? 'physical' : physical === false ? 'virtual' : 'guest';
    const errno = reply.startsWith('E14') ? ' (page not mapped, or outside RAM)' : '';
    super(
      command,
      reply,
      `${what} of ${length} bytes at ${space} 0x${address.toString(16)} failed with ${reply}${errno}` +
        (request.address !== address || request.length !== length
          ? ` (part of ${request.length} bytes at 0x${request.address.toString(16)}${request.index === undefined ? '' : `, range #${request.index}`})`
          : ''),
    );
    this.address = address;
    this.length = length;
    this.request = request;
  }
}

/** A `Z`/`z` breakpoint or watchpoint request was refused. */
export class GdbBreakpointError extends GdbErrorReply {
  readonly type: number;
  readonly address: bigint;
  readonly kind: number;
  constructor(command: string, reply: string, type: number, address: bigint, kind: number) {
    const insert = command.startsWith('Z');
    const hint =
      insert && (type === 1 || type === 2 || type === 3 || type === 4)
        ? ' (under KVM hardware breakpoints and watchpoints share the 4 debug registers)'
        : '';
    super(
      command,
      reply,
      `${insert ? 'inserting' : 'removing'} ${BREAKPOINT_NAMES[type] ?? `type ${type}`} at 0x${address.toString(16)} failed with ${reply}${hint}`,
    );
    this.type = type;
    this.address = address;
    this.kind = kind;
  }
}

const BREAKPOINT_NAMES: Record<number, string> = {
  0: 'software breakpoint',
  1: 'hardware breakpoint',
  2: 'write watchpoint',
  3: 'read watchpoint',
  4: 'access watchpoint',
};

/** The stub does not implement a packet (it answered with the empty reply). */
export class GdbUnsupportedError extends CommandError {
  constructor(command: string, what?: string) {
    super(command, '', `${what ?? command}: not supported by this gdbstub (empty reply)`);
  }
}

/** A request was made in a state that does not allow it (the target is running, or detached). */
export class GdbStateError extends VmiError {
  readonly state: string;
  constructor(state: string, message: string) {
    super(state === 'running' ? 'ERUNNING' : 'ESTATE', message);
    this.state = state;
  }
}

/** A caller passed an argument that cannot be turned into a packet (bad length, unknown register). */
export class GdbArgumentError extends VmiError {
  constructor(message: string) {
    super('EARGUMENT', message);
  }
}

/**
 * A reply arrived with a bad checksum and could not be asked for again (several requests were in
 * flight: a '-' would make the stub resend its latest packet, not this one). Reads retry on it.
 */
export class GdbChecksumError extends ProtocolError {
  constructor(command: string, data: string) {
    super(`${command}: reply had a bad checksum`, data);
  }
}
