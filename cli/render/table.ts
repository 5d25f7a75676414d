/**
 * Aligned text tables, the way `docker ps` prints them: a header row, columns separated by three
 * spaces, no trailing blanks. Every cell goes through escapeForTerminal here, so callers pass raw
 * (guest) strings. On a terminal, long cells are cut with '…' (to a column's maxWidth, and the last
 * column to what is left of the terminal's width); into a pipe or file every cell is kept whole.
 */
import { escapeForTerminal } from '../../lib/util/escape';
import { displayWidth, truncateToWidth } from './width';

export interface Column {
  header: string;
  align?: 'left' | 'right';
  /** cells wider than this are cut when truncating */
  maxWidth?: number;
}

export interface TableOptions {
  /** cut long cells with '…'; default: whether stdout is a terminal */
  truncate?: boolean;
  /** the terminal's width, for the last column; default: process.stdout.columns when it is a terminal */
  width?: number;
}

const GAP = '   ';
/** The narrowest a column is cut to. */
const MIN_CUT = 4;

function pad(s: string, width: number, align: 'left' | 'right'): string {
  const fill = ' '.repeat(Math.max(0, width - displayWidth(s)));
  return align === 'right' ? fill + s : s + fill;
}

/** Renders rows (raw strings, one per column) under a header; ends with a newline. */
export function renderTable(columns: Column[], rows: string[][], opts: TableOptions = {}): string {
  const truncate = opts.truncate ?? process.stdout.isTTY === true;
  const termWidth = opts.width ?? (process.stdout.isTTY ? process.stdout.columns : undefined);
  const n = columns.length;
  let cells = rows.map((r) => columns.map((_, i) => escapeForTerminal(String(r[i] ?? ''))));
  const headers = columns.map((c) => escapeForTerminal(c.header));

  if (truncate) {
    cells = cells.map((r) =>
      r.map((cell, i) => {
        const max = columns[i]!.maxWidth;
        return max === undefined ? cell : truncateToWidth(cell, Math.max(max, MIN_CUT));
      }),
    );
  }
  const widths = columns.map((_, i) => Math.max(displayWidth(headers[i]!), ...cells.map((r) => displayWidth(r[i]!))));

  if (truncate && termWidth !== undefined && termWidth > 0 && n > 0) {
    const before = widths.slice(0, n - 1).reduce((a, w) => a + w + GAP.length, 0);
    const room = Math.max(termWidth - before, displayWidth(headers[n - 1]!), MIN_CUT);
    if (widths[n - 1]! > room) {
      cells = cells.map((r) => r.map((cell, i) => (i === n - 1 ? truncateToWidth(cell, room) : cell)));
      widths[n - 1] = room;
    }
  }

  const line = (r: string[]): string =>
    r
      .map((cell, i) => {
        const align = columns[i]!.align ?? 'left';
        // the last column is not padded on the left-aligned side: no trailing blanks
        if (i === n - 1 && align === 'left') return cell;
        return pad(cell, widths[i]!, align);
      })
      .join(GAP)
      .replace(/ +$/, '');
  return [line(headers), ...cells.map(line)].join('\n') + '\n';
}
