/**
 * Opens the stream a QMP client runs over. Only unix sockets and loopback TCP are accepted
 * (parseSocketAddress enforces it): QMP gives full control of the VM and must not cross a network.
 */
import * as net from 'node:net';
import { ConnectionError } from '../../errors';
import { formatSocketAddress, parseSocketAddress } from '../../util/address';

export interface OpenedSocket {
  socket: net.Socket;
  /** Canonical form of the address, for messages. */
  label: string;
  /** Settles when the connection is up, or rejects with a ConnectionError. */
  connected: Promise<void>;
}

function hint(err: NodeJS.ErrnoException): string {
  if (err.code === 'ENOENT') return 'no such socket (is QEMU running with -qmp unix:PATH,server=on,wait=off?)';
  if (err.code === 'ECONNREFUSED') return 'connection refused (QEMU not listening, or the socket is stale)';
  if (err.code === 'EACCES') return 'permission denied on the socket';
  return err.message;
}

/**
 * Starts connecting. The socket is returned at once, before it is connected, so that a caller's
 * timeout or abort can destroy it. Throws (synchronously) a VmiError for an unacceptable address.
 */
export function openSocket(spec: string): OpenedSocket {
  const addr = parseSocketAddress(spec);
  const label = formatSocketAddress(addr);
  const socket = addr.kind === 'unix' ? net.createConnection({ path: addr.path }) : net.createConnection({ host: addr.host, port: addr.port });
  const connected = new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(new ConnectionError(label, hint(err), { cause: err }));
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      // Requests are small and latency matters more than packet count.
      if (addr.kind === 'tcp') socket.setNoDelay(true);
      resolve();
    });
  });
  return { socket, label, connected };
}
