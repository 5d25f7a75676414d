import { TerminatedError, VmiError } from '../../lib/errors';
import { escapeForTerminal } from '../../lib/util/escape';

/** Prints an error the way a user can act on it and returns the exit code to use. */
export function reportError(err: unknown): number {
  if (err instanceof VmiError) {
    process.stderr.write(`vmictl: ${escapeForTerminal(err.message)} [${err.code}]\n`);
    return err instanceof TerminatedError ? err.exitCode : 1;
  }
  const e = err as { code?: string; exitCode?: number; message?: string };
  if (typeof e?.code === 'string' && e.code.startsWith('commander.')) return e.exitCode ?? 2;
  process.stderr.write(`vmictl: internal error: ${escapeForTerminal(String((err as Error)?.stack ?? err))}\n`);
  return 70;
}
