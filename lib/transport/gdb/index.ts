/**
 * The gdb remote serial protocol transport: GdbClient (connect, registers by name, memory,
 * breakpoints, run control, stop replies, monitor commands) and the pieces it is built from.
 * The memory layer depends only on GdbMemoryPort.
 */
export { GdbClient } from './client';
export type { BreakpointType, GdbClientEvents, GdbConnectOptions, VContAction } from './client';
export type { GdbMemoryPort, MemoryRange, ReadOptions } from './memory-port';
export { GdbConnection, RequestGroup } from './connection';
export type { ConnectionOptions, ConnectionStats, RequestOptions, RunState } from './connection';
export {
  GdbArgumentError,
  GdbBreakpointError,
  GdbErrorReply,
  GdbMemoryAccessError,
  GdbStateError,
  GdbUnsupportedError,
} from './errors';
export { describeStop, isStopReply, parseStopReply } from './stop-reply';
export type { StopKind, StopReply, WatchKind } from './stop-reply';
export { RegisterLayout } from './registers';
export type { RegisterDeclaration, RegisterInfo, RegisterValues } from './registers';
export { layoutOf, loadTargetDescription } from './target-description';
export type { AnnexReader, TargetDescription } from './target-description';
export {
  MAX_INCOMING_PACKET,
  PacketDecoder,
  checksum,
  decodeRunLength,
  encodePacket,
  encodeRunLength,
  escapeBinary,
  unescapeBinary,
} from './packet';
export type { FrameEvent } from './packet';
