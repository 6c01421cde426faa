/**
 * The core's handle on one peer: the transport the pair uses now and its channel, opened on first
 * use. Frames sent while the channel opens wait here, in order, so `send(a); send(b)` keeps its order
 * even when the first call had to dial.
 *
 * Migration (`lib/migration/`) moves the pair to another transport with {@link Endpoint.switchTo}:
 * frames already handed to the old channel stay there and are followed by a switch marker, so the
 * receiver reads the old channel to its end before it takes anything from the new one; frames that
 * were only queued (the old channel was still opening) move to the new channel, behind a marker that
 * says nothing was sent on the old one.
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

/** Builds the switch marker for a move to epoch `epoch`; `empty`: nothing was sent in the epoch it ends. */
export type SwitchMarker = (epoch: number, empty: boolean) => { header: Uint8Array; payload: Uint8Array };

/** A channel the pair left: it carries the marker and what preceded it; its transport's `release` (or finalize) closes it. */
export interface RetiredChannel {
  readonly transport: Transport;
  readonly channel: Channel;
}

/** One peer's path. */
export class Endpoint {
  private channel: Channel | undefined;
  /** Settles when a dial in progress has ended (either way). */
  private opening: Promise<void> | undefined;
  private queue: Queued[] = [];
  private failure: Error | undefined;
  /** The pair's outbound epoch: 0 on the transport chosen at start-up, +1 per switch. */
  private epochNumber = 0;
  /** Bumped per switch: a dial started for an earlier transport does not install its channel. */
  private dialGeneration = 0;
  /** The head of {@link queue} is this epoch's empty marker, not sent yet (its channel is opening). */
  private markerQueued = false;
  /** Channels the pair left: they still carry their marker; {@link close} waits for them too. */
  private readonly retired = new Set<Channel>();
  private currentTransport: Transport;

  constructor(
    readonly peer: number,
    transport: Transport,
    private readonly onOpenFailed: (peer: number, error: Error) => void,
  ) {
    this.currentTransport = transport;
  }

  /** The transport the pair's outbound frames use now. */
  get transport(): Transport {
    return this.currentTransport;
  }

  /** The outbound epoch (switches so far). */
  get epoch(): number {
    return this.epochNumber;
  }

  /** Whether the channel is open. */
  get open(): boolean {
    return this.channel !== undefined;
  }

  /** {@link Channel.trySend} on the open channel; false while it opens, or when it has no fast path. */
  trySend(header: Uint8Array, payload: Uint8Array | undefined): boolean {
    const channel = this.channel;
    return channel !== undefined && channel.trySend !== undefined && channel.trySend(header, payload);
  }

  /** Sends one frame (see {@link Channel.send}); opens the channel on first use. */
  send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone): void {
    if (this.channel) return this.channel.send(header, payload, done);
    if (this.failure) return done?.(this.failure);
    if (this.opening === undefined) {
      const opened = this.openNow();
      if (opened !== undefined) return opened.send(header, payload, done);
      // The transport reported the peer lost while it tried (which fails this endpoint).
      if (this.failure) return done?.(this.failure);
    }
    // The core reuses its header buffer: keep a copy while the frame waits.
    this.queue.push({ header: header.slice(0, FRAME_HEADER_BYTES), payload, done });
    this.opening ??= this.connect();
  }

  /**
   * Opens the channel at once where the transport can ({@link Transport.openNow}): a program that
   * polls `test()` in a loop that never yields would otherwise never see its first frame leave,
   * since `connect()` settles in a microtask. Nothing is queued then (no dial was under way). When
   * the transport refuses, its error becomes this endpoint's dial, failed: reported as any failed
   * dial is, on a microtask, outside this send — the transport is not asked twice.
   */
  private openNow(): Channel | undefined {
    const transport = this.currentTransport;
    if (transport.openNow === undefined) return undefined;
    let channel: Channel;
    try {
      channel = transport.openNow(this.peer);
    } catch (error) {
      this.opening = this.settleDial(Promise.reject(error as Error));
      return undefined;
    }
    // Opened, but the transport reported the peer lost meanwhile: as a dial that ends after a failure.
    if (this.failure) {
      void channel.close();
      return undefined;
    }
    this.install(channel);
    return channel;
  }

  /** The dial ended with `channel`: it carries what waited, in order. */
  private install(channel: Channel): void {
    this.channel = channel;
    this.markerQueued = false;
    this.retired.delete(channel); // a path the pair left and came back to (tcp keeps its socket)
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) channel.send(q.header, q.payload, q.done);
  }

  /**
   * Moves outbound traffic to `next` (a new epoch). Returns the channel left behind, which carries
   * the marker after everything sent on it, or `undefined` when nothing went out on the old
   * transport: the marker, flagged empty, then leads on the new channel — sent now, even when the
   * pair has nothing to send, so that the peer stops reading the old path.
   */
  switchTo(next: Transport, marker: SwitchMarker): RetiredChannel | undefined {
    const previous = this.currentTransport;
    // A marker still queued (its channel is opening) means nothing was sent since the last switch:
    // that epoch stays, empty, and only its transport changes (the receiver expects epochs one by one).
    const unsent = this.channel === undefined && this.markerQueued;
    const epoch = unsent ? this.epochNumber : ++this.epochNumber;
    if (unsent) this.queue.shift(); // replaced below, at the head again
    this.markerQueued = false;
    this.dialGeneration++;
    this.currentTransport = next;
    const old = this.channel;
    this.channel = undefined;
    this.opening = undefined;
    if (old !== undefined) {
      const m = marker(epoch, false);
      old.send(m.header, m.payload, undefined);
      this.retired.add(old);
      return { transport: previous, channel: old };
    }
    if (this.failure) return undefined;
    // Frames waiting for the old dial go first on the new channel, behind the marker.
    const m = marker(epoch, true);
    this.queue.unshift({ header: m.header, payload: m.payload, done: undefined });
    this.markerQueued = true;
    this.opening = this.connect();
    return undefined;
  }

  /** The migration released `channel` (its transport closed it): no need to wait for it at close. */
  forgetRetired(channel: Channel): void {
    this.retired.delete(channel);
  }

  private connect(): Promise<void> {
    return this.settleDial(this.currentTransport.connect(this.peer));
  }

  /** Installs the channel `dial` ends with, or fails the endpoint with its error (unless the pair switched meanwhile). */
  private settleDial(dial: Promise<Channel>): Promise<void> {
    const generation = this.dialGeneration;
    return dial.then(
      (channel) => {
        if (generation !== this.dialGeneration) return; // the pair switched meanwhile
        this.opening = undefined;
        if (this.failure) {
          void channel.close();
          return;
        }
        this.install(channel);
      },
      (error: Error) => {
        if (generation !== this.dialGeneration) return;
        this.opening = undefined;
        this.fail(error);
        this.onOpenFailed(this.peer, error);
      },
    );
  }

  /** The peer is gone: queued frames fail with `error`, later sends too. */
  fail(error: Error): void {
    // Frames queued after an earlier failure (none should be) fail with that one.
    this.failure ??= error;
    error = this.failure;
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) q.done?.(error);
  }

  /** Closes the channel after what is queued has left — and the channels the pair left, after their marker. */
  async close(): Promise<void> {
    await this.opening;
    const channel = this.channel;
    this.channel = undefined;
    this.failure ??= new Error('endpoint closed');
    const retired = [...this.retired];
    this.retired.clear();
    await Promise.all([...retired, ...(channel ? [channel] : [])].map((c) => c.close()));
  }
}
