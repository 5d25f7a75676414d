/**
 * The injection journal on the host: a private directory, files created 0600 and exclusively,
 * updated atomically, validated when read back, listed oldest first; and the CLI's argument syntax
 * for raw syscalls.
 */
import t from 'tap';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmiError } from '../../lib/errors';
import { ensureJournalDirectory, Journal, journalDirectory, listJournals, readJournal, type JournalEntry } from '../../lib/inject/journal';
import { parseSyscallArgument } from '../../cli/commands/syscall';

const root = mkdtempSync(join(tmpdir(), 'vmictl-journal-test-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

function entry(pid = 42): JournalEntry {
  return {
    version: 1,
    createdAt: new Date(0).toISOString(),
    writer: process.pid,
    qmp: 'unix:/run/vm/qmp.sock',
    target: { task: 'ffff888001234000', pid, tgid: pid, comm: 'sh' },
    returnAddress: '47cc80',
    callSp: '7ffd0000e000',
    vcpu: '01',
    registers: { rax: '0', rip: '47cc80', rsp: '7ffd0000f008', cr3: '1000' },
    restore: ['rax', 'rip', 'rsp'],
    stack: { address: '7ffd0000e000', data: '00ff' },
  };
}

t.test('directory', async (t) => {
  const saved = process.env.XDG_RUNTIME_DIR;
  t.teardown(() => {
    if (saved === undefined) delete process.env.XDG_RUNTIME_DIR;
    else process.env.XDG_RUNTIME_DIR = saved;
  });
  process.env.XDG_RUNTIME_DIR = '/run/user/1234';
  t.equal(journalDirectory(), '/run/user/1234/vmictl', 'under $XDG_RUNTIME_DIR');
  delete process.env.XDG_RUNTIME_DIR;
  t.equal(journalDirectory(), `/tmp/vmictl-${process.getuid!()}`, 'else /tmp/vmictl-<uid>');

  const dir = join(root, 'private');
  t.equal(ensureJournalDirectory(dir), dir);
  t.equal(statSync(dir).mode & 0o777, 0o700, 'created 0700');
  t.equal(ensureJournalDirectory(dir), dir, 'an existing private directory is fine');

  const open = join(root, 'open');
  mkdirSync(open);
  chmodSync(open, 0o755);
  t.throws(() => ensureJournalDirectory(open), VmiError, 'a directory others can read is refused');

  const link = join(root, 'link');
  symlinkSync(dir, link);
  t.throws(() => ensureJournalDirectory(link), VmiError, 'a symlink is refused');
  const file = join(root, 'file');
  writeFileSync(file, '');
  t.throws(() => ensureJournalDirectory(file), VmiError, 'a file is refused');
});

t.test('create, update, read, list, remove', async (t) => {
  const dir = join(root, 'j');
  const j = Journal.create(entry(), dir);
  t.equal(statSync(j.path).mode & 0o777, 0o600, 'the file is 0600');
  t.same(readJournal(j.path), entry(), 'reads back as written');
  j.update({ scratch: { address: '7f0000000000', length: 65536 } });
  t.same(readJournal(j.path).scratch, { address: '7f0000000000', length: 65536 }, 'update replaces the file');
  t.same(readdirSync(dir).filter((n) => n.endsWith('.tmp')), [], 'no temporary file left');
  await new Promise((r) => setTimeout(r, 5));
  const j2 = Journal.create(entry(43), dir);
  t.same(listJournals(dir), [j.path, j2.path], 'listed oldest first');
  j.remove();
  j.remove();
  t.same(listJournals(dir), [j2.path], 'removed (twice is fine)');
  t.same(listJournals(join(root, 'none')), [], 'no directory: no journals');

  const bad = join(dir, 'inject-1-1-1.json');
  writeFileSync(bad, JSON.stringify({ ...entry(), registers: { rax: 'zz' } }));
  t.throws(() => readJournal(bad), VmiError, 'a register value that is not hex is refused');
  writeFileSync(bad, '{');
  t.throws(() => readJournal(bad), VmiError, 'not JSON');
  writeFileSync(bad, JSON.stringify({ ...entry(), version: 2 }));
  t.throws(() => readJournal(bad), VmiError, 'another version');
  writeFileSync(bad, JSON.stringify({ ...entry(), gadget: '47b4f5' }));
  t.equal(readJournal(bad).gadget, '47b4f5', "a watchpoint-mode journal names its syscall; ret gadget");
  writeFileSync(bad, JSON.stringify({ ...entry(), gadget: '-1' }));
  t.throws(() => readJournal(bad), VmiError, 'a gadget that is not a hex address is refused');
});

t.test('CLI syscall arguments', async (t) => {
  t.equal(parseSyscallArgument('42'), 42n);
  t.equal(parseSyscallArgument('-100'), -100n);
  t.equal(parseSyscallArgument('0x10'), 16n);
  t.equal(parseSyscallArgument('AT_FDCWD'), -100n);
  t.equal(parseSyscallArgument('O_DIRECTORY'), 0o200000n);
  t.same(parseSyscallArgument('str:/etc/hostname'), { in: Buffer.from('/etc/hostname\0') });
  t.same(parseSyscallArgument('hex:00ff'), { in: Buffer.from([0, 255]) });
  t.same(parseSyscallArgument('buf:390'), { out: 390 });
  t.equal(parseSyscallArgument('18446744073709551615'), 0xffffffffffffffffn, 'the largest 64-bit value');
  t.throws(() => parseSyscallArgument('18446744073709551616'), VmiError, 'too large');
  t.throws(() => parseSyscallArgument('buf:-1'), VmiError);
  t.throws(() => parseSyscallArgument('buf:99999999999'), VmiError, 'an absurd buffer');
  t.throws(() => parseSyscallArgument('hex:0'), VmiError, 'odd hex');
  t.throws(() => parseSyscallArgument('hello'), VmiError, 'a bare word');
  t.throws(() => parseSyscallArgument('toString'), VmiError, 'not a prototype name');
});
