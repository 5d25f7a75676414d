/**
 * QMP-specific failures. They follow QEMU's own python/qemu/qmp library: a peer that does not greet
 * like QMP and a peer that refuses capability negotiation are protocol errors of their own kind
 * (the caller pointed us at the wrong socket, or at an incompatible QEMU), while a command that QEMU
 * answers with `{"error": …}` is a CommandError that keeps what was sent, so a log line says exactly
 * which request QEMU refused and why.
 */
import { CommandError, ProtocolError, VmiError } from '../../errors';

/** The first message was not a valid QMP greeting (not QMP, HMP, a gdbstub, a serial console…). */
export class QmpGreetingError extends ProtocolError {
  constructor(message: string, data?: string, options?: { cause?: unknown }) {
    super(`QMP greeting: ${message}`, data, options);
  }
}

/** `qmp_capabilities` failed, so the monitor never left capability-negotiation mode. */
export class QmpNegotiationError extends ProtocolError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`QMP capability negotiation: ${message}`, undefined, options);
  }
}

/** The body of a QMP error reply: `{"error": {"class": …, "desc": …}}`. */
export interface QmpErrorBody {
  class: string;
  desc: string;
}

/** QEMU answered a command with an error reply. */
export class QmpExecuteError extends CommandError {
  /** QMP error class, e.g. `GenericError`, `CommandNotFound`, `DeviceNotFound`. */
  readonly errorClass: string;
  /** QEMU's human-readable description (untrusted text: escape before printing). */
  readonly desc: string;
  /** The `arguments` object that was sent, or undefined when the command had none. */
  readonly arguments: object | undefined;

  constructor(command: string, args: object | undefined, error: QmpErrorBody) {
    super(command, JSON.stringify(error), `${command}: ${error.class}: ${error.desc}`);
    this.errorClass = error.class;
    this.desc = error.desc;
    this.arguments = args;
  }
}

/**
 * QEMU already runs a gdbstub (from `-gdb`/`-s` or another client). QEMU 7.2 cannot start a second
 * one ("duplicate yank instance"), and replacing it would cut off whoever uses it.
 */
export class GdbStubBusyError extends VmiError {
  /** Where the running stub listens, as QEMU reports it (e.g. `tcp:0.0.0.0:1234`). */
  readonly existing: string;
  constructor(existing: string) {
    super('EBUSY', `QEMU already runs a gdbstub on ${existing}; connect to that one (--gdb) instead`);
    this.existing = existing;
  }
}
