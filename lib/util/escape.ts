/**
 * Guest-controlled strings must never reach a terminal raw: an attacker in the guest could name a
 * process `\x1b]0;...\x07` and rewrite the user's terminal. Control characters (C0, DEL, C1) and
 * backslashes become visible escapes; everything else is kept.
 */
export function escapeForTerminal(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x09) out += '\\t';
    else if (c === 0x0d) out += '\\r';
    else if (c < 0x20 || c === 0x7f || (c >= 0x80 && c < 0xa0)) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else if (c === 0x2028 || c === 0x2029 || (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069)) {
      // line separators and bidi overrides can disguise what a line says
      out += `\\u${c.toString(16).padStart(4, '0')}`;
    } else out += ch;
  }
  return out;
}

/** Decodes guest bytes as UTF-8 without throwing; invalid sequences become U+FFFD. */
export function guestString(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}
