/**
 * Rejections are created where the reply (or the timer, or the socket loss) is handled, so their
 * own stack shows only the socket's data handler. Like cdt-gdb-adapter, we capture the stack of
 * the call that sent the request and append it, so a failed `execute` points at the code that made it.
 */

/** Captures the caller's stack; `above` is the function whose frame (and those above it) to hide. */
export function captureCallSite(above: Function): Error {
  const site = new Error('call site');
  Error.captureStackTrace(site, above);
  return site;
}

/** Appends the captured call site to `err`'s stack (once) and returns `err`. */
export function withCallSite(err: unknown, site: Error): unknown {
  if (err instanceof Error && typeof err.stack === 'string' && typeof site.stack === 'string') {
    const frames = site.stack.split('\n').slice(1).join('\n');
    if (frames !== '' && !err.stack.includes(frames)) err.stack += `\n    --- request made at ---\n${frames}`;
  }
  return err;
}
