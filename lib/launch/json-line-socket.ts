/**
 * A TCP socket carrying one JSON message per line: the byte-moving half of the rendezvous protocol
 * (the parsing half is `rendezvous-protocol.ts`). Shared by the server and the client.
 *
 * @module
 */

import type { Socket } from 'node:net';
import { LineDecoder } from './rendezvous-protocol.js';

/** What a {@link JsonLineSocket} reports. Each is called at most once except `line`. */
export interface JsonLineHandlers {
  /** One complete line, in order. Throwing from here closes the socket with that error. */
  line(line: string): void;
  /**
   * The socket closed, for whatever reason. `error` is set when it broke (a socket error, a line over
   * the limit, a handler that threw) rather than ended normally.
   */
  closed(error: Error | undefined): void;
}

/**
 * Wraps a connected socket. Lines are delivered synchronously from the socket's `data` events;
 * after {@link JsonLineSocket.destroy} nothing more is delivered.
 */
export class JsonLineSocket {
  readonly socket: Socket;
  private readonly decoder: LineDecoder;
  /** No more lines are delivered (destroyed, or closed). */
  private stopped = false;
  /** `closed` was called. */
  private reported = false;
  private failure: Error | undefined;

  constructor(socket: Socket, maxLineBytes: number, handlers: JsonLineHandlers) {
    this.socket = socket;
    this.decoder = new LineDecoder(maxLineBytes);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      if (this.stopped) return;
      try {
        for (const line of this.decoder.push(chunk)) {
          if (this.stopped) return;
          handlers.line(line);
        }
      } catch (error) {
        this.destroy(error instanceof Error ? error : new Error(String(error)));
      }
    });
    // Without an 'error' listener a reset connection would crash the process; the error is reported
    // through `closed` instead, which 'close' always follows.
    socket.on('error', (error) => {
      this.failure ??= error;
    });
    socket.on('close', () => {
      if (this.reported) return;
      this.reported = true;
      this.stopped = true;
      handlers.closed(this.failure);
    });
  }

  /** Raises (or lowers) the longest line accepted from now on. */
  setMaxLineBytes(bytes: number): void {
    this.decoder.maxLineBytes = bytes;
  }

  /** True once nothing more can be written: ended, closed or destroyed. */
  get isClosed(): boolean {
    return this.stopped || this.socket.destroyed || this.socket.writableEnded;
  }

  /** Queues an encoded line. Never throws; a broken socket reports through `closed`. */
  write(line: string): void {
    if (!this.isClosed) this.socket.write(line);
  }

  /**
   * Queues an encoded line and resolves once the kernel took it (or the socket closed: then the line
   * may be lost, and `false` is returned).
   */
  writeFlushed(line: string): Promise<boolean> {
    if (this.isClosed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onClose = (): void => resolve(false);
      this.socket.once('close', onClose);
      this.socket.write(line, (error) => {
        this.socket.off('close', onClose);
        resolve(error === undefined || error === null);
      });
    });
  }

  /** Sends what is queued, then closes (a normal end). */
  end(line?: string): void {
    if (this.isClosed) return;
    if (line === undefined) this.socket.end();
    else this.socket.end(line);
  }

  /** Closes at once; `closed` is then called with `error` (if given) as the reason. */
  destroy(error?: Error): void {
    if (this.reported) return;
    if (error !== undefined) this.failure ??= error;
    this.stopped = true;
    this.socket.destroy();
  }
}
