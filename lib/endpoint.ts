/**
 * The core's handle on one peer: the transport chosen for the pair and its channel, opened on first
 * use. Frames sent while the channel opens wait here, in order, so `send(a); send(b)` keeps its order
 * even when the first call had to dial.
 *
 * @module
 */

import type { Channel, SendDone, Transport } from './backend.js';
import { FRAME_HEADER_BYTES } from './protocol.js';

interface Queued {
  header: Uint8Array;
  payload: Uint8Array | undefined;
  done: SendDone | undefined;
}

/** One peer's path. */
export class Endpoint {
  private channel: Channel | undefined;
  /** Settles when a dial in progress has ended (either way). */
  private opening: Promise<void> | undefined;
  private queue: Queued[] = [];
  private failure: Error | undefined;

  constructor(
    readonly peer: number,
    readonly transport: Transport,
    private readonly onOpenFailed: (peer: number, error: Error) => void,
  ) {}

  /** Whether the channel is open. */
  get open(): boolean {
    return this.channel !== undefined;
  }

  /** Sends one frame (see {@link Channel.send}); opens the channel on first use. */
  send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone): void {
    if (this.channel) return this.channel.send(header, payload, done);
    if (this.failure) return done?.(this.failure);
    // The core reuses its header buffer: keep a copy while the frame waits.
    this.queue.push({ header: header.slice(0, FRAME_HEADER_BYTES), payload, done });
    this.opening ??= this.connect();
  }

  private connect(): Promise<void> {
    return this.transport.connect(this.peer).then(
      (channel) => {
        this.opening = undefined;
        if (this.failure) {
          void channel.close();
          return;
        }
        this.channel = channel;
        const queued = this.queue;
        this.queue = [];
        for (const q of queued) channel.send(q.header, q.payload, q.done);
      },
      (error: Error) => {
        this.opening = undefined;
        this.fail(error);
        this.onOpenFailed(this.peer, error);
      },
    );
  }

  /** The peer is gone: queued frames fail with `error`, later sends too. */
  fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) q.done?.(error);
  }

  /** Closes the channel after what is queued has left. */
  async close(): Promise<void> {
    await this.opening;
    const channel = this.channel;
    this.channel = undefined;
    this.failure ??= new Error('endpoint closed');
    if (channel) await channel.close();
  }
}
