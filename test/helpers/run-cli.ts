/**
 * Runs vmictl's `main` in this process, capturing what it writes: the real one, or one loaded
 * through `t.mockRequire` with the operations below the CLI replaced.
 */
import type { Command } from 'commander';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export type Main = (argv: string[]) => Promise<number>;

export async function captureMain(main: Main, args: readonly string[]): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  // write(chunk[, encoding][, callback]): the callback too, as a stream would (exec awaits it)
  const write = (sink: string[]) => ((chunk: string | Uint8Array, enc?: unknown, cb?: unknown) => {
    sink.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    const done = typeof enc === 'function' ? enc : cb;
    if (typeof done === 'function') process.nextTick(done as () => void);
    return true;
  }) as typeof process.stdout.write;
  const saved = [process.stdout.write, process.stderr.write];
  process.stdout.write = write(out);
  process.stderr.write = write(err);
  const savedExit = process.exitCode;
  // a status left by an earlier run in this process is not this run's
  process.exitCode = undefined;
  try {
    const code = await main(['node', 'vmictl', ...args]);
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    [process.stdout.write, process.stderr.write] = saved as [typeof process.stdout.write, typeof process.stderr.write];
    process.exitCode = savedExit;
  }
}

/** Every command of the program, subcommands included. */
export function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}
