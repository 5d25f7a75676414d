/**
 * The connection layer against a fake gdbstub on a real unix socket: handshake, acks and
 * retransmission, bad checksums, torn and coalesced reads, unsolicited stops, timeouts that must
 * not desynchronise replies, and losing the connection.
 */
import t from 'tap';
import { AbortError, ConnectionError, DisconnectedError, ProtocolError, TimeoutError } from '../../lib/errors';
import { GdbClient, StopReply } from '../../lib/transport/gdb';
import { connectToFake as setup, expectedPattern as expected, FakeGdb } from '../helpers/fake-gdb';


const tick = () => new Promise((r) => setImmediate(r));
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Polls until `cond` holds (2 s at most), so tests do not depend on timing. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await delay(5);
}

t.test('handshake: qSupported, packet size, acks for every packet, no QStartNoAckMode unless offered', async (t) => {
  const { fake, client } = await setup(t);
  t.match(fake.received[0], /^qSupported:.*xmlRegisters=i386/);
  t.equal(client.maxPacketSize, 4096);
  t.equal(client.maxReadLength, 2048, 'PacketSize=1000 → 2048 bytes per m');
  t.equal(client.features.get('qXfer:features:read'), true);
  t.notOk(fake.received.includes('QStartNoAckMode'));
  t.ok(client.ackMode);
  t.same(fake.received.filter((p) => p.startsWith('qXfer')).length > 3, true, 'description read in several chunks');
  await fake.settled();
  // every packet the fake sent was acked exactly once
  const repliesSent = fake.received.length;
  t.equal(fake.acks, repliesSent, `${fake.acks} acks for ${repliesSent} replies`);
  t.equal(fake.badChecksumsFromClient, 0);
  t.equal(client.stats.retransmits, 0);
});

t.test('QStartNoAckMode is used when offered, and acks stop', async (t) => {
  const { fake, client } = await setup(t, { offerNoAck: true });
  t.ok(fake.received.includes('QStartNoAckMode'));
  t.notOk(client.ackMode);
  await delay(20);
  const acksBefore = fake.acks;
  t.equal(await client.currentThread(), '01');
  t.same(await client.readMemory(0n, 16).catch((e: Error) => e.name), 'GdbMemoryAccessError', 'virtual page 0 unmapped');
  await delay(20);
  t.equal(fake.acks, acksBefore, 'no acks in no-ack mode');
});

t.test("a '-' from the stub makes the client send the packet again", async (t) => {
  const { fake, client } = await setup(t);
  fake.phys = true;
  fake.nackNext = 2;
  fake.nackMatch = /^m/;
  const data = await client.readMemory(0x1000n, 64);
  t.same(data, expected(0x1000, 64));
  t.equal(client.stats.retransmits, 2);
  t.equal(fake.nacks, 0, 'the client never nacked');
  t.equal(fake.received.filter((p) => p === 'm1000,40').length, 1, 'the stub processed it once');
});

t.test("a packet nacked too often fails with ProtocolError, and the connection goes on", async (t) => {
  const { fake, client } = await setup(t);
  fake.nackNext = 100;
  fake.nackMatch = /^qC$/;
  await t.rejects(client.currentThread(), ProtocolError);
  fake.nackNext = 0;
  t.equal(await client.currentThread(), '01');
});

t.test('pipelined reads with one of them nacked still land in the right place', async (t) => {
  const { fake, client } = await setup(t);
  fake.phys = true;
  fake.nackNext = 1;
  fake.nackMatch = /^m800,/; // the second piece
  const data = await client.readMemory(0n, 8 * 2048);
  t.same(data, expected(0, 8 * 2048));
  t.equal(client.stats.retransmits, 1);
});

t.test('a bad checksum from the stub is nacked and the resent packet used', async (t) => {
  const { fake, client } = await setup(t);
  fake.badChecksumNext = 1;
  t.equal(await client.currentThread(), '01');
  t.equal(fake.nacks, 1);
  t.equal(client.stats.badChecksums, 1);
  fake.phys = true;
  fake.badChecksumNext = 3;
  t.same(await client.readMemory(0x2000n, 6000), expected(0x2000, 6000));
  t.equal(client.stats.badChecksums, 4);
  // With several reads in flight a '-' would fetch the stub's latest packet, not the bad one:
  // the client takes the bad reply as a failed read and asks for that piece again instead.
  t.equal(fake.nacks, 1, 'no nack while pipelined');
  t.equal(fake.received.filter((p) => p.startsWith('m')).length, 6, '3 pieces + 3 re-reads');
});

t.test('a read of one packet: short replies are asked again for the rest, a bad checksum among others in flight is read again', async (t) => {
  const { fake, client } = await setup(t);
  fake.phys = true;
  fake.shortReads = 100;
  t.same(await client.readMemory(0x1230n, 300), expected(0x1230, 300), 'one packet, answered 100 bytes at a time');
  t.same(fake.received.filter((p) => p.startsWith('m')), ['m1230,12c', 'm1294,c8', 'm12f8,64'], 'each request asks for what is still missing');
  t.same(await client.readMemory(0x5000n, 5000), expected(0x5000, 5000), 'several packets, each answered short');
  fake.shortReads = undefined;
  // a bad reply while another request is in flight cannot be nacked: the read asks again
  fake.badChecksumNext = 1;
  const [a, b] = await Promise.all([client.readMemory(0x100n, 16), client.readMemory(0x200n, 16)]);
  t.same(a, expected(0x100, 16));
  t.same(b, expected(0x200, 16));
  t.equal(client.stats.badChecksums, 1);
  t.equal(fake.nacks, 0);
  t.equal(fake.received.filter((p) => p === 'm100,10').length, 2, 'the first read was asked twice');
});

t.test('packets torn across reads (one byte per write)', async (t) => {
  const { fake, client } = await setup(t);
  fake.phys = true;
  fake.writeMode = 'torn';
  const before = fake.writes;
  t.same(await client.readMemory(0x3000n, 300), expected(0x3000, 300));
  t.ok(fake.writes - before > 600, `reply came in ${fake.writes - before} writes`);
  const regs = await client.readRegisters();
  t.equal(regs.get('rax'), 0x1122334455667788n);
});

t.test('several packets (and acks) in one read', async (t) => {
  const { fake, client } = await setup(t);
  fake.phys = true;
  fake.writeMode = 'coalesced';
  fake.batchReplies = 8;
  t.same(await client.readMemory(0n, 16 * 2048), expected(0, 16 * 2048));
  t.ok(fake.maxOutstanding >= 8, `pipelined: ${fake.maxOutstanding} requests outstanding at once`);
});

t.test('run-length encoded replies are expanded', async (t) => {
  const { fake, client } = await setup(t);
  fake.rle = true;
  fake.mapPage(0x400000n, Buffer.alloc(4096, 0));
  const data = await client.readMemory(0x400000n, 1000);
  t.same(data, Buffer.alloc(1000, 0));
  t.equal(await client.readRegister('rbx'), 2n, '0200000000000000 is sent as 02 0*…');
});

t.test('an unsolicited T02 before a reply: surfaced as a stop event, the reply still arrives', async (t) => {
  const { fake, client } = await setup(t);
  const stops: [StopReply, boolean][] = [];
  client.on('stop', (r, solicited) => stops.push([r, solicited]));
  fake.stopBeforeNextReply = 'T02thread:01;';
  t.equal(await client.currentThread(), '01');
  t.equal(stops.length, 1);
  t.equal(stops[0][0].signal, 2);
  t.equal(stops[0][1], false, 'unsolicited');
  t.equal(client.lastStop?.raw, 'T02thread:01;');
  t.equal(client.state, 'stopped');
  t.equal(client.stats.unsolicitedStops, 1);
  t.equal(client.stats.swallowedPackets, 0, 'the packet was acked: nothing was lost');
  t.equal(fake.received.filter((p) => p === 'qC').length, 1, 'not sent twice');
});

t.test('a T02 sent on connect (QEMU pausing a running VM) reaches listeners attached after connect', async (t) => {
  const fake = await FakeGdb.start();
  fake.server.on('connection', () => fake.sendPacket('T02thread:01;'));
  const client = await GdbClient.connect(fake.address);
  t.teardown(async () => {
    await client.close();
    await fake.stop();
  });
  const stop = await new Promise<StopReply>((resolve) => client.on('stop', resolve));
  t.equal(stop.signal, 2);
  t.equal(client.lastStop?.signal, 2);
  t.same(await client.waitForStop(), stop, 'waitForStop reports why the target is stopped');
});

t.test('QEMU swallows the first packet when the VM was resumed behind its back: it is sent again', async (t) => {
  const { fake, client } = await setup(t, {}, { swallowGrace: 50 });
  const stops: StopReply[] = [];
  client.on('stop', (r) => stops.push(r));
  await fake.settled(); // the stub has every ack (a late '+' would be what pauses the VM)
  fake.running = true; // e.g. QMP cont
  t.equal(await client.currentThread(), '01');
  t.equal(stops.length, 1);
  t.equal(stops[0].signal, 2);
  t.equal(client.stats.swallowedPackets, 1);
  t.equal(fake.received.filter((p) => p === 'qC').length, 1, 'the stub saw it once (the first copy was eaten)');
});

t.test('swallowed first packet of a pipelined batch: the others are answered and matched correctly', async (t) => {
  const { fake, client } = await setup(t, {}, { swallowGrace: 50 });
  fake.phys = true;
  await fake.settled();
  fake.running = true;
  const data = await client.readMemory(0n, 10 * 2048);
  t.same(data, expected(0, 10 * 2048), 'every piece in its place');
  t.equal(client.stats.swallowedPackets, 1);
  t.equal(client.stats.retransmits, 1);
});

t.test('a hung request times out; its late reply does not desynchronise the next ones', async (t) => {
  const { fake, client } = await setup(t);
  fake.hangMatch = /^qC$/;
  await t.rejects(client.currentThread({ timeout: 50 }), TimeoutError);
  // Queued behind the unanswered request: must get its own reply, not the stale QC01.
  const next = client.readRegister('cs', { timeout: 2000 });
  await delay(30);
  fake.releaseHung();
  t.equal(await next, 0x10n);
  t.equal(client.stats.staleReplies, 1);
  t.equal(await client.currentThread(), '01');
});

t.test('request timeouts share one timer: each request still times out at its own deadline, never earlier', async (t) => {
  const { fake, client } = await setup(t, {}, { requestTimeout: 150, staleReplyTimeout: 5000 });
  // answered at once: the shared timer is now armed for this request's deadline, ~150 ms from here
  t.equal(await client.currentThread(), '01');
  await delay(100);
  fake.hangMatch = /^qC$/;
  const started = Date.now();
  const hung = client.currentThread().then(() => undefined, (err: unknown) => err);
  const err = await hung;
  t.type(err, TimeoutError, 'the unanswered request times out');
  t.ok(Date.now() - started >= 120, `not at the earlier, answered request's deadline (after ${Date.now() - started} ms of its 150)`);
  fake.releaseHung();
  await until(() => client.stats.staleReplies === 1);
  t.equal(await client.currentThread(), '01', 'the stale reply was dropped, the next request gets its own');

  // a short timeout after a long one, with nothing else pending: the timer is brought forward
  await delay(200);
  fake.hangMatch = /^qC$/;
  let longSettled = false;
  const long = client.currentThread({ timeout: 5000 }).finally(() => { longSettled = true; });
  await t.rejects(client.command('p2', { timeout: 40 }), TimeoutError, 'the 40 ms request, queued behind the hung one');
  t.notOk(longSettled, 'the 5 s request is still waiting');
  fake.releaseHung();
  t.equal(await long, '01');
});

t.test('an abort signal cancels a queued request without disturbing the others', async (t) => {
  const { fake, client } = await setup(t);
  fake.hangMatch = /^qC$/;
  const first = client.currentThread({ timeout: 2000 });
  const ac = new AbortController();
  const second = client.readRegister('rbx', { signal: ac.signal });
  const third = client.readRegister('cs');
  ac.abort();
  await t.rejects(second, AbortError);
  fake.releaseHung();
  t.equal(await first, '01');
  t.equal(await third, 0x10n);
  t.notOk(fake.received.includes('p1'), 'the aborted request was never sent');
});

t.test('a stub that never answers a cancelled request: the connection is closed, not reused', async (t) => {
  const { fake, client } = await setup(t, {}, { staleReplyTimeout: 100 });
  fake.hangMatch = /^qC$/;
  const closed = new Promise<Error | undefined>((resolve) => client.on('close', resolve));
  await t.rejects(client.currentThread({ timeout: 30 }), TimeoutError);
  const behind = client.readRegister('cs');
  await t.rejects(behind, DisconnectedError);
  const err = await closed;
  t.match(err?.message, /did not answer qC/);
  t.equal(client.state, 'closed');
  await t.rejects(client.currentThread(), DisconnectedError);
});

t.test('the stub closing mid-reply rejects everything pending with DisconnectedError', async (t) => {
  const { fake, client } = await setup(t);
  fake.phys = true;
  fake.handler = (packet, f) => {
    if (packet.startsWith('m')) {
      f.sendRaw('$0011223344');
      setImmediate(() => f.socket?.destroy());
      return null;
    }
    return undefined;
  };
  const closed = new Promise<Error | undefined>((resolve) => client.on('close', resolve));
  const read = client.readMemory(0n, 8192);
  await t.rejects(read, DisconnectedError);
  t.type(await closed, DisconnectedError);
  await t.rejects(client.readRegisters(), DisconnectedError);
  await client.close();
  await client.close();
  t.pass('close() is idempotent after the peer went away');
});

t.test('an oversized packet is a ProtocolError for what is pending, and the connection closes', async (t) => {
  const { fake, client } = await setup(t, {}, { maxIncomingPacket: 4096 });
  fake.handler = (packet, f) => {
    if (packet === 'qC') {
      f.sendRaw(`$${'0'.repeat(5000)}`);
      return null;
    }
    return undefined;
  };
  await t.rejects(client.currentThread(), ProtocolError);
  t.equal(client.state, 'closed');
  await t.rejects(client.currentThread(), DisconnectedError);
});

t.test('stray acks and stray packets are counted and ignored', async (t) => {
  const { fake, client } = await setup(t);
  fake.sendRaw('+++');
  fake.sendPacket('OK');
  await until(() => client.stats.strayPackets > 0);
  t.equal(client.stats.strayAcks, 3);
  t.equal(client.stats.strayPackets, 1);
  t.equal(await client.currentThread(), '01');
});

t.test('connect errors', async (t) => {
  await t.rejects(GdbClient.connect('unix:/nonexistent/gdb.sock', { timeout: 1000 }), ConnectionError);
  await t.rejects(GdbClient.connect('tcp:10.0.0.1:1234'), { code: 'EADDRESS' }, 'not loopback');
  const fake = await FakeGdb.start();
  t.teardown(() => fake.stop());
  fake.hangMatch = /^qSupported/;
  await t.rejects(GdbClient.connect(fake.address, { timeout: 100 }), TimeoutError);
});

t.test('many concurrent callers are answered in order', async (t) => {
  const { fake, client } = await setup(t);
  fake.phys = true;
  fake.writeMode = 'coalesced';
  const calls = Array.from({ length: 40 }, (_, i) =>
    i % 3 === 0 ? client.readRegister('cs').then((v) => [i, v]) : client.readMemory(BigInt(i * 100), 50).then((b) => [i, b]),
  );
  const results = await Promise.all(calls);
  for (const [i, v] of results as [number, bigint | Buffer][]) {
    if (i % 3 === 0) t.equal(v, 0x10n);
    else t.same(v, expected(i * 100, 50));
  }
  await tick();
});

t.test("a rejection carries the caller's stack, not only the timer's or the socket's", async (t) => {
  const { fake, client } = await setup(t);
  fake.hangMatch = /^qC$/;
  async function theCallerAskingForTheThread() {
    await delay(1);
    return client.currentThread({ timeout: 20 });
  }
  const err = (await theCallerAskingForTheThread().catch((e: unknown) => e)) as Error;
  t.type(err, TimeoutError);
  t.match(err.stack, /the request was made at:[\s\S]*theCallerAskingForTheThread/);
});
