/** Killing a vmictl (a stand-in: test/inject/helpers/hold-injection.ts) in the middle of an injection. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { VmEnv } from './vm';

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

