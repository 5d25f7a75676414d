/** vmictl's public API: a VM (live or a dump) and what can be done with it. */
export { Vm, type VmConnectOptions } from './vm';
export * from './inject';
export * from './ops';
