/**
 * The breakpoint runner against a scripted gdbstub on a real socket: hits by other vCPUs are stepped
 * over (breakpoint out, that vCPU alone stepped, breakpoint back in), stops elsewhere are resumed,
 * a timeout or an abort stops the VM again, and every breakpoint it inserted is removed.
 */
import t, { type Test } from 'tap';
import { AbortError, TimeoutError } from '../../lib/errors';
import { GdbClient } from '../../lib/transport/gdb';
import { BreakpointRunner, type Hit } from '../../lib/inject/runner';
import { DEFAULT_FILES, defaultRegisters, FakeGdb, type FakeRegister } from '../helpers/fake-gdb';

const R = 0x47cc80n;

interface Script {
  fake: FakeGdb;
  client: GdbClient;
  /** Registers per vCPU (the fake serves the selected one). */
  cpus: Record<string, FakeRegister[]>;
  /** Stop replies to send, one per `c`; none left: stay running. */
  stops: string[];
  invalidations: number;
  /** Whether a single step moves the pc on (TCG) or stops again at a breakpoint there (KVM). */
  steps?: boolean;
}

function regs(rip: bigint, cs: bigint): FakeRegister[] {
  return defaultRegisters().map((r) => (r.name === 'rip' ? { ...r, value: rip } : r.name === 'cs' ? { ...r, value: cs } : { ...r }));
}

async function setup(t: Test, cpus: Record<string, FakeRegister[]>, stops: string[], steps = false): Promise<Script> {
  const served = Object.values(cpus)[0];
  // a register past the default description (rsp) is described too
  const extra = served.filter((r) => r.regnum >= 12).map((r) => `  <reg name="${r.name}" bitsize="${r.size * 8}" type="int64" regnum="${r.regnum}"/>\n`).join('');
  const files = extra ? { ...DEFAULT_FILES, 'sys.xml': DEFAULT_FILES['sys.xml'].replace('</feature>', `${extra}</feature>`) } : undefined;
  const fake = await FakeGdb.start({ registers: served, files });
  const s: Script = { fake, client: undefined as unknown as GdbClient, cpus, stops, invalidations: 0, steps };
  fake.handler = (packet, stub) => {
    // the registers served are those of the general thread: picked by Hg, or by the last stop
    const sel = /^Hg(.+)$/.exec(packet);
    const general = sel ? sel[1] : stub.currentThread;
    if (s.cpus[general]) stub.registers = s.cpus[general];
    const step = /^vCont;s:(.+)$/.exec(packet);
    if (step && s.steps) {
      // TCG: a step moves past the breakpoint at the pc
      const rip = s.cpus[step[1]].find((r) => r.name === 'rip')!;
      rip.value += 2n;
    }
    if (packet === 'c') {
      stub.running = true;
      const next = s.stops.shift();
      if (next) {
        setTimeout(() => {
          stub.running = false;
          stub.sendPacket(next);
        }, 5);
      }
      return null;
    }
    return undefined;
  };
  s.client = await GdbClient.connect(fake.address, { timeout: 5000 });
  t.teardown(async () => {
    await s.client.close();
    await fake.stop();
  });
  return s;
}

t.test('a hit by another vCPU is stepped over, then ours is taken', async (t) => {
  const s = await setup(t, { '01': regs(R, 0x33n), '02': regs(R, 0x33n) }, ['T05thread:02;', 'T05thread:01;']);
  const runner = new BreakpointRunner(s.client, () => s.invalidations++);
  await runner.insert(R);
  t.same(runner.breakpoints, [R]);
  const seen: string[] = [];
  const hit: Hit = await runner.runUntil(async (h) => {
    seen.push(h.thread);
    return h.thread === '01';
  }, { timeout: 5000, what: 'test' });
  t.equal(hit.thread, '01', 'the accepted hit is returned');
  t.equal(hit.rip, R);
  t.same(seen, ['02', '01'], 'every hit was shown to accept()');
  t.equal(runner.stats.stepOvers, 1, 'one step-over');
  const packets = s.fake.received.filter((p) => /^(Z1|z1|c$|vCont;s|p|Hg|g$)/.test(p));
  t.same(packets, ['Z1,47cc80,1', 'c', 'g', 'vCont;s:02', 'p2', 'z1,47cc80,1', 'vCont;s:02', 'Z1,47cc80,1', 'c', 'g'],
    'no Hg (each stop selects its vCPU); a first step with the breakpoint in place makes no progress (KVM-like), so: breakpoint out, only vCPU 02 stepped, breakpoint back, resume');
  t.ok(s.invalidations >= 3, 'caches dropped after every stop');
  t.same(await runner.removeAll(), []);
  t.same(runner.breakpoints, [], 'nothing left in the record');
  t.equal(s.fake.breakpoints.size, 0, 'nothing left in the stub');
});

t.test('where a step passes a breakpoint at the pc (TCG), step-overs need no z/Z', async (t) => {
  const s = await setup(t, { '01': regs(R, 0x33n), '02': regs(R, 0x33n), '03': regs(R, 0x33n) }, ['T05thread:02;', 'T05thread:03;', 'T05thread:01;'], true);
  s.fake.threadList = ['01', '02', '03'];
  const runner = new BreakpointRunner(s.client, () => undefined);
  await runner.insert(R);
  const hit = await runner.runUntil(async (h) => h.thread === '01', { timeout: 5000, what: 'test' });
  t.equal(hit.thread, '01');
  t.equal(runner.stats.stepOvers, 2, 'two step-overs');
  const packets = s.fake.received.filter((p) => /^(Z1|z1|c$|vCont;s|p)/.test(p));
  t.same(packets, ['Z1,47cc80,1', 'c', 'vCont;s:02', 'p2', 'c', 'vCont;s:03', 'c'], 'the first step-over finds out that a step passes the breakpoint (pc read once); none removes it');
  t.equal(s.fake.breakpoints.size, 1, 'the breakpoint stayed in place');
  await runner.removeAll();
});

t.test('stops that are not at our breakpoint, or in kernel mode, are resumed', async (t) => {
  const s = await setup(t, { '01': regs(0xffffffff81000000n, 0x10n), '02': regs(R, 0x10n), '03': regs(R, 0x33n) }, ['T02thread:01;', 'T05thread:02;', 'T05thread:03;']);
  s.fake.threadList = ['01', '02', '03'];
  const runner = new BreakpointRunner(s.client, () => undefined);
  await runner.insert(R);
  const hit = await runner.runUntil(async () => true, { timeout: 5000, what: 'test' });
  t.equal(hit.thread, '03', 'only the user-mode stop at the breakpoint is a hit');
  t.equal(runner.stats.otherStops, 2);
  t.equal(runner.stats.stepOvers, 0);
  await runner.removeAll();
});

t.test('a timeout stops the VM again', async (t) => {
  const s = await setup(t, { '01': regs(R, 0x33n) }, []);
  const runner = new BreakpointRunner(s.client, () => undefined);
  await runner.insert(R);
  const started = Date.now();
  const err = await runner.runUntil(async () => true, { timeout: 200, what: 'waiting in a test' }).then(() => null, (e: unknown) => e);
  t.ok(err instanceof TimeoutError, 'TimeoutError');
  t.match((err as Error).message, /waiting in a test/, 'named after the wait');
  t.ok(Date.now() - started < 3000, 'in about the time given');
  t.equal(s.fake.interrupts, 1, 'the VM was interrupted');
  t.equal(s.client.state, 'stopped', 'and is stopped');
  await runner.removeAll();
  t.equal(s.fake.breakpoints.size, 0);
});

t.test('an abort stops the VM again', async (t) => {
  const s = await setup(t, { '01': regs(R, 0x33n) }, []);
  const runner = new BreakpointRunner(s.client, () => undefined);
  await runner.insert(R);
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 50);
  const err = await runner.runUntil(async () => true, { timeout: 5000, signal: ac.signal, what: 'test' }).then(() => null, (e: unknown) => e);
  t.ok(err instanceof AbortError, 'AbortError');
  t.equal(s.fake.interrupts, 1, 'the VM was interrupted');
  t.equal(s.client.state, 'stopped');
  const again = await runner.runUntil(async () => true, { timeout: 5000, signal: ac.signal, what: 'test' }).then(() => null, (e: unknown) => e);
  t.ok(again instanceof AbortError, 'an aborted signal does not resume at all');
  t.equal(s.fake.received.filter((p) => p === 'c').length, 1, 'no second resume');
});

t.test('a breakpoint the stub refuses (KVM has 4 debug registers) is not recorded', async (t) => {
  const fake = await FakeGdb.start({ hwBreakpointLimit: 1 });
  const client = await GdbClient.connect(fake.address, { timeout: 5000 });
  t.teardown(async () => {
    await client.close();
    await fake.stop();
  });
  const runner = new BreakpointRunner(client, () => undefined);
  await runner.insert(R);
  await t.rejects(runner.insert(R + 0x100n));
  t.same(runner.breakpoints, [R], 'only the one inserted');
  await runner.insert(R);
  t.equal(fake.received.filter((p) => p.startsWith('Z1')).length, 2, 'inserting the same address twice sends nothing');
  await runner.removeAll();
  t.same(runner.breakpoints, []);
});

t.test('watch hits: ours is taken with its address, another is resumed without a step-over', async (t) => {
  const slot = 0x7ffee110b008n;
  // vCPU 02 is another process that read the same address (its own stack), in user mode; 01 is ours
  const s = await setup(t, { '01': regs(R, 0x33n), '02': regs(0x401000n, 0x33n) }, [
    `T05thread:02;rwatch:${slot.toString(16)};`,
    'T05thread:01;rwatch:7ffee110c000;',
    `T05thread:01;rwatch:${slot.toString(16)};`,
  ]);
  const runner = new BreakpointRunner(s.client, () => undefined);
  await runner.watch(slot);
  t.same(runner.watchpoints, [slot]);
  t.ok(s.fake.received.includes(`Z3,${slot.toString(16)},8`) && s.fake.breakpoints.has(`3:${slot.toString(16)}`), 'a read watchpoint (Z3) of 8 bytes');
  const seen: string[] = [];
  const hit = await runner.runUntil(async (h) => {
    seen.push(`${h.thread}@${h.rip.toString(16)}`);
    return h.thread === '01' && h.rip === R;
  }, { timeout: 5000, what: 'test' });
  t.equal(hit.watch, slot, 'the hit names the watchpoint');
  t.equal(hit.thread, '01');
  t.same(seen, ['02@401000', '01@47cc80'], 'a stop on an address that is not ours is not offered');
  t.equal(runner.stats.otherStops, 1);
  t.equal(runner.stats.stepOvers, 0, 'nothing is stepped over: the reading instruction is done');
  t.equal(s.fake.received.filter((p) => p.startsWith('vCont;s')).length, 0, 'no single step');
  t.equal(s.fake.received.filter((p) => p === 'c').length, 3, 'resumed after each stop it did not take');
  await runner.removeAll();
  t.same(runner.watchpoints, [], 'removeAll removes the watchpoint');
  t.equal(s.fake.breakpoints.size, 0);
});

t.test('breakpointAt sees the breakpoints of every runner on the connection', async (t) => {
  const s = await setup(t, { '01': regs(R, 0x33n) }, []);
  const a = new BreakpointRunner(s.client, () => undefined);
  const b = new BreakpointRunner(s.client, () => undefined);
  await a.insert(R);
  t.ok(b.breakpointAt(R), "another runner's breakpoint is seen");
  t.notOk(b.breakpointAt(R + 2n));
  await a.removeAll();
  t.notOk(b.breakpointAt(R), 'gone once removed');
});

t.test('a watch hit read by the interrupt of a timeout is offered to the next wait, not lost', async (t) => {
  const slot = 0x7ffee110b008n;
  // no stop comes by itself: the wait times out, and the interrupt reads the watch stop the VM
  // made at the same moment (the thread is back at R, its `ret` done)
  const s = await setup(t, { '01': regs(R, 0x33n) }, []);
  s.fake.interruptStop = `T05thread:01;rwatch:${slot.toString(16)};`;
  const runner = new BreakpointRunner(s.client, () => undefined);
  await runner.watch(slot);
  const accept = async (h: Hit) => h.thread === '01' && h.rip === R;
  const err = await runner.runUntil(accept, { timeout: 200, what: 'test' }).then(() => null, (e: unknown) => e);
  t.ok(err instanceof TimeoutError, 'the wait times out');
  const resumes = s.fake.received.filter((p) => p === 'c').length;
  const hit = await runner.runUntil(accept, { timeout: 2000, what: 'test' });
  t.equal(hit.watch, slot, 'the next wait takes the watch hit the interrupt read');
  t.equal(s.fake.received.filter((p) => p === 'c').length, resumes, 'without resuming the VM (the thread would run on with injected registers)');
  await runner.removeAll();
});

t.test('a step over someone else\'s breakpoint that lands where our watchpoint-mode call comes back is taken, not resumed', async (t) => {
  const slot = 0x7ffee110b008n;
  const gadget = 0x47b4f5n;
  // the `ret` of our call's `syscall; ret` gadget is another wrapper's return address: another
  // runner has a breakpoint on it, and our thread stops there before the `ret`
  const s = await setup(t, { '01': regs(gadget + 2n, 0x33n) }, ['T05thread:01;']);
  const base = s.fake.handler!;
  s.fake.handler = (packet, stub) => {
    if (packet === 'vCont;s:01') {
      // the step runs the `ret`: it reads the watched slot and lands at R
      s.cpus['01'].find((r) => r.name === 'rip')!.value = R;
      stub.registers = s.cpus['01'];
      stub.currentThread = '01';
      return `T05thread:01;rwatch:${slot.toString(16)};`;
    }
    return base(packet, stub);
  };
  const other = new BreakpointRunner(s.client, () => undefined);
  await other.insert(gadget + 2n);
  const runner = new BreakpointRunner(s.client, () => undefined);
  await runner.watch(slot);
  const seen: bigint[] = [];
  const hit = await runner.runUntil(async (h) => {
    seen.push(h.rip);
    return h.thread === '01' && h.rip === R;
  }, { timeout: 2000, what: 'test' });
  t.equal(hit.rip, R, 'the thread where the step left it, back from the call');
  t.equal(hit.watch, slot, 'with the watch hit the step made');
  t.same(seen, [gadget + 2n, R], 'the breakpoint stop is refused, the landed state offered');
  const packets = s.fake.received.filter((p) => p === 'c' || p.startsWith('vCont;s'));
  t.same(packets, ['c', 'vCont;s:01'], 'the VM is not resumed after the step: the thread would run on with injected registers');
  await runner.removeAll();
  await other.removeAll();
});

t.test('when every vCPU is held, the hold that was to end soonest is let go, not one held for good', async (t) => {
  // 01 is held for good (recover's guard: a thread with injected registers), then 02 for a moment
  // (a wait's short hold); resuming anything must then let one go
  const s = await setup(t, { '01': regs(R, 0x33n), '02': regs(R, 0x33n) }, ['T05thread:01;', 'T05thread:02;'], true);
  // with 01 held, the others are resumed by vCont: that stops too, as `c` does
  const base = s.fake.handler!;
  s.fake.handler = (packet, stub) => base(packet.startsWith('vCont;c') ? 'c' : packet, stub);
  const runner = new BreakpointRunner(s.client, () => undefined);
  await runner.insert(R);
  const unholdLong = runner.hold({ accept: async (h) => h.thread === '01', maxMs: 2 ** 31 });
  const unholdShort = runner.hold({ accept: async (h) => h.thread === '02', maxMs: 60_000 });
  const err = await runner.runUntil(async () => false, { timeout: 1500, what: 'test' }).then(() => null, (e: unknown) => e);
  t.ok(err instanceof TimeoutError, 'nothing is accepted: the wait times out');
  t.ok(runner.isHeld('01'), 'the thread held for good is still held');
  t.notOk(runner.isHeld('02'), 'the short hold was let go');
  t.same(s.fake.received.filter((p) => p.startsWith('vCont;s')), ['vCont;s:02'], 'only vCPU 02 was stepped');
  unholdLong();
  unholdShort();
  await runner.releaseHeld();
  await runner.removeAll();
});

t.test('releaseHeld lets go only what this runner\'s holds keep, never another runner\'s', async (t) => {
  // runner A (recover's guard) holds vCPU 01 for good; runner B (a helper's acquisition) gives
  // up a round and lets its own held hits go
  const s = await setup(t, { '01': regs(R, 0x33n), '02': regs(0x401000n, 0x33n) }, ['T05thread:01;'], true);
  const a = new BreakpointRunner(s.client, () => undefined);
  const b = new BreakpointRunner(s.client, () => undefined);
  await a.insert(R);
  const unhold = a.hold({ accept: async (h) => h.thread === '01', maxMs: 2 ** 31 });
  const err = await b.runUntil(async () => false, { timeout: 500, what: 'test' }).then(() => null, (e: unknown) => e);
  t.ok(err instanceof TimeoutError, 'B takes nothing');
  t.ok(b.isHeld('01'), 'vCPU 01 is held, for A');
  await b.releaseHeld();
  t.ok(a.isHeld('01'), 'B letting its held hits go leaves A\'s held');
  t.same(s.fake.received.filter((p) => p.startsWith('vCont;s')), [], 'nothing was stepped');
  unhold();
  await a.releaseHeld();
  t.notOk(a.isHeld('01'), 'A lets it go itself');
  await a.removeAll();
});

t.test('a hit another runner intercepts gets new registers there and runs on, stepped over a breakpoint at its new pc', async (t) => {
  // runner A (recover keeping a dead injection's thread asleep) intercepts vCPU 01's hit at R;
  // runner B waits for vCPU 02
  const s = await setup(t, { '01': regs(R, 0x33n), '02': regs(0x401000n, 0x33n) }, ['T05thread:01;', 'T05thread:02;'], true);
  const a = new BreakpointRunner(s.client, () => undefined);
  const b = new BreakpointRunner(s.client, () => undefined);
  await a.insert(R);
  await a.insert(R - 2n);
  await b.insert(0x401000n);
  const taken: string[] = [];
  const unregister = a.intercept({
    take: async (h) => {
      if (h.thread !== '01' || h.rip !== R) return false;
      taken.push(h.thread);
      s.cpus['01'].find((r) => r.name === 'rip')!.value = R - 2n;
      return true;
    },
  });
  const hit = await b.runUntil(async (h) => h.thread === '02', { timeout: 5000, what: 'test' });
  t.equal(hit.thread, '02', 'B gets its own hit');
  t.same(taken, ['01'], 'vCPU 01\'s hit went to A\'s intercept');
  t.equal(b.stats.intercepted, 1, 'counted as intercepted by the runner that met it');
  t.same(s.fake.received.filter((p) => p.startsWith('vCont;s')), ['vCont;s:01'], 'vCPU 01 alone was stepped, over the breakpoint at its new pc (R - 2)');
  t.equal(s.cpus['01'].find((r) => r.name === 'rip')!.value, R, 'it ran on from there');
  t.notOk(b.isHeld('01'), 'nothing is held: no vCPU was kept stopped');

  // unregistered, the same hit is a foreign one: stepped over where it stands
  unregister();
  s.cpus['01'].find((r) => r.name === 'rip')!.value = R;
  s.stops.push('T05thread:01;', 'T05thread:02;');
  await b.runUntil(async (h) => h.thread === '02', { timeout: 5000, what: 'test' });
  t.same(taken, ['01'], 'the intercept is not asked again');
  t.equal(b.stats.intercepted, 1);
  await a.removeAll();
  await b.removeAll();
});

t.test('a watch-mode call back on one vCPU while QEMU reports another vCPU\'s breakpoint is taken, not resumed', async (t) => {
  const slot = 0x7ffee110b008n;
  const other = 0x4bfde1n;
  // 02 hits someone else's breakpoint (a thread a hold waits for); in the same instant 01, ours,
  // did its call's `ret`: back at R with its stack pointer just above the slot, and QEMU says
  // nothing of it
  const withRsp = (r: FakeRegister[], rsp: bigint): FakeRegister[] => [...r, { name: 'rsp', size: 8, regnum: 12, value: rsp }];
  const s = await setup(t, { '01': withRsp(regs(R, 0x33n), slot + 8n), '02': withRsp(regs(other, 0x33n), 0x7ffd00001000n) }, ['T05thread:02;']);
  const base = s.fake.handler!;
  s.fake.handler = (packet, stub) => {
    if (packet === 'qfThreadInfo') return 'm01,02';
    if (packet === 'qsThreadInfo') return 'l';
    return base(packet, stub);
  };
  const holder = new BreakpointRunner(s.client, () => undefined);
  await holder.insert(other);
  const unhold = holder.hold({ accept: async (h) => h.thread === '02' && h.rip === other, maxMs: 60_000 });
  const runner = new BreakpointRunner(s.client, () => undefined);
  await runner.watch(slot);
  const hit = await runner.runUntil(async (h) => h.thread === '01' && h.rip === R && h.regs.get('rsp') === slot + 8n, { timeout: 2000, what: 'test' });
  t.same([hit.thread, hit.rip, hit.watch], ['01', R, slot], 'our thread, back at R, with the slot it came back by');
  t.equal(runner.stats.unreported, 1, 'found by looking, as an unreported watch hit');
  t.ok(holder.isHeld('02'), 'the other vCPU stays held for its runner');
  t.equal(s.fake.received.filter((p) => p === 'c' || p.startsWith('vCont;c')).length, 1, 'the VM is not resumed after the stop: our thread would run on with the call\'s stack pointer');
  unhold();
  await runner.removeAll();
  await holder.removeAll();
});
