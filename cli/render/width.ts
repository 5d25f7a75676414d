/**
 * How many terminal columns a string takes. The table is string-width's (Unicode East Asian Width,
 * emoji presentation, combining and default-ignorable code points, counted per grapheme cluster so
 * that a ZWJ emoji sequence is one glyph): a hand-kept list of ranges falls behind every Unicode
 * release. string-width is an ES module and the CLI is CommonJS, so it is imported once, before any
 * command runs (loadDisplayWidth, from main), and every renderer stays synchronous.
 *
 * Callers measure the text they print, that is guest strings after escapeForTerminal: what the
 * escaping turns into visible `\xNN` is measured as those characters.
 */

type StringWidth = (text: string, options?: { countAnsiEscapeCodes?: boolean }) => number;

let stringWidth: StringWidth | undefined;

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** Loads the width table; idempotent. main() awaits it before parsing the command line. */
export async function loadDisplayWidth(): Promise<void> {
  stringWidth ??= (await import('string-width')).default;
}

/** Columns `text` takes on a terminal. */
export function displayWidth(text: string): number {
  if (stringWidth === undefined) throw new Error('displayWidth called before loadDisplayWidth()');
  // escaped text holds no escape sequences; none may be discounted on the guest's word
  return stringWidth(text, { countAnsiEscapeCodes: true });
}

/** `text` cut to at most `max` columns, ending in '…' when anything was cut; never inside a grapheme. */
export function truncateToWidth(text: string, max: number): string {
  if (displayWidth(text) <= max) return text;
  if (max <= 0) return '';
  let out = '';
  let width = 0;
  for (const { segment } of graphemes.segment(text)) {
    const w = displayWidth(segment);
    if (width + w > max - 1) break;
    out += segment;
    width += w;
  }
  return out + '…';
}
