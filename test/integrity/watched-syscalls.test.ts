// The syscalls protectFor watches by default must include every syscall vmictl injects: one left
// out is a path a rootkit could hook without the guard seeing it.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { INJECTED_SYSCALLS } from '../../lib/integrity';
import { SYSCALLS_X86_64 } from '../../lib/inject/syscalls';

const ROOT = resolve(__dirname, '../..');
const CALL = /\b(?:syscall|call|cleanupCall|syscallWith|startCall|check)\(\s*'([a-z0-9_]+)'|SYSCALLS_X86_64(?:\.([a-z0-9_]+)|\[\s*'([a-z0-9_]+)'\s*\])/g;

t.test('every syscall named by the injection engine and the operations is watched', async (t) => {
  const used = new Map<string, string>();
  for (const dir of ['lib/inject', 'lib/ops']) {
    for (const f of readdirSync(join(ROOT, dir)).filter((n) => n.endsWith('.ts'))) {
      const text = readFileSync(join(ROOT, dir, f), 'utf8');
      for (const m of text.matchAll(CALL)) {
        const name = m[1] ?? m[2] ?? m[3];
        if (SYSCALLS_X86_64[name] !== undefined && !used.has(name)) used.set(name, `${dir}/${f}`);
      }
    }
  }
  t.ok(used.size >= 20, `found ${used.size} syscalls in the sources (the scan works)`);
  for (const want of ['openat', 'pidfd_send_signal', 'execve', 'setns']) t.ok(used.has(want), `the scan sees ${want}`);
  const missing = [...used].filter(([n]) => !INJECTED_SYSCALLS.includes(n)).map(([n, f]) => `${n} (${f})`);
  t.same(missing, [], 'none is missing from INJECTED_SYSCALLS');
});
