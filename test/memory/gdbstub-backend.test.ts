import t from 'tap';
import { CommandError, DisconnectedError, MemoryReadError, VmiError } from '../../lib/errors';
import { GdbstubPhysicalMemory, type GdbMemoryPort } from '../../lib/memory/gdbstub-backend';
import { SparseMemory } from '../helpers/sparse-memory';
import { expectError } from './helpers/expect';

/** A gdbstub stand-in over SparseMemory that fails like QEMU (E14) on pages marked bad. */
class FakePort implements GdbMemoryPort {
  readonly maxReadLength = 2048;
  physical = false;
  readonly modeLog: boolean[] = [];
  readonly batches: { address: bigint; length: number }[][] = [];
  readonly singles: bigint[] = [];
  readonly writesSeen: { address: bigint; length: number }[] = [];
  disconnected = false;
  constructor(readonly mem: SparseMemory) {}

  async setPhysicalMemoryMode(on: boolean): Promise<void> {
    this.physical = on;
    this.modeLog.push(on);
  }

  #one(address: bigint, length: number): Buffer {
    if (this.disconnected) throw new DisconnectedError('gdbstub connection closed');
    if (!this.physical) throw new Error('read in virtual mode');
    if (length > this.maxReadLength) throw new Error('oversized m packet');
    try {
      return this.mem.readSync(address, length);
    } catch {
      throw new CommandError(`m${address.toString(16)},${length.toString(16)}`, 'E14');
    }
  }

  async readMemory(address: bigint, length: number): Promise<Buffer> {
    this.singles.push(address);
    return this.#one(address, length);
  }

  async readMemoryRanges(ranges: { address: bigint; length: number }[]): Promise<Buffer[]> {
    this.batches.push(ranges);
    return ranges.map((r) => this.#one(r.address, r.length));
  }

  async writeMemory(address: bigint, data: Buffer): Promise<void> {
    if (data.length > this.maxReadLength) throw new Error('oversized M packet');
    this.writesSeen.push({ address, length: data.length });
    this.mem.writeSync(address, data);
  }
}

function setup() {
  const mem = new SparseMemory(1n << 24n);
  const data = Buffer.alloc(0x3000);
  for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
  mem.writeSync(0x10000n, data);
  return { mem, data, port: new FakePort(mem) };
}

t.test('physical mode for its lifetime, reads split to the packet limit in one batch', async (t) => {
  const { port, data } = setup();
  const m = await GdbstubPhysicalMemory.open(port);
  t.same(port.modeLog, [true]);
  t.same(await m.read(0x10000n, 0x3000), data);
  t.same(port.batches[0].map((r) => r.length), [2048, 2048, 2048, 2048, 2048, 2048]);
  const [a, b] = await m.readRanges([{ address: 0x10010n, length: 16 }, { address: 0x12ff0n, length: 16 }]);
  t.same(a, data.subarray(0x10, 0x20));
  t.same(b, data.subarray(0x2ff0));
  t.equal(port.batches.length, 2);
  await m.close();
  t.same(port.modeLog, [true, false]);
  await m.close();
  t.same(port.modeLog, [true, false], 'closing twice switches once');
  const closed = await expectError(m.read(0n, 1));
  t.equal((closed as VmiError).code, 'ECLOSED');
});

t.test('a failing batch is narrowed down to the range that fails', async (t) => {
  const { port } = setup();
  const m = await GdbstubPhysicalMemory.open(port);
  const err = await expectError(m.readRanges([{ address: 0x10000n, length: 16 }, { address: 0xfff000n, length: 0x2000 }]));
  t.type(err, MemoryReadError);
  const mre = err as MemoryReadError;
  t.equal(mre.address, 0x1000000n, 'the first piece past the end of RAM');
  t.equal(mre.length, 2048);
  t.match(mre.message, /E14/);
  t.type(mre.cause, CommandError);
});

t.test('connection failures pass through unchanged', async (t) => {
  const { port } = setup();
  const m = await GdbstubPhysicalMemory.open(port);
  port.disconnected = true;
  t.type(await expectError(m.read(0x10000n, 4)), DisconnectedError);
});

t.test('writes are split too', async (t) => {
  const { port, mem } = setup();
  const m = await GdbstubPhysicalMemory.open(port);
  await m.write(0x20000n, Buffer.alloc(5000, 0x5a));
  t.same(port.writesSeen.map((w) => w.length), [2048, 2048, 904]);
  t.same(mem.readSync(0x20000n, 5000), Buffer.alloc(5000, 0x5a));
  const bad = await expectError(m.read(0n, -5));
  t.type(bad, MemoryReadError);
});
