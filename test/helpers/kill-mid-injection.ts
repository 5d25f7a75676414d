/** Killing a vmictl (a stand-in: test/inject/helpers/hold-injection.ts) in the middle of an injection, and what the recovery tests check after. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Test } from 'tap';
import { Vm } from '../../lib/vm';
import { openInjection } from '../../lib/inject';
import { guestRun, type VmEnv } from './vm';

/**
 * Runs test/inject/helpers/hold-injection.ts (with the TypeScript loader this test runs under),
 * waits for its READY line (the target is hijacked), waits `afterMs`, and kills it with SIGKILL.
 */
export async function killMidInjection(env: VmEnv, dir: string, mode: string, afterMs: number, container = 'ticker'): Promise<string> {
  const loader = process.execArgv.filter((a) => a.includes('typescript'));
  const script = join(__dirname, '..', 'inject', 'helpers', 'hold-injection.ts');
  const child = spawn(process.execPath, [...loader, script, env.qmp, env.gdb, dir, mode, container], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const ready = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hold-injection did not get ready: ${err}`)), 120_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /READY (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`hold-injection exited (${code}): ${err}`)));
  });
  await new Promise((r) => setTimeout(r, afterMs));
  child.kill('SIGKILL');
  await exited;
  return ready;
}


/** ticker's count now, then 1.5 s later, read from inside the guest: its loop runs when they differ. */
export async function tickerCounts(env: VmEnv): Promise<[number, number]> {
  const counter = async (): Promise<number> => {
    for (let i = 0; ; i++) {
      const r = await guestRun(env, 'cat /proc/$(runc state ticker | sed -n \'s/.*"pid": *\\([0-9]*\\).*/\\1/p\')/root/tmp/counter', 30_000);
      if (r.output.trim() !== '' || i >= 5) return Number(r.output.trim() || NaN);
    }
  };
  const a = await counter();
  await new Promise((r) => setTimeout(r, 1500));
  return [a, await counter()];
}

/** Each container's process answers an injected uname() with its hostname (a new session after recovery). */
export async function answersAgain(t: Test, env: VmEnv, journal: string, containers: readonly string[]): Promise<void> {
  const vm = await Vm.connect({ qmp: env.qmp, gdb: env.gdb });
  try {
    for (const container of containers) {
      const s = await openInjection(vm, { container }, { journal, timeout: 20_000 });
      try {
        t.equal((await s.uname()).nodename, container, `${container} answers injected syscalls again`);
      } finally {
        await s.close();
      }
    }
  } finally {
    await vm.close();
  }
}
