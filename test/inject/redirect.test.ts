/**
 * Sending a thread home from an injected syscall that does not end (lib/inject/redirect.ts): the
 * pt_regs bytes it will return to user mode with, and the journal kept for what is left.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { homeRegisters } from '../../lib/inject/redirect';
import { Journal, listJournals, readJournal, type JournalEntry } from '../../lib/inject/journal';

// struct pt_regs as arch/x86/include/asm/ptrace.h lays it out on x86-64
const FIELDS = ['r15', 'r14', 'r13', 'r12', 'bp', 'bx', 'r11', 'r10', 'r9', 'r8', 'ax', 'cx', 'dx', 'si', 'di', 'orig_ax', 'ip', 'cs', 'flags', 'sp', 'ss'];
const offsetOf = (f: string) => {
  const i = FIELDS.indexOf(f);
  if (i < 0) throw new Error(`no pt_regs.${f}`);
  return 8 * i;
};
const R = 0x47cc80n;

/** pt_regs of a thread inside an injected call (ip = R, sp = callSp, orig_ax = the call's number). */
function inCall(): Buffer {
  const b = Buffer.alloc(8 * FIELDS.length);
  b.writeBigUInt64LE(R, offsetOf('ip'));
  b.writeBigUInt64LE(0x7ffd0000e000n, offsetOf('sp'));
  b.writeBigUInt64LE(7n, offsetOf('orig_ax'));
  b.writeBigUInt64LE(0x33n, offsetOf('cs'));
  return b;
}
const u64 = (b: Buffer, f: string) => b.readBigUInt64LE(offsetOf(f));

t.test('caught at R (its own syscall had returned): back to R with its registers', async (t) => {
  const saved = new Map([['rip', R], ['rsp', 0x7ffd0000f008n], ['rax', 3n], ['rdi', 5n], ['eflags', 0x246n], ['cr3', 0x1000n]]);
  const b = homeRegisters(inCall(), offsetOf, saved, R);
  t.equal(u64(b, 'ip'), R);
  t.equal(u64(b, 'sp'), 0x7ffd0000f008n, 'its own stack pointer');
  t.equal(u64(b, 'di'), 5n);
  t.equal(u64(b, 'flags'), 0x246n);
  t.equal(b.readBigInt64LE(offsetOf('orig_ax')), -1n, 'no syscall restart');
  t.equal(u64(b, 'cs'), 0x33n, 'fields that are not registers of the thread are kept');
});

t.test('caught at R − 2 (restarting its syscall): sent to R, never to the syscall instruction', async (t) => {
  // its syscall was being restarted: rax holds that syscall's number; the kernel will put the
  // injected call's result in ax when it ends, so going back to R − 2 would run syscall(result)
  const saved = new Map([['rip', R - 2n], ['rsp', 0x7ffd0000f008n], ['rax', 232n /* epoll_wait */]]);
  const b = homeRegisters(inCall(), offsetOf, saved, R);
  t.equal(u64(b, 'ip'), R, 'to R: the result is seen as its syscall\'s, no other syscall runs');
  t.equal(b.readBigInt64LE(offsetOf('orig_ax')), -1n);
});

t.test('the journal of a redirected injection is kept and says so', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vmictl-redirect-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const entry: JournalEntry = {
    version: 1, createdAt: new Date(0).toISOString(), writer: process.pid,
    target: { task: 'ffff888001234000', pid: 42, tgid: 42, comm: 'sh' }, returnAddress: R.toString(16), callSp: '7ffd0000e000', vcpu: '01',
    registers: { rip: (R - 2n).toString(16), rsp: '7ffd0000f008' }, restore: ['rip', 'rsp'], scratch: { address: '7f0000000000', length: 65536 },
  };
  const j = Journal.create(entry, join(dir, 'j'));
  j.update({ redirectedAt: '2026-12-03T15:00:00.000Z' });
  t.same(listJournals(join(dir, 'j')), [j.path]);
  t.equal(readJournal(j.path).redirectedAt, '2026-12-03T15:00:00.000Z');
  t.same(readJournal(j.path).scratch, { address: '7f0000000000', length: 65536 }, 'with the mapping left in the process');
});
