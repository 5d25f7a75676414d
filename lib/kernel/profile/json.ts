/**
 * JSON in and out with integers beyond 2^53 kept exact.
 *
 * ISF files hold kernel addresses such as 18446744071606536512 as plain JSON numbers, which
 * JSON.parse would round. Before parsing, every integer literal of 16 or more digits outside a
 * string is turned into a string of its digits; the validator then reads number-or-digit-string
 * wherever an integer is expected. On the way out, bigints are written as plain integers.
 */

export function parseJsonExact(text: string): unknown {
  // Fast path: a regular expression quotes the long integers that follow `:`, `,` or `[`. It
  // does not know about strings, but it cannot corrupt one silently: a quote it puts inside a
  // string ends that string right before a digit, which JSON.parse rejects. Then the exact,
  // string-aware scanner does the work.
  const fast = text.replace(/([:,[]\s*)(-?\d{16,})(?=\s*[,}\]])/g, '$1"$2"');
  try {
    return JSON.parse(fast);
  } catch {
    return JSON.parse(quoteBigIntegers(text));
  }
}

function isNumberChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45;
}

/**
 * Wraps in quotes every integer literal of 16 or more digits that is outside a string. String
 * literals are skipped with indexOf (most of an ISF file's bytes are in them); numbers are taken
 * whole, so the digits of a fraction or an exponent are never mistaken for an integer.
 */
export function quoteBigIntegers(text: string): string {
  const parts: string[] = [];
  let last = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // a string: find the closing quote that is not escaped
      let q = i + 1;
      for (;;) {
        q = text.indexOf('"', q);
        if (q < 0) return text; // unterminated: let JSON.parse report it
        let back = 0;
        while (text.charCodeAt(q - 1 - back) === 0x5c) back++;
        if (back % 2 === 0) break;
        q++;
      }
      i = q + 1;
    } else if ((c >= 0x30 && c <= 0x39) || c === 0x2d) {
      let j = i + 1;
      let integer = true;
      while (j < n && isNumberChar(text.charCodeAt(j))) {
        const d = text.charCodeAt(j);
        if (d < 0x30 || d > 0x39) integer = false;
        j++;
      }
      const digits = j - i - (c === 0x2d ? 1 : 0);
      if (integer && digits >= 16) {
        parts.push(text.slice(last, i), '"', text.slice(i, j), '"');
        last = j;
      }
      i = j;
    } else {
      i++;
    }
  }
  if (last === 0) return text;
  parts.push(text.slice(last));
  return parts.join('');
}

/** Integer from a JSON value that may be a number or (for big ones) a string of digits. */
export function jsonInteger(v: unknown): bigint | undefined {
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : undefined;
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v);
  if (typeof v === 'bigint') return v;
  return undefined;
}

/** JSON text for a value that may contain bigints (written as integer literals). */
export function stringifyExact(value: unknown): string {
  if (!containsBigInt(value)) return JSON.stringify(value);
  return stringifyValue(value);
}

function containsBigInt(v: unknown): boolean {
  if (typeof v === 'bigint') return true;
  if (v === null || typeof v !== 'object') return false;
  if (Array.isArray(v)) return v.some(containsBigInt);
  for (const k in v) if (containsBigInt((v as Record<string, unknown>)[k])) return true;
  return false;
}

function stringifyValue(v: unknown): string {
  if (typeof v === 'bigint') return v.toString();
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return '[' + v.map((x) => (x === undefined ? 'null' : stringifyValue(x))).join(',') + ']';
  const parts: string[] = [];
  for (const k of Object.keys(v)) {
    const x = (v as Record<string, unknown>)[k];
    if (x === undefined || typeof x === 'function') continue;
    parts.push(JSON.stringify(k) + ':' + stringifyValue(x));
  }
  return '{' + parts.join(',') + '}';
}
