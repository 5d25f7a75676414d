/**
 * The one way vmictl prints JSON. Much of what it prints is guest data (hostnames, command lines,
 * file names, uname fields), so beyond JSON.stringify's own escapes this writes as \u escapes the
 * characters JSON.stringify leaves raw but a terminal would act on or that disguise text: DEL and
 * the C1 controls (U+009B is a CSI), line and paragraph separators, bidi embeddings, overrides and
 * isolates. `--json` piped to a terminal is then as safe as text, and parses to the same values.
 *
 * JSON shapes are an interface (docs/schemas/): fields may be added, never renamed or removed.
 */

// eslint-disable-next-line no-control-regex
const JSON_UNSAFE = /[\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** JSON.stringify with bigints as strings (keys ending in "time" in decimal, others, addresses, as 0x hex) and terminal-safe escapes. */
export function jsonText(value: unknown, indent?: number): string {
  const text = JSON.stringify(
    value,
    (key, v: unknown) => {
      if (typeof v !== 'bigint') return v;
      return /time$/i.test(key) ? v.toString(10) : (v < 0n ? '-0x' + (-v).toString(16) : '0x' + v.toString(16));
    },
    indent,
  );
  return (text ?? 'null').replace(JSON_UNSAFE, (ch) => '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0'));
}

/** Writes `value` as one JSON document and a newline (stdout unless said otherwise). */
export function printJson(value: unknown, opts: { indent?: number; stream?: NodeJS.WritableStream } = {}): void {
  (opts.stream ?? process.stdout).write(`${jsonText(value, opts.indent)}\n`);
}
