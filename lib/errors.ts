/**
 * One root error class with a stable `code`, and subclasses that carry the context needed to act
 * on a failure (the address, the command, the reply). Every error thrown by vmictl is a VmiError.
 */
export class VmiError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A connection could not be made, or was refused. */
export class ConnectionError extends VmiError {
  readonly address: string;
  constructor(address: string, message: string, options?: { cause?: unknown }) {
    super('ECONNECT', `${address}: ${message}`, options);
    this.address = address;
  }
}

/** The peer went away while requests were pending (or a request was made after close()). */
export class DisconnectedError extends VmiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EDISCONNECTED', message, options);
  }
}

/** A request did not complete in time. */
export class TimeoutError extends VmiError {
  readonly timeoutMs: number;
  readonly operation: string;
  constructor(operation: string, timeoutMs: number) {
    super('ETIMEDOUT', `${operation}: no answer within ${timeoutMs} ms`);
    this.operation = operation;
    this.timeoutMs = timeoutMs;
  }
}

/** The caller's AbortSignal fired. */
export class AbortError extends VmiError {
  constructor(operation: string, options?: { cause?: unknown }) {
    super('EABORTED', `${operation}: aborted`, options);
  }
}

/** vmictl was told to stop by a signal (Ctrl-C, SIGTERM, SIGHUP): the work ends, the guest is put back first. */
export class TerminatedError extends VmiError {
  readonly signal: NodeJS.Signals;
  /** The shell's convention for a command ended by a signal. */
  readonly exitCode: number;
  constructor(signal: NodeJS.Signals, signalNumber: number) {
    super('ETERMINATED', `stopped by ${signal}`);
    this.signal = signal;
    this.exitCode = 128 + signalNumber;
  }
}

/** The peer sent something that does not follow the protocol (bad checksum, oversized, garbage). */
export class ProtocolError extends VmiError {
  readonly data?: string;
  constructor(message: string, data?: string, options?: { cause?: unknown }) {
    super('EPROTO', data === undefined ? message : `${message}: ${JSON.stringify(data.slice(0, 200))}`, options);
    this.data = data;
  }
}

/** A well-formed request was answered with an error. */
export class CommandError extends VmiError {
  readonly command: string;
  readonly reply: string;
  constructor(command: string, reply: string, message?: string) {
    super('ECOMMAND', message ?? `${command}: failed with ${JSON.stringify(reply.slice(0, 200))}`);
    this.command = command;
    this.reply = reply;
  }
}

/** A virtual address could not be translated. */
export class PageFaultError extends VmiError {
  readonly address: bigint;
  readonly level: number;
  readonly entry: bigint;
  readonly layer: string;
  constructor(layer: string, address: bigint, level: number, entry: bigint, why = 'not present') {
    super('EFAULT', `${layer}: 0x${address.toString(16)} ${why} at level ${level} (entry 0x${entry.toString(16)})`);
    this.layer = layer;
    this.address = address;
    this.level = level;
    this.entry = entry;
  }
}

/** Physical memory that the backend cannot read (outside RAM, or the read failed). */
export class MemoryReadError extends VmiError {
  readonly address: bigint;
  readonly length: number;
  constructor(address: bigint, length: number, message: string, options?: { cause?: unknown }) {
    super('EMEMREAD', `read of ${length} bytes at 0x${address.toString(16)}: ${message}`, options);
    this.address = address;
    this.length = length;
  }
}

/** A symbol, type or field that the profile does not have. */
export class MissingSymbolError extends VmiError {
  readonly symbol: string;
  constructor(symbol: string, message?: string) {
    super('ENOSYM', message ?? `no symbol or field ${JSON.stringify(symbol)} in the profile`);
    this.symbol = symbol;
  }
}

/** The profile does not describe the running kernel. */
export class ProfileMismatchError extends VmiError {
  readonly expected: string;
  readonly found: string;
  constructor(expected: string, found: string) {
    super('EPROFILE', `profile is for ${JSON.stringify(expected)} but the guest runs ${JSON.stringify(found)}`);
    this.expected = expected;
    this.found = found;
  }
}

/** A guest structure is corrupt or hostile (cycle, absurd length, pointer out of range). */
export class ValidationError extends VmiError {
  readonly address?: bigint;
  constructor(message: string, address?: bigint) {
    super('EINVALID', address === undefined ? message : `${message} (at 0x${address.toString(16)})`);
    this.address = address;
  }
}

/** A syscall injection failed; `state` says what it left behind. */
export class InjectionError extends VmiError {
  readonly state: string;
  constructor(message: string, state: string, options?: { cause?: unknown }) {
    super('EINJECT', `${message} (${state})`, options);
    this.state = state;
  }
}

/**
 * A bound the user can raise was reached (guest memory read per command, time per command): the
 * guest may be hostile, or just big. `flag` is the command-line option that raises it.
 */
export class LimitExceededError extends VmiError {
  readonly limit: string;
  readonly flag: string;
  readonly value: number;
  constructor(limit: string, value: number, flag: string, unit = '') {
    super('ELIMIT', `${limit}: the limit of ${value}${unit} was reached (raise it with ${flag})`);
    this.limit = limit;
    this.value = value;
    this.flag = flag;
  }
}

/**
 * Whether a failed read must stop the whole operation: the user aborted, the VM did not answer or
 * went away, a limit was reached, or the error is not ours at all (a bug). Any other VmiError is about what guest memory
 * holds (an unmapped page, a corrupt structure) and may become a warning beside the valid part.
 */
export function isFatalReadError(err: unknown): boolean {
  return !(err instanceof VmiError) || err.code === 'EABORTED' || err.code === 'ETIMEDOUT' || err.code === 'EDISCONNECTED' || err.code === 'ELIMIT';
}

/** `p`'s value, or null when it fails with what guest memory holds (isFatalReadError says which errors still throw). */
export function nullUnlessFatal<T>(p: Promise<T>): Promise<T | null> {
  return p.catch((e: unknown) => {
    if (isFatalReadError(e)) throw e;
    return null;
  });
}
