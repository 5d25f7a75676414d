/**
 * exec's relay without a VM: a fake guest process whose command is `cat` (what comes on its stdin
 * comes back on its stdout; its stdout ends when its stdin does), behind the same calls the relay
 * makes in the guest (poll, read, write, close, ioctl). Host input in pieces, partial writes, a
 * command that stops reading, a terminal's master (EIO at the end, window sizes) and the ioctl
 * numbers as the kernel's headers give them.
 */
import t from 'tap';
import { relay, HostInput, type Relayer } from '../../lib/ops/exec-relay';
import { SyscallError } from '../../lib/inject/errors';
import { decodeWinsize, encodeWinsize, ioc, TIOCGPTN, TIOCGWINSZ, TIOCSCTTY, TIOCSPTLCK, TIOCSWINSZ } from '../../lib/ops/pty';

const OUT = 5;
const IN = 6;
const EAGAIN = 11;
const EIO = 5;
const EPIPE = 32;

/** A guest `cat` behind a relayer: writes go to its stdin, `accept` bytes per write at most. */
class FakeCat implements Relayer {
  stdout: Buffer[] = [];
  stdinClosed = false;
  /** The command closed its stdin (stops reading) once it has seen this many bytes. */
  readLimit = Infinity;
  seen = 0;
  accept = 1 << 20;
  calls: string[] = [];
  winsizes: Buffer[] = [];
  constructor(readonly tty = false) {}

  get ended(): boolean {
    return this.stdinClosed || this.seen >= this.readLimit;
  }

  async syscall(nr: number | string, ...args: bigint[]): Promise<bigint> {
    this.calls.push(`${nr}(${args.join(',')})`);
    if (nr === 'close' && Number(args[0]) === IN) this.stdinClosed = true;
    return 0n;
  }

  async syscallWith(nr: number | string, args: readonly (bigint | { in: Buffer } | { out: number } | { inout: Buffer })[]): Promise<{ result: bigint; out: Buffer[] }> {
    if (nr === 'ioctl') {
      this.calls.push(`ioctl(${args[0]},0x${(args[1] as bigint).toString(16)})`);
      this.winsizes.push((args[2] as { in: Buffer }).in);
      return { result: 0n, out: [] };
    }
    if (nr !== 'poll') throw new Error(`unexpected ${String(nr)}`);
    const fds = Buffer.from((args[0] as { inout: Buffer }).inout);
    for (let i = 0; i < Number(args[1]); i++) {
      const fd = fds.readInt32LE(8 * i);
      const events = fds.readInt16LE(8 * i + 4);
      let revents = 0;
      if (fd === OUT || (this.tty && fd === IN)) {
        if (events & 1 && this.stdout.length > 0) revents |= 1;
        if (events & 1 && this.ended) revents |= 0x10;
      }
      if ((fd === IN || this.tty) && events & 4) revents |= this.seen >= this.readLimit ? 0x8 : 4;
      fds.writeInt16LE(revents, 8 * i + 6);
    }
    // nothing ready: time passes in the guest (the host's input may come meanwhile)
    await new Promise((r) => setTimeout(r, 1));
    return { result: 0n, out: [fds] };
  }

  async read(fd: number): Promise<Buffer> {
    if (fd !== OUT && !(this.tty && fd === IN)) throw new Error(`read of fd ${fd}`);
    const b = this.stdout.shift();
    if (b) return b;
    if (!this.ended) throw new SyscallError('read', EAGAIN);
    if (this.tty) throw new SyscallError('read', EIO);
    return Buffer.alloc(0);
  }

  async write(fd: number, data: Buffer): Promise<number> {
    if (fd !== IN) throw new Error(`write to fd ${fd}`);
    if (this.seen >= this.readLimit) throw new SyscallError('write', this.tty ? EIO : EPIPE);
    const n = Math.min(this.accept, data.length, this.readLimit - this.seen);
    this.stdout.push(Buffer.from(data.subarray(0, n)));
    this.seen += n;
    return n;
  }

  async awaitHost<T>(work: Promise<T> | T): Promise<T> {
    return work;
  }
}

async function* pieces(parts: string[], state: { finished?: boolean } = {}) {
  try {
    for (const p of parts) {
      await new Promise((r) => setTimeout(r, 3));
      yield Buffer.from(p);
    }
  } finally {
    state.finished = true;
  }
}

function collect(): { sink: (d: Buffer) => void; text(): string } {
  const got: Buffer[] = [];
  return { sink: (d) => { got.push(d); }, text: () => Buffer.concat(got).toString() };
}

t.test('-i: the host input reaches the command, in order, through partial writes; its end closes the stdin', async (t) => {
  const cat = new FakeCat();
  cat.accept = 3;
  const out = collect();
  const counts = await relay(cat, { out: OUT, in: IN }, 42, { container: 'c', command: ['cat'], stdin: pieces(['hello ', 'world', '\n']), stdout: out.sink }, 'test');
  t.equal(out.text(), 'hello world\n');
  t.same(counts, [12, 0]);
  t.ok(cat.stdinClosed, 'the host\'s EOF closed the command\'s stdin');
});

t.test('-i: a command that stops reading ends the input, not the relay', async (t) => {
  const cat = new FakeCat();
  cat.readLimit = 4;
  const state: { finished?: boolean } = {};
  const out = collect();
  await relay(cat, { out: OUT, in: IN }, 42, { container: 'c', command: ['head'], stdin: pieces(['abcdef', 'more', 'more'], state), stdout: out.sink }, 'test');
  t.equal(out.text(), 'abcd', 'what it read came back');
  t.ok(cat.stdinClosed, 'its stdin was closed');
  await new Promise((r) => setTimeout(r, 20));
  t.ok(state.finished, 'the host input stopped being read');
});

t.test('-t: the master ends with EIO, the window size is set at the start and on every change', async (t) => {
  const cat = new FakeCat(true);
  cat.readLimit = 5;
  const sizes = [{ rows: 40, cols: 120 }, { rows: 40, cols: 120 }, { rows: 33, cols: 101 }];
  let asked = 0;
  const out = collect();
  await relay(cat, { out: IN, in: IN, tty: true }, 42, {
    container: 'c', command: ['sh'], stdin: pieces(['ab', 'cde']), stdout: out.sink,
    tty: { windowSize: () => sizes[Math.min(asked++, sizes.length - 1)] },
  }, 'test');
  t.equal(out.text(), 'abcde');
  t.same(cat.winsizes.map(decodeWinsize), [{ rows: 40, cols: 120 }, { rows: 33, cols: 101 }], 'TIOCSWINSZ once per size');
  t.ok(cat.calls.every((c) => !c.startsWith(`close(${IN}`)), 'the master is not closed by the relay (that would hang up the terminal)');
});

t.test('host input as the relay takes it', async (t) => {
  const input = new HostInput(pieces(['x', 'y']));
  t.equal(input.take(), undefined, 'nothing before it comes');
  await new Promise((r) => setTimeout(r, 10));
  t.equal(String(input.take()), 'x');
  input.take();
  await new Promise((r) => setTimeout(r, 10));
  t.equal(String(input.take()), 'y');
  input.take();
  await new Promise((r) => setTimeout(r, 10));
  t.equal(input.take(), 'end');
});

t.test('ioctl numbers as asm-generic/ioctls.h has them on x86-64', async (t) => {
  t.equal(TIOCGPTN, 0x80045430n, 'TIOCGPTN _IOR(\'T\', 0x30, unsigned int)');
  t.equal(TIOCSPTLCK, 0x40045431n, 'TIOCSPTLCK _IOW(\'T\', 0x31, int)');
  t.equal(TIOCSCTTY, 0x540en);
  t.equal(TIOCSWINSZ, 0x5414n);
  t.equal(TIOCGWINSZ, 0x5413n);
  t.equal(ioc(3, 'T', 0x2a, 44), 0xc02c542an, "_IOWR('T', 0x2a, 44 bytes): both direction bits and the size");
  t.same([...encodeWinsize({ rows: 0x1234, cols: 80 })], [0x34, 0x12, 80, 0, 0, 0, 0, 0], 'struct winsize: rows, cols little-endian, no pixels');
  t.same(decodeWinsize(encodeWinsize({ rows: 70000, cols: -3 })), { rows: 0xffff, cols: 0 }, 'out of range: clamped');
});
