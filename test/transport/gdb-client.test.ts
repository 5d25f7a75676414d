/**
 * GdbClient commands against the fake gdbstub: registers by name, memory (pipelining, E14 with
 * the failing range, writes), physical mode, threads, breakpoints, run control, monitor, detach.
 */
import t from 'tap';
import { DisconnectedError, TimeoutError } from '../../lib/errors';
import {
  GdbArgumentError,
  GdbBreakpointError,
  GdbClient,
  GdbErrorReply,
  GdbMemoryAccessError,
  GdbMemoryPort,
  GdbStateError,
  GdbUnsupportedError,
  StopReply,
} from '../../lib/transport/gdb';
import { connectToFake as setup, expectedPattern as expected, FakeGdb } from '../helpers/fake-gdb';


const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Polls until `cond` holds (2 s at most), so tests do not depend on timing. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await delay(5);
}

t.test('registers by name from the target description (xi:include, regnum gaps)', async (t) => {
  const { fake, client } = await setup(t);
  t.same(client.targetDescription?.files, ['target.xml', 'core.xml', 'sys.xml']);
  const regs = await client.readRegisters();
  t.equal(regs.get('rax'), 0x1122334455667788n);
  t.equal(regs.get('rip'), 0xffffffff81000000n);
  t.equal(regs.get('eflags'), 0x246n);
  t.equal(regs.get('st0'), 0x4000c90fdaa22168c000n, '80-bit');
  t.equal(regs.get('fs_base'), 0x7f0000001000n);
  t.equal(regs.get('gs_base'), 0xffff888007c00000n);
  t.equal(regs.get('cr3'), 0x1234000n);
  t.equal(regs.get('xmm0'), 0x0102030405060708090a0b0c0d0e0f10n, '128-bit');
  t.equal(regs.size, 10);

  t.equal(await client.readRegister('gs_base'), 0xffff888007c00000n);
  t.ok(fake.received.includes('p9'), 'p uses the register number from the description');
  t.equal(await client.readRegister('cr3'), 0x1234000n);
  t.ok(fake.received.includes('pa'));
  await t.rejects(client.readRegister('nope'), GdbArgumentError);
});

t.test('register writes: P by number, G read-modify-write', async (t) => {
  const { fake, client } = await setup(t);
  await client.writeRegister('rbx', 0xdeadbeefn);
  t.ok(fake.received.includes('P1=efbeadde00000000'));
  t.equal(fake.register('rbx').value, 0xdeadbeefn);
  await client.writeRegisters({ rip: 0xffffffff81000010n, cr3: 0x5000n });
  t.equal(fake.register('rip').value, 0xffffffff81000010n);
  t.equal(fake.register('cr3').value, 0x5000n);
  t.equal(fake.register('rax').value, 0x1122334455667788n, 'others written back unchanged');
  t.equal(fake.register('st0').value, 0x4000c90fdaa22168c000n);
  await t.rejects(client.writeRegister('eflags', 1n << 32n), GdbArgumentError, 'too wide for 32 bits');
  await client.writeRegister('rax', -1n);
  t.equal(fake.register('rax').value, 0xffffffffffffffffn, 'negative as two\'s complement');
});

t.test('p/P unsupported (QEMU 7.2 before the description is read): falls back to g/G', async (t) => {
  const { fake, client } = await setup(t);
  fake.handler = (p) => (p.startsWith('p') || p.startsWith('P') ? '' : undefined);
  t.equal(await client.readRegister('cr3'), 0x1234000n);
  t.ok(fake.received.includes('g'));
  await client.writeRegister('cr3', 0x9000n);
  t.equal(fake.register('cr3').value, 0x9000n);
  t.ok(fake.received.some((p) => p.startsWith('G')));
});

t.test('registers of another thread: Hg and the request are sent back to back', async (t) => {
  const { fake, client } = await setup(t);
  const seen: string[] = [];
  fake.handler = (p, f) => {
    seen.push(`${p}@${f.currentThread}`);
    return undefined;
  };
  await Promise.all([client.readRegisters({ thread: '02' }), client.readRegister('rax', { thread: '01' }), client.currentThread()]);
  t.same(seen, ['Hg02@01', 'g@02', 'Hg01@02', 'p0@01', 'qC@01']);
  await t.rejects(client.readRegisters({ thread: '07' }), GdbErrorReply, 'bad thread: the Hg error');
  await t.rejects(client.readRegisters({ thread: 'x;y' }), GdbArgumentError);
});

t.test('threads, current thread, select', async (t) => {
  const { fake, client } = await setup(t);
  fake.threadList = ['01', '02', '03', '04'];
  t.same(await client.threads(), ['01', '02', '03', '04']);
  await client.selectThread('03');
  t.equal(await client.currentThread(), '03');
  await client.selectThread('-1', 'c');
  t.ok(fake.received.includes('Hc-1'));
  await t.rejects(client.selectThread('09'), GdbErrorReply);
});

t.test('memory: split to maxReadLength, pipelined, assembled in order', async (t) => {
  const { fake, client } = await setup(t);
  fake.phys = true;
  fake.batchReplies = 32;
  const data = await client.readMemory(0x100n, 100_000);
  t.same(data, expected(0x100, 100_000));
  const reads = fake.received.filter((p) => p.startsWith('m'));
  t.equal(reads.length, Math.ceil(100_000 / 2048));
  t.ok(reads.every((p) => Number.parseInt(p.split(',')[1], 16) <= 2048), 'no read over 2048 bytes');
  t.ok(fake.maxOutstanding >= 16 && fake.maxOutstanding <= 32, `window respected: ${fake.maxOutstanding} in flight`);
  fake.maxOutstanding = 0;
  t.same(await client.readMemory(0n, 20_000, { window: 4 }), expected(0, 20_000));
  t.ok(fake.maxOutstanding <= 4, `window 4: ${fake.maxOutstanding}`);
  fake.maxOutstanding = 0;
  t.same(await client.readMemory(0n, 10_000, { window: 1 }), expected(0, 10_000));
  t.equal(fake.maxOutstanding, 1, 'window 1: no pipelining');
  t.same(await client.readMemory(5n, 0), Buffer.alloc(0));
});

t.test('readMemoryRanges: one buffer per range; E14 names the failing piece and range', async (t) => {
  const { fake, client } = await setup(t);
  fake.mapPage(0x400000n);
  fake.mapPage(0x401000n);
  fake.mapPage(0x500000n);
  const bufs = await client.readMemoryRanges([
    { address: 0x400ff0n, length: 0x20 },
    { address: 0x500000n, length: 4096 },
    { address: 0x400000n, length: 0 },
  ]);
  t.equal(bufs.length, 3);
  t.same(bufs[0], Buffer.concat([Buffer.alloc(0x10, 0x00), Buffer.alloc(0x10, 0x01)]), 'crosses a page boundary');
  t.same(bufs[1], Buffer.alloc(4096, 0x00));
  t.equal(bufs[2].length, 0);

  const err = await client
    .readMemoryRanges([
      { address: 0x400000n, length: 4096 },
      { address: 0x401800n, length: 0x1000 }, // second half runs into unmapped 0x402000
    ])
    .catch((e: unknown) => e);
  t.type(err, GdbMemoryAccessError);
  const e = err as GdbMemoryAccessError;
  t.equal(e.errno, 14);
  t.equal(e.errnoName, 'EFAULT');
  t.equal(e.address, 0x402000n, 'the failing m packet');
  t.equal(e.length, 0x800);
  t.same(e.request, { address: 0x401800n, length: 0x1000, index: 1 });
  t.equal(e.command, 'm402000,800');
  t.equal(e.reply, 'E14');
  t.match(e.message, /0x402000/);
  // the connection is still in step after the failure (other pieces' replies were drained)
  t.same(await client.readMemory(0x400000n, 16), Buffer.alloc(16, 0));
  t.equal(await client.readRegister('cs'), 0x10n);
});

t.test('readMemory: E14 reports the address and length', async (t) => {
  const { client } = await setup(t);
  const e = (await client.readMemory(0xffffffff81000000n, 64).catch((x: unknown) => x)) as GdbMemoryAccessError;
  t.type(e, GdbMemoryAccessError);
  t.type(e, GdbErrorReply);
  t.equal(e.code, 'ECOMMAND');
  t.equal(e.address, 0xffffffff81000000n);
  t.equal(e.length, 64);
  t.match(e.message, /virtual 0xffffffff81000000/);
});

t.test('memory arguments are checked', async (t) => {
  const { client } = await setup(t);
  await t.rejects(client.readMemory(-1n, 4), GdbArgumentError);
  await t.rejects(client.readMemory(0xfffffffffffffff0n, 0x20), GdbArgumentError, 'wraps');
  await t.rejects(client.readMemory(0n, 1.5), GdbArgumentError);
  await t.rejects(client.readMemory(4 as unknown as bigint, 4), GdbArgumentError, 'number address');
});

t.test('writeMemory splits to the packet size', async (t) => {
  const { fake, client } = await setup(t);
  fake.phys = true;
  const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 31) & 0xff));
  await client.writeMemory(0x8000n, data);
  t.same(fake.physical.subarray(0x8000, 0x8000 + 5000), data);
  const writes = fake.received.filter((p) => p.startsWith('M'));
  t.equal(writes.length, 3);
  t.ok(writes.every((p) => p.length < 4096), 'every M packet fits PacketSize');
  t.equal(writes[1].slice(0, writes[1].indexOf(':')), `M${(0x8000 + client.maxWriteLength).toString(16)},${client.maxWriteLength.toString(16)}`);
  fake.phys = false;
  const e = (await client.writeMemory(0x1000n, Buffer.alloc(8)).catch((x: unknown) => x)) as GdbMemoryAccessError;
  t.type(e, GdbMemoryAccessError);
  t.equal(e.address, 0x1000n);
  t.match(e.message, /^write of 8 bytes/);
});

t.test('physical memory mode: read at connect, switched, remembered', async (t) => {
  const fake = await FakeGdb.start();
  fake.phys = true; // left on by an earlier client: QEMU's mode is global
  const client = await GdbClient.connect(fake.address);
  t.teardown(async () => {
    await client.close();
    await fake.stop();
  });
  t.equal(client.physicalMemoryMode, true);
  await client.setPhysicalMemoryMode(false);
  t.equal(fake.phys, false);
  t.equal(client.physicalMemoryMode, false);
  t.equal(await client.queryPhysicalMemoryMode(), false);
  await client.setPhysicalMemoryMode(true);
  t.same(await client.readMemory(0x10n, 4), expected(0x10, 4));
  fake.handler = (p) => (p.startsWith('Qqemu') ? '' : undefined);
  await t.rejects(client.setPhysicalMemoryMode(false), GdbUnsupportedError);
  t.equal(client.physicalMemoryMode, true, 'unchanged after a failure');
  const port: GdbMemoryPort = client;
  t.equal(port.maxReadLength, 2048);
});

t.test('breakpoints and watchpoints; a fifth hardware one fails (KVM debug registers)', async (t) => {
  const { fake, client } = await setup(t, { hwBreakpointLimit: 4 });
  await client.insertBreakpoint(0, 0xffffffff81000000n);
  t.ok(fake.received.includes('Z0,ffffffff81000000,1'));
  for (let i = 0; i < 3; i++) await client.insertBreakpoint(1, 0x1000n + BigInt(i));
  await client.insertBreakpoint(2, 0x2000n, 8);
  t.ok(fake.received.includes('Z2,2000,8'));
  const err = (await client.insertBreakpoint(1, 0x3000n).catch((e: unknown) => e)) as GdbBreakpointError;
  t.type(err, GdbBreakpointError);
  t.equal(err.type, 1);
  t.equal(err.address, 0x3000n);
  t.equal(err.errno, 22);
  t.equal(err.errnoName, 'EINVAL');
  t.match(err.message, /debug registers/);
  await client.removeBreakpoint(2, 0x2000n, 8);
  await client.insertBreakpoint(1, 0x3000n);
  t.ok(fake.breakpoints.has('1:3000'));
  await t.rejects(client.removeBreakpoint(3, 0x9999n), GdbBreakpointError);
  await t.rejects(client.insertBreakpoint(7 as 1, 0n), GdbArgumentError);
});

t.test('run control: continue, only interrupt while running, stop replies', async (t) => {
  const { fake, client } = await setup(t);
  fake.swallowWhenRunning = false;
  const events: [StopReply, boolean][] = [];
  client.on('stop', (r, s) => events.push([r, s]));
  await client.continue();
  t.equal(client.state, 'running');
  t.ok(fake.received.includes('c'));
  const err = (await client.readMemory(0n, 4).catch((e: unknown) => e)) as GdbStateError;
  t.type(err, GdbStateError);
  t.equal(err.code, 'ERUNNING');
  t.match(err.message, /running.*interrupt/);
  await t.rejects(client.readRegisters(), { code: 'ERUNNING' });
  await t.rejects(client.continue(), { code: 'ERUNNING' });
  t.equal(fake.received.filter((p) => p.startsWith('m')).length, 0, 'nothing sent while running');

  fake.handler = undefined;
  const waiting = client.waitForStop({ timeout: 2000 });
  // the VM hits a hardware watchpoint
  fake.sendPacket('T05watch:ffff888000001000;thread:02;');
  const stop = await waiting;
  t.equal(stop.signal, 5);
  t.same(stop.watch, { kind: 'watch', address: 0xffff888000001000n });
  t.equal(stop.thread, '02');
  t.equal(client.state, 'stopped');
  t.same(events.map(([r, s]) => [r.raw, s]), [['T05watch:ffff888000001000;thread:02;', true]]);
  t.same(await client.waitForStop(), stop, 'asking again gives the same stop');
  t.equal(await client.readRegister('cs'), 0x10n, 'requests work again');
});

t.test('interrupt sends 0x03 and resolves with the T02', async (t) => {
  const { fake, client } = await setup(t);
  fake.swallowWhenRunning = false;
  fake.handler = (p, f) => {
    if (p === 'c') return null;
    return undefined;
  };
  await client.continue();
  const interrupted = client.interrupt({ timeout: 2000 });
  await until(() => fake.interrupts > 0);
  t.equal(fake.interrupts, 1);
  fake.sendPacket('T02thread:01;');
  const stop = await interrupted;
  t.equal(stop.signal, 2);
  t.equal(client.state, 'stopped');
  t.same(await client.interrupt(), stop, 'interrupting a stopped target is a no-op');
  t.equal(fake.interrupts, 1);
});

t.test('QEMU-like: interrupt while running pauses the VM and answers T02', async (t) => {
  const { fake, client } = await setup(t);
  await client.continue();
  await until(() => fake.running);
  t.ok(fake.running);
  const stop = await client.interrupt({ timeout: 2000 });
  t.equal(stop.raw, 'T02thread:01;');
  t.notOk(fake.running);
  t.equal(client.stats.swallowedPackets, 0);
});

t.test('waitForStop timeout leaves the target running; a later stop is still seen', async (t) => {
  const { fake, client } = await setup(t);
  fake.swallowWhenRunning = false;
  await client.continue();
  await t.rejects(client.waitForStop({ timeout: 30 }), TimeoutError);
  t.equal(client.state, 'running');
  fake.sendPacket('T05thread:01;');
  const stop = await client.waitForStop({ timeout: 1000 });
  t.equal(stop.signal, 5);
});

t.test('waitForStop with nothing to wait for', async (t) => {
  const { client } = await setup(t);
  await t.rejects(client.waitForStop(), GdbStateError);
});

t.test('a swallowed continue (VM resumed through QMP) is sent again, and the T02 is not taken as its stop', async (t) => {
  const { fake, client } = await setup(t, {}, { swallowGrace: 50 });
  await fake.settled();
  fake.running = true;
  await client.continue();
  t.equal(client.state, 'running');
  t.equal(client.stats.swallowedPackets, 1);
  t.equal(client.lastStop?.signal, 2, 'the T02 was seen');
  t.ok(fake.running, 'the resent c runs the VM');
  await t.rejects(client.waitForStop({ timeout: 30 }), TimeoutError, 'T02 did not end the continue');
  const stop = await client.interrupt({ timeout: 1000 });
  t.equal(stop.signal, 2);
});

t.test('Hg is sent only when the general thread is not known to be the one wanted', async (t) => {
  const { fake, client } = await setup(t);
  const hg = () => fake.received.filter((p) => p.startsWith('Hg'));
  await client.step('02');
  t.equal(client.generalThread, '02', 'a stop reply selects its thread');
  await client.readRegisters({ thread: '02' });
  t.same(hg(), [], 'no Hg for the thread that just stopped');
  await client.readRegisters({ thread: '01' });
  await client.readRegister('rip', { thread: '01' });
  await client.selectThread('01');
  t.same(hg(), ['Hg01'], 'one Hg for another thread, none after it while it stays selected');
  await client.step('02');
  await client.readRegisters({ thread: '01' });
  t.same(hg(), ['Hg01', 'Hg01'], 'a stop of another thread makes it needed again');
});

t.test('step returns the stop; vCont validates against vCont?', async (t) => {
  const { fake, client } = await setup(t);
  const s = await client.step();
  t.equal(s.signal, 5);
  t.equal(client.state, 'stopped');
  const s2 = await client.step('02');
  t.ok(fake.received.includes('vCont;s:02'));
  t.equal(s2.thread, '02', 'the stepped vCPU is the one reported (as QEMU does)');
  fake.swallowWhenRunning = false;
  await client.vCont([{ action: 'c', thread: '01' }, { action: 'c' }]);
  t.equal(fake.received[fake.received.length - 1], 'vCont;c:01;c');
  t.equal(client.state, 'running');
  fake.sendPacket('T05thread:01;');
  await client.waitForStop({ timeout: 1000 });
  await t.rejects(client.vCont([{ action: 'r', start: 0n, end: 1n }]), GdbUnsupportedError);
});

t.test('monitor collects O packets until OK', async (t) => {
  const { fake, client } = await setup(t);
  t.equal(await client.monitor('info status'), 'you said: info status\r\ndone\r\n');
  t.ok(fake.received.includes(`qRcmd,${Buffer.from('info status').toString('hex')}`));
  await t.rejects(client.monitor('fail'), GdbErrorReply);
  t.equal(await client.currentThread(), '01', 'still in step');
});

t.test('detach sends D and closes; close is idempotent; calls after close fail', async (t) => {
  const { fake, client } = await setup(t);
  const closed = new Promise<Error | undefined>((resolve) => client.on('close', resolve));
  await client.detach();
  t.equal(fake.received[fake.received.length - 1], 'D');
  t.equal(await closed, undefined, 'a clean close carries no error');
  t.equal(client.state, 'closed');
  await client.close();
  await client.close();
  await t.rejects(client.readMemory(0n, 1), DisconnectedError);
  await t.rejects(client.waitForStop(), DisconnectedError);
});

t.test('close rejects pending calls', async (t) => {
  const { fake, client } = await setup(t);
  fake.hangMatch = /^qC$/;
  const pending = t.rejects(client.currentThread(), DisconnectedError);
  const behind = t.rejects(client.readRegisters(), DisconnectedError);
  await delay(10);
  await client.close();
  await pending;
  await behind;
});

t.test('a stub without a target description: memory works, registers say why not', async (t) => {
  const { client } = await setup(t, {
    files: { 'target.xml': '<target><xi:include href="missing.xml"/></target>' },
  });
  t.throws(() => client.registerLayout, GdbStateError);
  await t.rejects(client.readRegisters(), /missing\.xml/);
  t.equal(await client.currentThread(), '01');
});

t.test('detach of a running target interrupts it first', async (t) => {
  const { fake, client } = await setup(t);
  await client.continue();
  t.equal(client.state, 'running');
  await client.detach({ timeout: 2000 });
  t.same(fake.received.slice(-2), ['c', 'D'], 'D after the stop (the swallowed 0x03 paused the fake)');
  t.equal(client.lastStop?.signal, 2);
  t.equal(client.state, 'closed');
});

t.test('bulk reads: a caller timeout, an abort, and a stub that stops answering', async (t) => {
  const { fake, client } = await setup(t, {}, { requestTimeout: 100, staleReplyTimeout: 5000 });
  fake.phys = true;
  // the stub stops answering part way through
  fake.hangMatch = /^m(8000|8800|9000),/;
  await t.rejects(client.readMemory(0n, 64 * 1024), { name: 'TimeoutError', message: /no reply from the stub/ });
  fake.releaseHung();
  t.same(await client.readMemory(0x100n, 16), expected(0x100, 16), 'late replies discarded, next read in step');

  fake.hangMatch = /^m10000,/;
  await t.rejects(client.readMemory(0n, 128 * 1024, { timeout: 50 }), TimeoutError);
  fake.releaseHung();
  t.same(await client.readMemory(0x200n, 16), expected(0x200, 16));

  const ac = new AbortController();
  fake.hangMatch = /^m4000,/;
  const aborted = client.readMemoryRanges([{ address: 0n, length: 32 * 1024 }], { signal: ac.signal });
  setTimeout(() => ac.abort(), 20);
  await t.rejects(aborted, { name: 'AbortError' });
  fake.releaseHung();
  t.same(await client.readMemory(0x300n, 16), expected(0x300, 16));
  t.ok(client.stats.staleReplies > 0, `${client.stats.staleReplies} stale replies discarded`);
  await t.rejects(client.readMemory(0n, 16, { signal: AbortSignal.abort() }), { name: 'AbortError' });
});
