/**
 * InjectionSession.listDirectory() against a kernel whose getdents64 returns only . and .. forever
 * (a fake `this` with the session methods it calls): it ends with ETOOBIG after a bounded number
 * of calls, and the directory fd is closed.
 */
import t from 'tap';
import { InjectionSession } from '../../lib/inject/session';
import type { Dirent64 } from '../../lib/inject/structs';

t.test('a directory of . and .. forever ends with an error', async (t) => {
  let calls = 0;
  const closed: number[] = [];
  const fake = {
    closed: false,
    openat: async () => 7,
    getdents64: async (): Promise<Dirent64[]> => {
      if (++calls > 10_000) throw new Error('unbounded: more than 10 000 getdents64 calls');
      return Array.from({ length: 1000 }, (_, i) => ({ ino: 1n, off: BigInt(i), type: 4, name: i % 2 ? '..' : '.' }) as unknown as Dirent64);
    },
    closeFd: async (fd: number) => { closed.push(fd); },
  };
  await t.rejects(InjectionSession.prototype.listDirectory.call(fake as unknown as InjectionSession, '/loop', 5000), { code: 'ETOOBIG' });
  t.ok(calls <= 6, `after ${calls} calls`);
  t.same(closed, [7], 'the directory fd is closed');
});
