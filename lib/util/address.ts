/**
 * Parses the socket addresses vmictl accepts: `unix:/path`, a bare absolute path, or
 * `tcp:127.0.0.1:PORT` / `127.0.0.1:PORT` / `localhost:PORT`. Only loopback is accepted for TCP:
 * QMP and the gdbstub give full control of the VM and must never be reached over a network.
 */
import { VmiError } from '../errors';

export type SocketAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

export function parseSocketAddress(spec: string): SocketAddress {
  if (spec.startsWith('unix:')) return { kind: 'unix', path: spec.slice(5) };
  if (spec.startsWith('/') || spec.startsWith('./')) return { kind: 'unix', path: spec };
  const rest = spec.startsWith('tcp:') ? spec.slice(4) : spec;
  const m = /^(.*):(\d+)$/.exec(rest);
  if (!m) throw new VmiError('EADDRESS', `not a socket address: ${JSON.stringify(spec)} (use unix:/path or tcp:127.0.0.1:PORT)`);
  const host = m[1] === '' ? '127.0.0.1' : m[1];
  if (!LOOPBACK.has(host) && !/^127\.\d+\.\d+\.\d+$/.test(host)) {
    throw new VmiError('EADDRESS', `refusing non-loopback address ${JSON.stringify(spec)}: QMP and the gdbstub must stay on this host`);
  }
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new VmiError('EADDRESS', `bad port in ${JSON.stringify(spec)}`);
  return { kind: 'tcp', host: host.replace(/^\[|\]$/g, ''), port };
}

export function formatSocketAddress(a: SocketAddress): string {
  return a.kind === 'unix' ? `unix:${a.path}` : `tcp:${a.host}:${a.port}`;
}
