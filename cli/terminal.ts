/**
 * The host's terminal for `vmictl exec -it`: raw while the command runs (every key goes to the
 * command's terminal in the guest, Ctrl-C included), and put back on every way out: the work
 * ending either way, a stop signal (SIGINT, SIGTERM, SIGHUP: restored at once, as a second one
 * kills vmictl), and the process exiting.
 */
import type { EventEmitter } from 'node:events';
import type { WindowSize } from '../lib/ops/pty';

export interface RawModeInput {
  isTTY?: boolean;
  setRawMode(mode: boolean): unknown;
}

const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Runs `work` with `input` in raw mode; `proc` is where the signals and 'exit' are heard (the process). */
export async function withRawMode<T>(input: RawModeInput, work: () => Promise<T>, proc: EventEmitter = process): Promise<T> {
  let raw = false;
  const restore = () => {
    if (!raw) return;
    raw = false;
    input.setRawMode(false);
  };
  // once: the signal's other handlers (withVm's abort, or the default) still decide what it does
  for (const sig of STOP_SIGNALS) proc.once(sig, restore);
  proc.once('exit', restore);
  try {
    input.setRawMode(true);
    raw = true;
    return await work();
  } finally {
    restore();
    for (const sig of STOP_SIGNALS) proc.off(sig, restore);
    proc.off('exit', restore);
  }
}

interface SizedStream {
  isTTY?: boolean;
  getWindowSize?(): [number, number];
}

/** The host terminal's size (asked each time: a resize, SIGWINCH, shows at once), from the first stream that is a terminal; 24x80 else. */
export function hostWindowSize(streams: readonly SizedStream[]): WindowSize {
  for (const s of streams) {
    if (!s.isTTY || !s.getWindowSize) continue;
    const [cols, rows] = s.getWindowSize();
    if (cols > 0 && rows > 0) return { rows, cols };
  }
  return { rows: 24, cols: 80 };
}
