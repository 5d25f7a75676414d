/**
 * The injection journal on the host: a private directory, files created 0600 and exclusively,
 * updated atomically, validated when read back, listed oldest first; and the CLI's argument syntax
 * for raw syscalls.
 */
import t from 'tap';
import { chmodSync, chownSync, closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VmiError } from '../../lib/errors';
import { ensureJournalDirectory, Journal, publishFileExclusive, journalDirectory, listJournals, readJournal, UntrustedJournalError, type JournalEntry } from '../../lib/inject/journal';
import { writeFully } from '../../lib/util/host-file';
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
  t.throws(() => ensureJournalDirectory(open), UntrustedJournalError, 'a directory others can read is refused');

  const link = join(root, 'link');
  symlinkSync(dir, link);
  t.throws(() => ensureJournalDirectory(link), UntrustedJournalError, 'a symlink is refused');
  const file = join(root, 'file');
  writeFileSync(file, '');
  t.throws(() => ensureJournalDirectory(file), UntrustedJournalError, 'a file is refused');
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
  writeFileSync(bad, JSON.stringify({ ...entry(), children: [{ pid: 77, task: 'ffff888001234000' }] }));
  t.same(readJournal(bad).children, [{ pid: 77, task: 'ffff888001234000' }], 'a journal names the forked children being driven');
  for (const children of [[{ pid: 0, task: 'ffff888001234000' }], [{ pid: 77, task: 'zz' }], [{ pid: 77 }], 'ffff', Array.from({ length: 9 }, (_, i) => ({ pid: i + 1, task: 'ffff888001234000' }))]) {
    writeFileSync(bad, JSON.stringify({ ...entry(), children }));
    t.throws(() => readJournal(bad), VmiError, `children ${JSON.stringify(children).slice(0, 60)} are refused`);
  }
});

t.test('every read checks the directory and the file', async (t) => {
  // a directory another local user made first in /tmp, filled with a journal of their choosing
  const planted = (name: string) => {
    const d = join(root, name);
    mkdirSync(d, { mode: 0o700 });
    const j = Journal.create(entry(), d);
    return { d, path: j.path };
  };
  const uid = process.getuid!();
  const other = uid === 0 ? 4242 : undefined;

  const open = planted('open-dir');
  chmodSync(open.d, 0o733);
  t.throws(() => listJournals(open.d), UntrustedJournalError, 'list: a directory others can write is refused');
  t.throws(() => readJournal(open.path), UntrustedJournalError, 'read: a directory others can write is refused');
  t.throws(() => Journal.open(open.path), UntrustedJournalError, 'open: likewise');

  const real = planted('real-dir');
  const link = join(root, 'link-dir');
  symlinkSync(real.d, link);
  t.throws(() => listJournals(link), UntrustedJournalError, 'list: a symlinked directory is refused');
  t.throws(() => readJournal(join(link, real.path.split('/').pop()!)), UntrustedJournalError, 'read: through a symlinked directory is refused');
  t.same(listJournals(real.d), [real.path], 'the private directory itself is fine');

  const fileLink = join(real.d, 'inject-7-7-7.json');
  symlinkSync(real.path, fileLink);
  t.throws(() => readJournal(fileLink), UntrustedJournalError, 'a journal that is a symlink is refused (O_NOFOLLOW)');
  rmSync(fileLink);

  const writable = join(real.d, 'inject-8-8-8.json');
  writeFileSync(writable, JSON.stringify(entry()), { mode: 0o600 });
  chmodSync(writable, 0o622);
  t.throws(() => readJournal(writable), UntrustedJournalError, 'a journal others can write is refused');
  chmodSync(writable, 0o600);
  t.same(readJournal(writable), entry(), 'the same file, 0600, is read');

  const fifo = join(real.d, 'inject-9-9-9.json');
  mkdirSync(fifo);
  t.throws(() => readJournal(fifo), UntrustedJournalError, 'a journal that is not a regular file is refused');
  rmSync(fifo, { recursive: true });

  const huge = join(real.d, 'inject-10-10-10.json');
  writeFileSync(huge, Buffer.alloc((1 << 20) + 1, 0x20), { mode: 0o600 });
  t.throws(() => readJournal(huge), VmiError, 'a journal of more than 1 MiB is not read');
  rmSync(huge);

  if (other === undefined) {
    t.comment('ownership checks skipped: they need root to chown (this run is not root)');
  } else {
    const theirs = planted('their-dir');
    chownSync(theirs.d, other, other);
    t.throws(() => listJournals(theirs.d), UntrustedJournalError, "list: another user's directory is refused");
    t.throws(() => readJournal(theirs.path), UntrustedJournalError, "read: in another user's directory is refused");
    t.throws(() => ensureJournalDirectory(theirs.d), UntrustedJournalError, "create: another user's directory is refused");
    const theirFile = planted('their-file');
    chownSync(theirFile.path, other, other);
    t.throws(() => readJournal(theirFile.path), UntrustedJournalError, "a journal file of another user is refused");
  }
});

t.test('writes are complete even when write() takes less', async (t) => {
  const file = join(root, 'short');
  const fd = openSync(file, 'w', 0o600);
  t.teardown(() => closeSync(fd));
  const taken: number[] = [];
  const data = Buffer.from('0123456789');
  writeFully(fd, data, (_fd, _b, _off, len) => { const n = Math.min(3, len); taken.push(n); return n; });
  t.same(taken, [3, 3, 3, 1], 'looped until every byte was taken');
  t.throws(() => writeFully(fd, data, () => 0), /write\(\) took 0/, 'a write that takes nothing is an error, not an endless loop');
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

t.test('a journal appears whole or not at all: another vmictl listing the directory never reads one half written', (t) => {
  const dir = ensureJournalDirectory(join(root, 'publish'));
  const path = join(dir, 'inject-1-2-3.json');
  const text = JSON.stringify({ version: 1, writer: 1, padding: 'x'.repeat(100_000) });
  publishFileExclusive(path, text);
  t.equal(statSync(path).size, text.length, 'the file holds every byte');
  t.equal(statSync(path).nlink, 1, 'one name for it');
  t.same(readdirSync(dir), ['inject-1-2-3.json'], 'no temporary name is left');
  t.throws(() => publishFileExclusive(path, '{}'), { code: 'EEXIST' }, 'an existing journal is never replaced');
  t.same(readdirSync(dir), ['inject-1-2-3.json'], 'nor is a temporary name left by the refusal');
  t.end();
});
