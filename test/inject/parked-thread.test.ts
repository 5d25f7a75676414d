/**
 * The parked-thread engine that sessions and children share, against a scripted gdbstub on a real
 * socket: a call is one G packet over the registers read at the catch, with the syscall's number,
 * entry, stack pointer and arguments; a vCPU that moved since the thread was parked is refused
 * before anything is written; a thread not parked cannot be given a call.
 */
import t, { type Test } from 'tap';
import { InjectionError } from '../../lib/errors';
import { GdbClient } from '../../lib/transport/gdb';
import { ParkedThread, ParkedThreadMovedError, type ThreadEngine } from '../../lib/inject/parked-thread';
import { FakeGdb, type FakeRegister } from '../helpers/fake-gdb';

const NAMES = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'eflags', 'cs', 'cr3'];
const R = 0x401234n;
const SP = 0x7ffd0000e000n;

function description(): Record<string, string> {
  const regs = NAMES.map((n, i) => `<reg name="${n}" bitsize="${n === 'eflags' || n === 'cs' ? 32 : 64}" type="int64" regnum="${i}"/>`).join('');
  return { 'target.xml': `<?xml version="1.0"?><target version="1.0"><architecture>i386:x86-64</architecture><feature name="t">${regs}</feature></target>` };
}

function registers(): FakeRegister[] {
  return NAMES.map((name, i) => ({ name, regnum: i, size: name === 'eflags' || name === 'cs' ? 4 : 8, value: name === 'rip' ? R : name === 'rsp' ? SP + 0x80n : name === 'cs' ? 0x33n : BigInt(0x1000 + i) }));
}

async function setup(t: Test): Promise<{ fake: FakeGdb; client: GdbClient; thread: ParkedThread }> {
  const fake = await FakeGdb.start({ files: description(), registers: registers() });
  const client = await GdbClient.connect(fake.address, { timeout: 5000 });
  t.teardown(async () => {
    await client.close();
    await fake.stop();
  });
  const regs = await client.readRegisters({ thread: '01', timeout: 5000 });
  // issue() needs only the stub: the kernel and the runner serve waits
  const engine = { gdb: client, kernel: undefined, runner: undefined } as unknown as ThreadEngine;
  const thread = new ParkedThread(engine, { task: 0xffff888001000000n, pid: 42, mm: 0xffff888002000000n, root: 0x3000n }, { thread: '01', regs }, R);
  return { fake, client, thread };
}

const value = (fake: FakeGdb, name: string) => fake.registers.find((r) => r.name === name)!.value;
const writes = (fake: FakeGdb) => fake.received.filter((p) => p.startsWith('G'));

t.test('a call is one G packet: number, entry, stack pointer and arguments over the rest as caught', async (t) => {
  const { fake, thread } = await setup(t);
  const before = new Map(fake.registers.map((r) => [r.name, r.value]));
  await thread.issue(39, [1n, -1n, 3n, 4n, 5n, 6n], { rip: R - 2n, rsp: SP });
  t.equal(writes(fake).length, 1, 'one G packet');
  t.equal(value(fake, 'rip'), R - 2n, 'rip at the entry');
  t.equal(value(fake, 'rax'), 39n, 'rax is the number');
  t.equal(value(fake, 'rsp'), SP, 'rsp as asked');
  t.same(['rdi', 'rsi', 'rdx', 'r10', 'r8', 'r9'].map((n) => value(fake, n)), [1n, 0xffffffffffffffffn, 3n, 4n, 5n, 6n], 'the arguments in the ABI order, negative as two\'s complement');
  for (const n of ['rbx', 'rcx', 'rbp', 'r11', 'r12', 'r13', 'r14', 'r15', 'eflags', 'cs', 'cr3']) t.equal(value(fake, n), before.get(n), `${n} left as caught`);
  t.equal(thread.parked, false, 'the thread is no longer parked');
  await t.rejects(thread.issue(39, [], { rip: R - 2n, rsp: SP }), InjectionError, 'a thread not parked takes no call');
  t.equal(writes(fake).length, 1, 'and nothing was written for it');
});

t.test('a vCPU that ran behind the engine\'s back is refused before anything is written', async (t) => {
  const { fake, thread } = await setup(t);
  // another client ran the VM: the parked vCPU is elsewhere now
  fake.registers.find((r) => r.name === 'rip')!.value = 0xffffffff81000000n;
  fake.registers.find((r) => r.name === 'rsp')!.value = 0xffffc90000003f00n;
  const err = await thread.issue(39, [], { rip: R - 2n, rsp: SP }).catch((e: unknown) => e);
  t.type(err, ParkedThreadMovedError);
  t.equal((err as ParkedThreadMovedError).state, 'unknown');
  t.match((err as ParkedThreadMovedError).changes, /rip 0xffffffff81000000, not 0x401234; rsp 0xffffc90000003f00/, 'it names what moved');
  t.equal(writes(fake).length, 0, 'no G packet');
  t.equal(value(fake, 'rip'), 0xffffffff81000000n, 'the vCPU keeps what it runs now');
});

t.test('park() takes the registers of the stop as the new base', async (t) => {
  const { fake, client, thread } = await setup(t);
  await thread.issue(39, [], { rip: R - 2n, rsp: SP });
  // the call came back: the stub's registers are the stop's
  fake.registers.find((r) => r.name === 'rip')!.value = R;
  fake.registers.find((r) => r.name === 'rax')!.value = 1234n;
  const regs = await client.readRegisters({ thread: '01', timeout: 5000 });
  thread.park({ thread: '01', regs });
  t.equal(thread.parked, true);
  await thread.issue(102, [], { rip: R - 2n, rsp: SP });
  t.equal(value(fake, 'rax'), 102n, 'the next call goes out');
  t.equal(writes(fake).length, 2);
});

t.test('more than six arguments is a RangeError, with nothing written', async (t) => {
  const { fake, thread } = await setup(t);
  await t.rejects(thread.issue(39, [1n, 2n, 3n, 4n, 5n, 6n, 7n], { rip: R - 2n, rsp: SP }), RangeError);
  t.equal(writes(fake).length, 0);
  t.equal(thread.parked, true, 'still parked');
});
