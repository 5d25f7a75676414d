/**
 * QMP transport: a client for QEMU's machine protocol (commands, events, HMP passthrough) and the
 * on-demand gdbstub started through it.
 */
export { QmpClient, type QmpConnectOptions, type WaitForEventOptions } from './client';
export { GdbStubBusyError, QmpExecuteError, QmpGreetingError, QmpNegotiationError, type QmpErrorBody } from './errors';
export { startGdbStub, type GdbStub, type GdbStubOptions } from './gdbserver';
export { DEFAULT_MAX_MESSAGE_BYTES, JsonStreamDecoder } from './codec';
export type { KnownQmpEventName, QmpClientEvents, QmpEvent, QmpGreeting, QmpVersionTriple } from './types';
