/**
 * The one progress line of the CLI, on stderr: `label [####....] 42% 12.0/28.5 MiB 3.1 MiB/s ETA 0:05`
 * for bytes, `label 2/5 steps: reading BTF` for steps. It is drawn only on a terminal, never with
 * --json or -q/--quiet (a script reads those runs), redrawn in place at most every REDRAW_MS, cut to
 * the terminal's width (a line that wraps cannot be redrawn with '\r'), and wiped by finish(), which
 * callers run in a `finally` so an error message starts on a clean line.
 */
import { escapeForTerminal } from '../../lib/util/escape';
import { displayWidth, truncateToWidth } from './width';

/** What the line is written to: process.stderr, or a fake one in tests. */
export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): unknown;
}

/** Timers, replaceable so that throttling is tested without waiting. */
export interface ProgressClock {
  now(): number;
  /** Runs fn once after ms; the returned function cancels it. */
  later(fn: () => void, ms: number): () => void;
}

export interface ProgressOptions {
  label: string;
  /** 'bytes' are shown in KiB/MiB/GiB with a rate and an ETA; steps are counted. */
  unit: 'bytes' | 'steps';
  /** The command's flags: --json, -q/--quiet and --no-progress each turn the line off. */
  flags?: { json?: boolean; quiet?: boolean; progress?: boolean };
  /** Off for another reason (the data itself goes to this terminal). */
  hidden?: boolean;
  stream?: ProgressStream;
  clock?: ProgressClock;
}

export interface Progress {
  /** `done` of `total` (unknown: undefined), in the middle of `step` when there is one. */
  update(done: number, total?: number, step?: string): void;
  /** Wipes the line; nothing is written afterwards. Safe to call more than once. */
  finish(): void;
}

/** 10 redraws a second at most: a terminal redrawn faster only flickers, and writes cost time. */
export const REDRAW_MS = 100;
const BAR_MIN = 10;
const BAR_MAX = 40;
/** Assumed when the stream does not say. */
const DEFAULT_COLUMNS = 80;
/** An ETA this early is noise. */
const ETA_AFTER_MS = 1000;
const CLEAR_LINE = '\r\x1b[K';

const realClock: ProgressClock = {
  now: () => performance.now(),
  later(fn, ms) {
    const timer = setTimeout(fn, ms);
    // a pending redraw never keeps the process alive
    timer.unref();
    return () => clearTimeout(timer);
  },
};

const NOTHING: Progress = { update: () => undefined, finish: () => undefined };

export function progressBar(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const f = opts.flags ?? {};
  if (stream.isTTY !== true || opts.hidden || f.json || f.quiet || f.progress === false) return NOTHING;
  const clock = opts.clock ?? realClock;
  const label = escapeForTerminal(opts.label);
  let started: number | undefined;
  let lastDraw = -Infinity;
  let drawn = false;
  let finished = false;
  let cancelPending: (() => void) | undefined;
  let state: { done: number; total?: number; step?: string } = { done: 0 };

  const draw = (): void => {
    cancelPending = undefined;
    if (finished) return;
    const now = clock.now();
    lastDraw = now;
    drawn = true;
    stream.write('\r' + progressLine(label, opts.unit, state, now - started!, stream.columns) + '\x1b[K');
  };

  return {
    update(done, total, step) {
      if (finished) return;
      const now = clock.now();
      started ??= now;
      state = { done, total, step };
      if (now - lastDraw >= REDRAW_MS) {
        cancelPending?.();
        draw();
      } else if (cancelPending === undefined) {
        // the last state before a long quiet stretch (a slow step) is shown too, a little later
        cancelPending = clock.later(draw, REDRAW_MS - (now - lastDraw));
      }
    },
    finish() {
      if (finished) return;
      finished = true;
      cancelPending?.();
      cancelPending = undefined;
      if (drawn) stream.write(CLEAR_LINE);
    },
  };
}

/** The line for one state, at most `columns - 1` wide (the last column would wrap on some terminals). */
export function progressLine(label: string, unit: ProgressOptions['unit'], s: { done: number; total?: number; step?: string }, elapsedMs: number, columns?: number): string {
  const room = Math.max(1, (columns && columns > 0 ? columns : DEFAULT_COLUMNS) - 1);
  const known = s.total !== undefined && s.total > 0;
  const fraction = known ? Math.min(1, Math.max(0, s.done / s.total!)) : undefined;
  const parts: string[] = [];
  if (fraction !== undefined) parts.push(`${Math.floor(fraction * 100)}%`);
  if (unit === 'bytes') {
    parts.push(bytes(s.done, known ? s.total : undefined));
    const rate = elapsedMs > 0 ? (s.done / elapsedMs) * 1000 : 0;
    if (rate > 0) parts.push(`${bytes(rate)}/s`);
    if (known && rate > 0 && elapsedMs >= ETA_AFTER_MS && s.done < s.total!) parts.push(`ETA ${duration((s.total! - s.done) / rate)}`);
  } else parts.push(known ? `${s.done}/${s.total} ${unit}` : `${s.done} ${unit}`);
  let tail = parts.join(' ');
  if (s.step) tail += `: ${escapeForTerminal(s.step)}`;

  const barWidth = Math.min(BAR_MAX, room - displayWidth(label) - displayWidth(tail) - 4);
  const line = fraction !== undefined && barWidth >= BAR_MIN
    ? `${label} [${'#'.repeat(Math.round(fraction * barWidth)).padEnd(barWidth, '.')}] ${tail}`
    : `${label} ${tail}`;
  return truncateToWidth(line, room);
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** `n` in the unit that suits `scale`, so that done and total share one: [`12.0`, `MiB`]. */
function inUnit(n: number, scale: number): [string, string] {
  let i = 0;
  while (i < BYTE_UNITS.length - 1 && scale >= 1024 ** (i + 1)) i++;
  return [i === 0 ? String(Math.round(n)) : (n / 1024 ** i).toFixed(1), BYTE_UNITS[i]!];
}

/** `12.0/28.5 MiB`, or `12.0 MiB` with no total. */
function bytes(done: number, total?: number): string {
  if (total === undefined) return inUnit(done, done).join(' ');
  const [t, unit] = inUnit(total, total);
  return `${inUnit(done, total)[0]}/${t} ${unit}`;
}

/** Seconds as m:ss, or h:mm:ss. */
function duration(seconds: number): string {
  const s = Math.ceil(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}
