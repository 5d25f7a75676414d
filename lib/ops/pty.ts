/**
 * A pseudo-terminal for `vmictl exec -t`, opened by a process of the container through injected
 * calls: the master from the container's own /dev/ptmx (the path resolves in that process's mount
 * namespace and root, so the pair belongs to the container's devpts), unlocked, and its number,
 * for the command to open /dev/pts/N as its controlling terminal. The ioctl numbers are x86-64's,
 * built as the kernel's _IOC() builds them.
 */
import type { ThreadCalls } from '../inject/thread-calls';
import { VmiError } from '../errors';

const IOC_NONE = 0;
const IOC_WRITE = 1;
const IOC_READ = 2;

/** The kernel's _IOC(dir, type, nr, size): nr in bits 0-7, type 8-15, size 16-29, direction 30-31. */
export function ioc(dir: number, type: string, nr: number, size: number): bigint {
  return (BigInt(dir) << 30n) | (BigInt(size) << 16n) | (BigInt(type.charCodeAt(0)) << 8n) | BigInt(nr);
}

/** _IOR('T', 0x30, unsigned int): the pty's number. */
export const TIOCGPTN = ioc(IOC_READ, 'T', 0x30, 4);
/** _IOW('T', 0x31, int): lock (non-zero) or unlock (0) the slave. */
export const TIOCSPTLCK = ioc(IOC_WRITE, 'T', 0x31, 4);
/** The old-style terminal ioctls ('T' << 8 | nr, no direction or size). */
export const TIOCSCTTY = ioc(IOC_NONE, 'T', 0x0e, 0);
export const TIOCSWINSZ = ioc(IOC_NONE, 'T', 0x14, 0);
export const TIOCGWINSZ = ioc(IOC_NONE, 'T', 0x13, 0);

export interface WindowSize {
  rows: number;
  cols: number;
}

/** struct winsize: ws_row, ws_col, ws_xpixel, ws_ypixel (unsigned short each; pixels unused, 0). */
export function encodeWinsize(size: WindowSize): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(Math.max(0, Math.min(0xffff, Math.trunc(size.rows))), 0);
  b.writeUInt16LE(Math.max(0, Math.min(0xffff, Math.trunc(size.cols))), 2);
  return b;
}

export function decodeWinsize(b: Buffer): WindowSize {
  return { rows: b.readUInt16LE(0), cols: b.readUInt16LE(2) };
}

const O_RDWR = 2;
const O_NOCTTY = 0o400;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const AT_FDCWD = -100;

/**
 * In `t` (a process of the container): opens /dev/ptmx, unlocks the slave and reads its number.
 * The master is non-blocking (the relay only reads and writes it when poll says it can) and
 * close-on-exec (the command gets the slave only).
 */
export async function openPtyMaster(t: ThreadCalls): Promise<{ master: number; number: number }> {
  const master = await t.openat(AT_FDCWD, '/dev/ptmx', O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  const unlock = await t.syscallWith('ioctl', [BigInt(master), TIOCSPTLCK, { in: Buffer.alloc(4) }]);
  if (unlock.result < 0n) throw new VmiError('EEXEC', `unlocking the container's pseudo-terminal failed (errno ${-unlock.result})`);
  const ptn = await t.syscallWith('ioctl', [BigInt(master), TIOCGPTN, { out: 4 }]);
  if (ptn.result < 0n) throw new VmiError('EEXEC', `the container's pseudo-terminal has no number (errno ${-ptn.result})`);
  return { master, number: ptn.out[0].readUInt32LE(0) };
}
