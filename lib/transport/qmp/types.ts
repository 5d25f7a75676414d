/**
 * The shapes of QMP messages (docs/interop/qmp-spec.rst in QEMU). Everything that comes off the wire
 * is checked against these before it is handed to the caller; see messages.ts.
 */

/** The version triple in the greeting and in `query-version`. */
export interface QmpVersionTriple {
  major: number;
  minor: number;
  micro: number;
}

/** `{"QMP": {"version": …, "capabilities": […]}}`, the first thing QEMU sends. */
export interface QmpGreeting {
  version: {
    qemu: QmpVersionTriple;
    /** Distribution build string, e.g. `Debian 1:7.2+dfsg-7+deb12u18`. */
    package: string;
  };
  /** Capabilities QEMU offers (QEMU 7.2 offers `oob`); we enable none of them. */
  capabilities: string[];
}

/** Event names this project reacts to; QEMU has many more and all of them are delivered. */
export type KnownQmpEventName =
  | 'STOP'
  | 'RESUME'
  | 'SHUTDOWN'
  | 'POWERDOWN'
  | 'RESET'
  | 'GUEST_PANICKED'
  | 'DUMP_COMPLETED';

/** An asynchronous event: `{"event": …, "data": {…}, "timestamp": {…}}`. */
export interface QmpEvent {
  event: KnownQmpEventName | (string & {});
  /** Event-specific payload; absent for events without one (STOP, RESUME). */
  data?: Record<string, any>;
  /** Host wall-clock time at which QEMU emitted the event. */
  timestamp: { seconds: number; microseconds: number };
}

/** Events the client emits. */
export interface QmpClientEvents {
  /** Every QMP event, in the order QEMU sent them. */
  event: [ev: QmpEvent];
  /**
   * The connection is gone. `err` is undefined after close(); otherwise it says why: a
   * DisconnectedError (peer closed, socket error) or a ProtocolError (peer broke the protocol).
   */
  close: [err?: Error];
}
