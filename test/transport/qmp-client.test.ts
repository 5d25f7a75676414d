import t from 'tap';
import { AbortError, ConnectionError, DisconnectedError, ProtocolError, TimeoutError, VmiError } from '../../lib/errors';
import { QmpClient, QmpExecuteError, QmpGreetingError, QmpNegotiationError, type QmpEvent } from '../../lib/transport/qmp';
import { FakeQmpServer, QEMU_72_GREETING, eventMessage, qemuJson, type FakeQmpConnection } from '../helpers/fake-qmp';

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The error `p` rejects with; fails the test's expectations if it resolves instead. */
function rejection(p: Promise<unknown>): Promise<any> {
  return p.then(
    (v) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(v)}`);
    },
    (e: unknown) => e,
  );
}

/** Reports whether `p` has settled, without waiting for it. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await delay(5);
  return done;
}

/** Connects a client to a fresh fake server; both are closed when the test ends. */
async function setup(t: { teardown(fn: () => unknown): void }, opts: Parameters<typeof FakeQmpServer.start>[0] = {}) {
  const server = await FakeQmpServer.start(opts);
  const qmp = await QmpClient.connect(server.address, { timeout: 2000 });
  const conn = await server.connection();
  t.teardown(async () => {
    await qmp.close();
    await server.close();
  });
  return { server, qmp, conn };
}

t.test('connect: reads the greeting and negotiates with exact bytes', async (t) => {
  const { qmp, conn } = await setup(t);
  t.equal(conn.received, '{"execute":"qmp_capabilities","id":1}\n');
  t.same(qmp.greeting, {
    version: { qemu: { major: 7, minor: 2, micro: 22 }, package: 'Debian 1:7.2+dfsg-7+deb12u18+b3' },
    capabilities: ['oob'],
  });
  t.match(qmp.address, /^unix:\/.*qmp\.sock$/);
  t.equal(qmp.closed, false);
});

t.test('execute sends id-tagged requests and resolves with the return value', async (t) => {
  const { qmp, conn } = await setup(t);
  const status = await qmp.execute('query-status');
  t.same(status, { status: 'running', singlestep: false, running: true });
  const r = qmp.execute('device_del', { id: 'net0' });
  await conn.nextRequest('device_del').catch(() => undefined);
  await t.rejects(r, QmpExecuteError); // the fake does not know device_del
  t.equal(
    conn.received,
    '{"execute":"qmp_capabilities","id":1}\n' +
      '{"execute":"query-status","id":2}\n' +
      '{"execute":"device_del","arguments":{"id":"net0"},"id":3}\n',
  );
});

t.test('replies are matched by id, not by order', async (t) => {
  const { server, qmp, conn } = await setup(t);
  server.handle('slow', () => undefined).handle('fast', () => undefined);
  const a = qmp.execute('slow');
  const b = qmp.execute('fast');
  await delay(20);
  const [ra, rb] = conn.requests.slice(-2);
  conn.sendRaw(qemuJson({ return: 'for fast', id: rb.id }) + qemuJson({ return: 'for slow', id: ra.id }));
  t.equal(await a, 'for slow');
  t.equal(await b, 'for fast');
});

t.test('an error reply becomes QmpExecuteError with class, desc, command and arguments', async (t) => {
  const { server, qmp } = await setup(t);
  server.handle('migrate', () => ({ error: { class: 'GenericError', desc: 'Migration is disabled' } }));
  const err = await rejection(qmp.execute('migrate', { uri: 'exec:cat' }));
  t.ok(err instanceof QmpExecuteError);
  t.ok(err instanceof VmiError);
  t.equal(err.name, 'QmpExecuteError');
  t.equal(err.code, 'ECOMMAND');
  t.equal(err.errorClass, 'GenericError');
  t.equal(err.desc, 'Migration is disabled');
  t.equal(err.command, 'migrate');
  t.same(err.arguments, { uri: 'exec:cat' });
  t.equal(err.message, 'migrate: GenericError: Migration is disabled');
  t.match(err.stack, /request made at[\s\S]*qmp-client\.test\.ts/, 'the caller\'s stack is kept');
});

t.test('an unknown command: CommandNotFound', async (t) => {
  const { qmp } = await setup(t);
  await t.rejects(qmp.execute('no-such-command'), { name: 'QmpExecuteError', errorClass: 'CommandNotFound' });
});

t.test('events before, between and after replies in one chunk are all delivered, in order', async (t) => {
  const { server, qmp } = await setup(t);
  const seen: string[] = [];
  qmp.on('event', (ev) => seen.push(ev.event));
  server.handle('stop', (req, conn) => {
    conn.sendRaw(
      qemuJson(eventMessage('STOP')) +
        qemuJson({ return: {}, id: req.id }) +
        qemuJson(eventMessage('GUEST_PANICKED', { action: 'pause', info: { type: 'hyper-v' } })),
    );
  });
  const stop = qmp.waitForEvent('STOP');
  const panic = qmp.waitForEvent('GUEST_PANICKED');
  t.same(await qmp.execute('stop'), {});
  t.same(await stop, { event: 'STOP', timestamp: { seconds: 1700000000, microseconds: 123456 } });
  t.same((await panic).data, { action: 'pause', info: { type: 'hyper-v' } });
  t.same(seen, ['STOP', 'GUEST_PANICKED']);
});

t.test('a reply and an event torn across writes', async (t) => {
  const { server, qmp } = await setup(t);
  const events: QmpEvent[] = [];
  qmp.on('event', (ev) => events.push(ev));
  server.handle('cont', async (req, conn) => {
    const bytes = qemuJson(eventMessage('RESUME')) + qemuJson({ return: {}, id: req.id });
    // cuts: inside "timestamp", right after the event's closing brace, inside "return"
    await conn.sendTorn(bytes, [5, bytes.indexOf('}\r\n') + 1, bytes.length - 10], async (piece) => {
      if (piece === 0) t.equal(events.length, 0, 'nothing delivered from a partial event');
      if (piece === 1) t.equal(events.length, 1, 'event delivered as soon as it is complete');
      if (piece === 2) t.equal(await settled(reply), false, 'reply not resolved while torn');
    });
  });
  const reply = qmp.execute('cont');
  t.same(await reply, {});
  t.equal(events[0].event, 'RESUME');
});

t.test('SHUTDOWN, RESET, DUMP_COMPLETED and unknown events reach on("event")', async (t) => {
  const { qmp, conn } = await setup(t);
  const seen: QmpEvent[] = [];
  qmp.on('event', (ev) => seen.push(ev));
  const last = qmp.waitForEvent('VSERPORT_CHANGE');
  conn.event('SHUTDOWN', { guest: true, reason: 'guest-shutdown' });
  conn.event('RESET', { guest: false, reason: 'host-qmp-system-reset' });
  conn.event('DUMP_COMPLETED', { result: { status: 'completed', completed: 4096, total: 4096 } });
  conn.event('VSERPORT_CHANGE', { id: 'ch0', open: true });
  await last;
  t.same(seen.map((e) => e.event), ['SHUTDOWN', 'RESET', 'DUMP_COMPLETED', 'VSERPORT_CHANGE']);
  t.same(seen[0].data, { guest: true, reason: 'guest-shutdown' });
});

t.test('waitForEvent: filter picks the matching event', async (t) => {
  const { qmp, conn } = await setup(t);
  const w = qmp.waitForEvent('SHUTDOWN', { filter: (ev) => ev.data?.guest === true });
  conn.event('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' });
  await delay(10);
  t.equal(await settled(w), false, 'non-matching event ignored');
  conn.event('SHUTDOWN', { guest: true, reason: 'guest-shutdown' });
  t.equal((await w).data?.reason, 'guest-shutdown');
});

t.test('waitForEvent: a filter that throws rejects the wait', async (t) => {
  const { qmp, conn } = await setup(t);
  const w = qmp.waitForEvent('STOP', {
    filter: () => {
      throw new VmiError('EBOOM', 'filter failed');
    },
  });
  conn.event('STOP');
  await t.rejects(w, { code: 'EBOOM' });
  t.equal(await qmp.execute('query-status').then(() => 'alive'), 'alive');
});

t.test('waitForEvent: timeout, and the default timeout', async (t) => {
  const { qmp, conn } = await setup(t);
  const start = Date.now();
  await t.rejects(qmp.waitForEvent('RESUME', { timeout: 50 }), TimeoutError);
  t.ok(Date.now() - start >= 45);
  qmp.defaultTimeout = 30;
  await t.rejects(qmp.waitForEvent('RESUME'), { name: 'TimeoutError', timeoutMs: 30 });
  // A timed-out wait is forgotten: a later event does not disturb anything.
  conn.event('RESUME');
  qmp.defaultTimeout = 2000;
  t.ok(await qmp.execute('query-status'));
});

t.test('waitForEvent: AbortSignal, already aborted and aborted later', async (t) => {
  const { qmp } = await setup(t);
  await t.rejects(qmp.waitForEvent('STOP', { signal: AbortSignal.abort() }), AbortError);
  const ac = new AbortController();
  const w = qmp.waitForEvent('STOP', { signal: ac.signal, timeout: Infinity });
  setTimeout(() => ac.abort(), 10);
  await t.rejects(w, { name: 'AbortError', code: 'EABORTED' });
});

t.test('execute: timeout, and the late reply is dropped', async (t) => {
  const { server, qmp, conn } = await setup(t);
  server.handle('query-block', () => undefined); // never answers in time
  const err = await rejection(qmp.execute('query-block', undefined, { timeout: 40 }));
  t.ok(err instanceof TimeoutError);
  t.equal(qmp.pendingCount, 0, 'the timed-out call is forgotten');
  t.match(err.message, /QMP query-block: no answer within 40 ms/);
  t.match(err.stack, /request made at[\s\S]*qmp-client\.test\.ts/);
  conn.send({ return: 'late', id: 2 });
  t.same(await qmp.execute('query-status'), { status: 'running', singlestep: false, running: true }, 'next call unaffected');
});

t.test('execute: an already-aborted signal sends nothing', async (t) => {
  const { qmp, conn } = await setup(t);
  const before = conn.received;
  await t.rejects(qmp.execute('quit', undefined, { signal: AbortSignal.abort() }), AbortError);
  await delay(20);
  t.equal(conn.received, before, 'quit never reached the server');
});

t.test('execute: abort while waiting for the reply', async (t) => {
  const { server, qmp, conn } = await setup(t);
  server.handle('query-block', () => undefined);
  const ac = new AbortController();
  const p = qmp.execute('query-block', undefined, { signal: ac.signal });
  await conn.nextRequest('query-block');
  ac.abort(new Error('user pressed ^C'));
  const err = await rejection(p);
  t.ok(err instanceof AbortError);
  t.equal((err.cause as Error).message, 'user pressed ^C');
  t.equal(qmp.pendingCount, 0, 'the aborted call is forgotten');
});

t.test('execute: argument validation', async (t) => {
  const { qmp } = await setup(t);
  await t.rejects(qmp.execute(''), { code: 'EINVAL' });
  await t.rejects(qmp.execute('x', [] as unknown as object), { code: 'EINVAL' });
  await t.rejects(qmp.execute('x', { big: 1n }), { code: 'EINVAL', message: /JSON/ });
});

t.test('hmp goes through human-monitor-command and normalises line ends', async (t) => {
  const { server, qmp, conn } = await setup(t);
  server.handle('human-monitor-command', (req) => ({
    return: req.arguments?.['command-line'] === 'info registers' ? '\r\nCPU#0\r\nEAX=00000000 EBX=00000000\r\n' : 'unknown\r\n',
  }));
  t.equal(await qmp.hmp('info registers'), '\nCPU#0\nEAX=00000000 EBX=00000000\n');
  t.match(conn.received, /\{"execute":"human-monitor-command","arguments":\{"command-line":"info registers"\},"id":2\}\n$/);
  server.handle('human-monitor-command', () => ({ return: 42 }));
  await t.rejects(qmp.hmp('info version'), ProtocolError);
});

t.test('losing the socket rejects pending executes and event waits with DisconnectedError', async (t) => {
  const server = await FakeQmpServer.start({ handlers: { 'query-block': () => undefined } });
  t.teardown(() => server.close());
  const qmp = await QmpClient.connect(server.address);
  const conn = await server.connection();
  const closeErr = new Promise<Error | undefined>((resolve) => qmp.on('close', resolve));
  const a = qmp.execute('query-block');
  const b = qmp.execute('query-block');
  const w = qmp.waitForEvent('SHUTDOWN', { timeout: Infinity });
  await conn.nextRequest('query-block');
  conn.destroy();
  for (const p of [a, b, w]) {
    const err = await rejection(p);
    t.ok(err instanceof DisconnectedError, err.message);
    t.equal(err.code, 'EDISCONNECTED');
  }
  const ce = await closeErr;
  t.ok(ce instanceof DisconnectedError);
  t.match(ce!.message, /lost/);
  t.equal(qmp.closed, true);
  await t.rejects(qmp.execute('query-status'), DisconnectedError, 'calls after loss reject at once');
  await t.rejects(qmp.waitForEvent('STOP'), DisconnectedError);
  await qmp.close(); // still fine
});

t.test('a server that closes mid-reply: pending call rejected, torn message reported', async (t) => {
  const server = await FakeQmpServer.start({
    handlers: {
      'query-status': (req, conn) => {
        conn.sendRaw(`{"return": {"status": "runn`);
        setTimeout(() => conn.destroy(), 10);
      },
    },
  });
  t.teardown(() => server.close());
  const qmp = await QmpClient.connect(server.address);
  const err = await rejection(qmp.execute('query-status'));
  t.ok(err instanceof DisconnectedError);
  t.match(err.message, /in the middle of a message \(27 bytes unfinished\)/);
});

t.test('close(): rejects pending calls, is idempotent, emits close once without error', async (t) => {
  const server = await FakeQmpServer.start({ handlers: { 'query-block': () => undefined } });
  t.teardown(() => server.close());
  const qmp = await QmpClient.connect(server.address);
  const conn = await server.connection();
  const closes: (Error | undefined)[] = [];
  qmp.on('close', (err) => closes.push(err));
  const pending = qmp.execute('query-block');
  const waiting = qmp.waitForEvent('STOP');
  await conn.nextRequest('query-block');
  const c1 = qmp.close();
  const c2 = qmp.close();
  t.equal(c1, c2, 'same promise');
  await t.rejects(pending, { name: 'DisconnectedError', message: /closed/ });
  await t.rejects(waiting, DisconnectedError);
  await c1;
  await qmp.close();
  await conn.closed; // the server sees the connection end
  await delay(10);
  t.same(closes, [undefined], 'one close event, no error');
  await t.rejects(qmp.execute('query-status'), DisconnectedError);
});

t.test('close() flushes a request written just before it', async (t) => {
  const server = await FakeQmpServer.start({ handlers: { quit: () => undefined } });
  t.teardown(() => server.close());
  const qmp = await QmpClient.connect(server.address);
  const conn = await server.connection();
  qmp.execute('quit').catch(() => undefined);
  await qmp.close();
  await conn.closed;
  t.match(conn.received, /\{"execute":"quit","id":2\}\n$/);
});

t.test('close() flushes a large request the peer is slow to read', async (t) => {
  const server = await FakeQmpServer.start({ handlers: { 'x-big': () => undefined } });
  t.teardown(() => server.close());
  const qmp = await QmpClient.connect(server.address);
  const conn = await server.connection();
  conn.socket.pause();
  const blob = 'b'.repeat(8 * 1024 * 1024);
  qmp.execute('x-big', { blob }).catch(() => undefined);
  const closing = qmp.close();
  await delay(50);
  conn.socket.resume();
  await closing;
  await conn.closed;
  t.equal(conn.requests.at(-1)?.arguments?.blob, blob, 'the whole request arrived before the hang-up');
});

t.test('oversize line: a peer that never ends a message gets a ProtocolError', async (t) => {
  const server = await FakeQmpServer.start({ handlers: { 'query-status': () => undefined } });
  t.teardown(() => server.close());
  const qmp = await QmpClient.connect(server.address, { maxMessageBytes: 4096 });
  const conn = await server.connection();
  const closeErr = new Promise<Error | undefined>((resolve) => qmp.on('close', resolve));
  const p = qmp.execute('query-status');
  await conn.nextRequest('query-status');
  conn.sendRaw('{"return": "' + 'A'.repeat(3000));
  await delay(20);
  t.equal(await settled(p), false, 'under the limit: still waiting');
  conn.sendRaw('A'.repeat(2000));
  const err = await rejection(p);
  t.ok(err instanceof ProtocolError, 'pending call fails with ProtocolError');
  t.match(err.message, /exceeds 4096 bytes/);
  const ce = await closeErr;
  t.ok(ce instanceof ProtocolError, 'close event carries the ProtocolError');
  await conn.closed;
  await t.rejects(qmp.execute('query-status'), DisconnectedError);
});

t.test('oversize line with the default 64 MiB limit', async (t) => {
  const server = await FakeQmpServer.start({ handlers: { 'query-status': () => undefined } });
  t.teardown(() => server.close());
  const qmp = await QmpClient.connect(server.address);
  const conn = await server.connection();
  const p = qmp.execute('query-status', undefined, { timeout: 20_000 });
  await conn.nextRequest('query-status');
  const mib = Buffer.alloc(1024 * 1024, 0x41);
  conn.sendRaw('{"return": "');
  let sent = 0;
  // Keep streaming (past 64 MiB) until the client hangs up; stop at 80 MiB in any case.
  while (!conn.socket.destroyed && sent < 80) {
    if (!conn.socket.write(mib)) await new Promise((r) => setTimeout(r, 1));
    sent++;
  }
  const err = await rejection(p);
  t.ok(err instanceof ProtocolError);
  t.match(err.message, /exceeds 67108864 bytes/);
});

t.test('greeting: garbage (e.g. an HMP socket) fails with QmpGreetingError', async (t) => {
  const server = await FakeQmpServer.start({ greeting: "QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) " });
  t.teardown(() => server.close());
  const err = await rejection(QmpClient.connect(server.address));
  t.ok(err instanceof QmpGreetingError);
  t.ok(err instanceof ProtocolError);
  t.equal(err.code, 'EPROTO');
  t.match(err.message, /expected "\{"/);
  const conn = await server.connection();
  await conn.closed;
  t.pass('the client hung up');
});

t.test('greeting: wrong shape, wrong first message, peer closing first', async (t) => {
  for (const [greeting, why] of [
    [{ QMP: { capabilities: [] } }, /no version\.qemu/],
    [{ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: '' }, capabilities: 'oob' } }, /capabilities/],
    [eventMessage('STOP'), /expected the greeting, got a event/],
    [{ return: {}, id: 1 }, /expected the greeting/],
  ] as const) {
    const server = await FakeQmpServer.start({ greeting });
    const err = await rejection(QmpClient.connect(server.address));
    t.ok(err instanceof QmpGreetingError, `${JSON.stringify(greeting)}: ${err.message}`);
    t.match(err.message, why);
    await server.close();
  }
  const server = await FakeQmpServer.start({ greeting: null });
  t.teardown(() => server.close());
  const connecting = QmpClient.connect(server.address);
  (await server.connection()).destroy();
  const err = await rejection(connecting);
  t.ok(err instanceof QmpGreetingError);
  t.ok(err.cause instanceof DisconnectedError);
});

t.test('greeting: a package-less greeting is accepted', async (t) => {
  const server = await FakeQmpServer.start({ greeting: { QMP: { version: { qemu: { major: 8, minor: 0, micro: 0 } }, capabilities: [] } } });
  t.teardown(() => server.close());
  const qmp = await QmpClient.connect(server.address);
  t.equal(qmp.greeting.version.package, '');
  await qmp.close();
});

t.test('a server that never greets: connect times out and hangs up', async (t) => {
  const server = await FakeQmpServer.start({ greeting: null });
  t.teardown(() => server.close());
  const err = await rejection(QmpClient.connect(server.address, { timeout: 50 }));
  t.ok(err instanceof TimeoutError);
  t.match(err.message, /QMP connect to unix:.*no greeting: QEMU serves one client per QMP socket.*no answer within 50 ms/);
  t.equal(err.timeoutMs, 50);
  await (await server.connection()).closed;
});

t.test('connect honours AbortSignal', async (t) => {
  const server = await FakeQmpServer.start({ greeting: null });
  t.teardown(() => server.close());
  const ac = new AbortController();
  const p = QmpClient.connect(server.address, { signal: ac.signal });
  await server.connection();
  ac.abort();
  await t.rejects(p, AbortError);
  await t.rejects(QmpClient.connect(server.address, { signal: AbortSignal.abort() }), AbortError);
});

t.test('negotiation refused: QmpNegotiationError', async (t) => {
  const server = await FakeQmpServer.start({
    handlers: { qmp_capabilities: () => ({ error: { class: 'GenericError', desc: "Capability negotiation is already complete, command 'qmp_capabilities' ignored" } }) },
  });
  t.teardown(() => server.close());
  const err = await rejection(QmpClient.connect(server.address));
  t.ok(err instanceof QmpNegotiationError);
  t.ok(err.cause instanceof QmpExecuteError);
  t.match(err.message, /QMP capability negotiation: GenericError: Capability negotiation/);
});

t.test('negotiation: peer closes instead of answering', async (t) => {
  const server = await FakeQmpServer.start({ handlers: { qmp_capabilities: (_req, conn) => conn.destroy() } });
  t.teardown(() => server.close());
  const err = await rejection(QmpClient.connect(server.address));
  t.ok(err instanceof QmpNegotiationError);
  t.ok(err.cause instanceof DisconnectedError);
});

t.test('connection errors: missing socket, refused port, non-loopback address', async (t) => {
  const err = await rejection(QmpClient.connect('unix:/nonexistent/vmictl/qmp.sock'));
  t.ok(err instanceof ConnectionError);
  t.match(err.message, /no such socket/);
  const server = await FakeQmpServer.start({ listen: 'tcp' });
  const port = Number(server.address.split(':').pop());
  await server.close();
  await t.rejects(QmpClient.connect(`tcp:127.0.0.1:${port}`), { name: 'ConnectionError', message: /refused/ });
  await t.rejects(QmpClient.connect('tcp:192.168.1.10:4444'), { code: 'EADDRESS', message: /non-loopback/ });
});

t.test('tcp loopback works the same', async (t) => {
  const { qmp, conn } = await setup(t, { listen: 'tcp' });
  t.match(qmp.address, /^tcp:127\.0\.0\.1:\d+$/);
  t.equal(conn.socket.remoteAddress, '127.0.0.1');
  t.same(await qmp.execute('query-status'), { status: 'running', singlestep: false, running: true });
});

t.test('a reply without id (QEMU could not parse a request) ends the connection', async (t) => {
  const { server, qmp } = await setup(t);
  server.handle('query-block', (_req, conn) => conn.send({ error: { class: 'GenericError', desc: "JSON parse error, invalid keyword 'garbage'" } }));
  const err = await rejection(qmp.execute('query-block'));
  t.ok(err instanceof ProtocolError);
  t.match(err.message, /without an id/);
  t.equal(qmp.closed, true);
});

t.test('malformed events and a second greeting are protocol errors', async (t) => {
  for (const bad of [
    '{"event": "STOP"}\r\n',
    '{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}, "data": 5}\r\n',
    '{"something": "else"}\r\n',
    QEMU_72_GREETING,
  ]) {
    const server = await FakeQmpServer.start();
    const qmp = await QmpClient.connect(server.address);
    const closed = new Promise<Error | undefined>((resolve) => qmp.on('close', resolve));
    (await server.connection()).sendRaw(bad);
    t.ok((await closed) instanceof ProtocolError, bad.trim());
    await server.close();
  }
});

t.test('a throwing event listener does not break the stream', async (t) => {
  const { qmp, conn } = await setup(t);
  const boom = new Error('listener bug');
  qmp.on('event', (ev) => {
    if (ev.event === 'STOP') throw boom;
  });
  const uncaught: unknown[] = [];
  const listeners = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  const onUncaught = (e: unknown) => uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  t.teardown(() => {
    process.off('uncaughtException', onUncaught);
    for (const l of listeners) process.on('uncaughtException', l);
  });
  const resume = qmp.waitForEvent('RESUME');
  conn.sendRaw(qemuJson(eventMessage('STOP')) + qemuJson(eventMessage('RESUME')));
  t.equal((await resume).event, 'RESUME', 'the message after the throwing one still arrives');
  await delay(10);
  t.same(uncaught, [boom], 'the listener error is still surfaced');
  t.ok(await qmp.execute('query-status'));
});
