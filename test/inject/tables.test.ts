/**
 * The pure parts of syscall injection: the x86-64 syscall number table, errno names and raw result
 * decoding, and the structures injected syscalls fill in (struct new_utsname, linux_dirent64),
 * including hostile ones.
 */
import t from 'tap';
import { ValidationError } from '../../lib/errors';
import { errnoMessage, errnoName, errnoNumber, errnoOf, toSigned64 } from '../../lib/inject/errno';
import { SyscallError } from '../../lib/inject/errors';
import { cString, parseDirents64, parseUtsname, UTSNAME_SIZE } from '../../lib/inject/structs';
import { resolveSyscall, syscallName, syscallNumber, SYSCALLS_X86_64 } from '../../lib/inject/syscalls';

t.test('syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl)', async (t) => {
  // a sample spread over the table, written down independently of it
  const known: Record<string, number> = {
    read: 0, write: 1, close: 3, mmap: 9, munmap: 11, ioctl: 16, getpid: 39, clone: 56, fork: 57, execve: 59, exit: 60,
    wait4: 61, kill: 62, uname: 63, getdents64: 217, exit_group: 231, openat: 257, setns: 308, getrandom: 318,
    pidfd_open: 434, clone3: 435, openat2: 437,
  };
  for (const [name, nr] of Object.entries(known)) t.equal(SYSCALLS_X86_64[name], nr, `${name} is ${nr}`);
  const numbers = Object.values(SYSCALLS_X86_64);
  t.equal(new Set(numbers).size, numbers.length, 'no number appears twice');
  t.ok(numbers.every((n) => Number.isInteger(n) && n >= 0 && n < 512), 'only the 64-bit ABI (no x32 numbers)');
  for (let n = 0; n <= 334; n++) t.ok(syscallName(n), `every number of the contiguous range has a name (${n})`);
  t.equal(syscallName(39), 'getpid');
  t.equal(syscallName(400), undefined, 'a hole in the table');
  t.equal(syscallNumber('sys_getpid'), 39, 'sys_ prefix');
  t.equal(syscallNumber('__x64_sys_openat'), 257, '__x64_sys_ prefix');
  t.equal(syscallNumber('toString'), undefined, 'no prototype names');
  t.equal(resolveSyscall('getpid'), 39);
  t.equal(resolveSyscall('39'), 39);
  t.equal(resolveSyscall('0x27'), 39);
  t.equal(resolveSyscall(257), 257);
  t.throws(() => resolveSyscall('nosuchcall'), RangeError);
  t.throws(() => resolveSyscall(-1), RangeError);
  t.throws(() => resolveSyscall(1.5), RangeError);
  t.throws(() => resolveSyscall('99999'), RangeError);
});

t.test('errno mapping', async (t) => {
  t.equal(errnoName(2), 'ENOENT');
  t.equal(errnoName(13), 'EACCES');
  t.equal(errnoName(38), 'ENOSYS');
  t.equal(errnoName(110), 'ETIMEDOUT');
  t.equal(errnoName(512), 'ERESTARTSYS', 'kernel-internal restart codes are named too');
  t.equal(errnoName(41), 'E41', 'a number without a name');
  t.equal(errnoMessage(2), 'No such file or directory');
  t.equal(errnoNumber('enoent'), 2);
  t.equal(errnoNumber('EWOULDBLOCK'), 11, 'aliases');
  t.equal(errnoNumber('ENOTSUP'), 95);
  t.equal(errnoNumber('ENOPE'), undefined);

  t.equal(toSigned64(0xfffffffffffffffen), -2n, 'rax as the kernel leaves it');
  t.equal(errnoOf(0xfffffffffffffffen), 2, '-2 is ENOENT');
  t.equal(errnoOf(-4095n), 4095, 'the lowest error value');
  t.equal(errnoOf(-4096n), 0, 'below -4095 is not an error (an address, e.g. from mmap)');
  t.equal(errnoOf(BigInt.asUintN(64, -4096n)), 0);
  t.equal(errnoOf(0n), 0);
  t.equal(errnoOf(3n), 0);
  t.equal(errnoOf(0x7fffdeadb000n), 0, 'a user address');

  const e = new SyscallError('openat', 2, '"/x"');
  t.equal(e.code, 'ESYSCALL');
  t.equal(e.errnoName, 'ENOENT');
  t.equal(e.errno, 2);
  t.equal(e.name, 'SyscallError');
  t.match(e.message, /openat "\/x": ENOENT \(No such file or directory\)/);
});

function utsname(fields: string[]): Buffer {
  const b = Buffer.alloc(UTSNAME_SIZE);
  fields.forEach((f, i) => b.write(f, i * 65, 'utf8'));
  return b;
}

t.test('struct new_utsname', async (t) => {
  t.equal(UTSNAME_SIZE, 390, '6 x 65 bytes');
  const u = parseUtsname(utsname(['Linux', 'web', '6.1.0', '#1 SMP', 'x86_64', '(none)']));
  t.same(u, { sysname: 'Linux', nodename: 'web', release: '6.1.0', version: '#1 SMP', machine: 'x86_64', domainname: '(none)' });

  // a field filling all 65 bytes (no NUL) stops at its own end, not in the next field
  const full = utsname(['Linux', 'x'.repeat(65), 'r']);
  t.equal(parseUtsname(full).nodename, 'x'.repeat(65));
  t.equal(parseUtsname(full).release, 'r');

  // bytes after the NUL are garbage, not part of the name
  const junk = utsname(['Linux', 'host']);
  junk.write('\0trailing', 65 + 4, 'latin1');
  t.equal(parseUtsname(junk).nodename, 'host');

  // control characters come through as they are (escaping is the renderer's job)
  t.equal(parseUtsname(utsname(['Linux', 'a\x1b]0;pwned\x07'])).nodename, 'a\x1b]0;pwned\x07');
  t.throws(() => parseUtsname(Buffer.alloc(389)), ValidationError, 'short buffer');
});

function dirent(ino: bigint, off: bigint, type: number, name: string, pad = 0): Buffer {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const reclen = (19 + nameBytes.length + pad + 7) & ~7;
  const b = Buffer.alloc(reclen);
  b.writeBigUInt64LE(ino, 0);
  b.writeBigInt64LE(off, 8);
  b.writeUInt16LE(reclen, 16);
  b.writeUInt8(type, 18);
  nameBytes.copy(b, 19);
  return b;
}

t.test('linux_dirent64', async (t) => {
  const buf = Buffer.concat([dirent(2n, 1n, 4, '.'), dirent(1n, 2n, 4, '..'), dirent(12n, 3n, 8, 'workload.sh'), dirent(13n, 0x7fffffffffffffffn, 10, 'lnk')]);
  const list = parseDirents64(buf);
  t.same(list.map((e) => e.name), ['.', '..', 'workload.sh', 'lnk']);
  t.same(list.map((e) => e.typeName), ['dir', 'dir', 'file', 'symlink']);
  t.equal(list[2].ino, 12n);
  t.equal(list[3].off, 0x7fffffffffffffffn);
  t.same(parseDirents64(Buffer.alloc(100), 0), [], 'getdents64 returned 0: end of directory');

  // only the bytes getdents64 said it wrote count
  const partial = Buffer.concat([dirent(5n, 1n, 8, 'a'), Buffer.alloc(64, 0xff)]);
  t.same(parseDirents64(partial, 24).map((e) => e.name), ['a']);

  // hostile records
  const zero = dirent(5n, 1n, 8, 'a');
  zero.writeUInt16LE(0, 16);
  t.throws(() => parseDirents64(zero), ValidationError, 'd_reclen 0 would loop forever');
  const long = dirent(5n, 1n, 8, 'a');
  long.writeUInt16LE(4096, 16);
  t.throws(() => parseDirents64(long), ValidationError, 'd_reclen past the end');
  t.throws(() => parseDirents64(Buffer.alloc(10)), ValidationError, 'a truncated header');
  t.throws(() => parseDirents64(Buffer.alloc(10), 11), ValidationError, 'a length larger than the buffer');
  const noNul = dirent(5n, 1n, 8, 'abcde');
  noNul.fill(0x41, 19);
  t.equal(parseDirents64(noNul)[0].name, 'A'.repeat(noNul.length - 19), 'a name without NUL ends with its record');
  t.equal(parseDirents64(dirent(1n, 1n, 99, 'x'))[0].typeName, 'unknown', 'an unknown d_type');
});

t.test('C strings for path arguments', async (t) => {
  t.same(cString('/etc/hostname'), Buffer.from('/etc/hostname\0'));
  t.same(cString('é'), Buffer.from([0xc3, 0xa9, 0]), 'UTF-8');
  t.throws(() => cString('a\0b'), RangeError, 'an embedded NUL would cut the path');
  t.throws(() => cString('x'.repeat(4096)), RangeError, 'longer than PATH_MAX with its NUL');
  t.equal(cString('x'.repeat(4095)).length, 4096);
});
