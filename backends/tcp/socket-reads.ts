/**
 * How bytes get off a socket: Node's `onread` option, with a buffer the current reader picks.
 *
 * `onread: { buffer: () => …, callback }` makes Node read into memory we choose, one read at a time:
 * our pooled buffer while headers are parsed, or the user's own buffer while a large payload is
 * pending. A connection changes readers once (handshake → frames), so the socket is given a
 * {@link ReadRoute} whose `handler` can be swapped.
 *
 * `net.Server` has no `onread` option, so an accepted socket is re-wrapped: the server pauses it on
 * accept (`pauseOnConnect`), and a new `net.Socket` takes over its handle with `onread` set — the same
 * `new net.Socket({ handle })` Node itself uses to receive handles from other processes. Should a
 * Node version not expose the handle, the accepted socket is read through 'data' events instead and
 * each chunk is copied into the reader's buffer (correct, one copy more).
 *
 * @module
 */

import net from 'node:net';

/** Reads one connection's bytes. */
export interface ReadHandler {
  /** Where the next read lands. Never empty. */
  buffer(): Uint8Array;
  /** `bytes` bytes landed at the start of the last {@link buffer}. Must consume them before returning. */
  read(bytes: number): void;
}

/** The `onread` target of one socket; {@link ReadRoute.handler} is the reader in charge. */
export class ReadRoute {
  constructor(public handler: ReadHandler) {}

  /** Pass as the socket's `onread` option. */
  readonly onread: net.OnReadOpts = {
    buffer: () => this.handler.buffer(),
    callback: (bytes: number): boolean => {
      this.handler.read(bytes);
      return true;
    },
  };

  /** Delivers bytes that did not come through `onread` (a 'data' chunk), copying them piecewise. */
  feed(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.byteLength) {
      const into = this.handler.buffer();
      const n = Math.min(into.byteLength, chunk.byteLength - at);
      into.set(chunk.subarray(at, at + n));
      at += n;
      this.handler.read(n);
    }
  }
}

/**
 * Takes over a socket accepted by a `pauseOnConnect` server so that it reads through `route`.
 * Returns the socket to use from now on (a new one when the handle could be moved).
 */
export function adoptAcceptedSocket(accepted: net.Socket, route: ReadRoute): net.Socket {
  const holder = accepted as unknown as { _handle: { readStart?: unknown } | null };
  const handle = holder._handle;
  if (handle !== null && typeof handle === 'object' && typeof handle.readStart === 'function') {
    const options = { handle, readable: true, writable: true, onread: route.onread };
    const socket = new net.Socket(options as net.SocketConstructorOpts);
    // The old wrapper must neither close the moved handle nor keep counting as a server connection:
    // with no handle, destroy() only releases its bookkeeping.
    holder._handle = null;
    accepted.destroy();
    return socket;
  }
  accepted.on('data', (chunk: Buffer) => route.feed(chunk));
  accepted.resume();
  return accepted;
}
