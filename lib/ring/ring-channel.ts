/**
 * A {@link Channel} over shared memory: this rank's producer side of the ring to one peer, plus that
 * peer's inbox (to announce the ring once and to ring its doorbell when it sleeps). The wake itself is
 * a hook, because it depends on where the peer is: `threads` calls `Atomics.notify` on the doorbell,
 * `shm` will call the addon's `futexWake`.
 *
 * Sending: a frame that fits is copied into the ring at once and its `done` called before `send`
 * returns; one that does not waits in the ring's send queue (payload borrowed, not copied) and is
 * written by {@link RingChannel.flush}, which the transport calls from its `poll()` while
 * {@link RingChannel.pending}. After every publish: one load of the peer's waiter flag, and a wake
 * only when it is raised.
 *
 * Failure: a peer whose inbox says closed or gone, or a ring that fails validation, fails the queued
 * frames (`done(error)`) and reports `lost` once. Closing: `close()` waits for the queue to drain,
 * then marks the ring closed (the consumer may stop polling it).
 *
 * @module
 */

import type { Channel, SendDone } from '../backend.js';
import { VmcommError } from '../errors.js';
import { FRAME_HEADER_BYTES, frameLength, HEADER_PAYLOAD_WORD, HeaderWords } from '../protocol.js';
import { InboxState, type InboxSender } from './inbox.js';
import type { Region } from './region.js';
import { RingProducer } from './spsc-ring.js';

/**
 * What a {@link RingChannel} uses of the peer's inbox: an {@link InboxSender}, or a transport's
 * stand-in where rings are found another way (`ivshmem` reads a region's ring table instead).
 */
export type PeerInbox = Pick<InboxSender, 'state' | 'announce' | 'ring'>;

/** What a {@link RingChannel} needs. */
export interface RingChannelOptions {
  /** The peer's world rank. */
  readonly peer: number;
  /** This rank (written into the announcement). */
  readonly self: number;
  /** The ring, initialized (`initRing`) and not yet announced. */
  readonly ring: Region;
  /** What the peer needs to find the ring (at most 96 bytes; see `inbox.ts`). */
  readonly descriptor: Uint8Array;
  /** The peer's inbox. */
  readonly peerInbox: PeerInbox;
  /** Wakes the peer; called after its doorbell was incremented. */
  readonly wake: (peer: number) => void;
  /** The channel has work that only {@link RingChannel.flush} can finish: call it from `poll()`. */
  readonly needsFlush: (channel: RingChannel) => void;
  /** The channel broke (reported once, not after `close()`). */
  readonly lost: (peer: number, error: Error) => void;
  /**
   * Optional: `close()` is about to resolve. A transport may stop reading the peer's inbound ring
   * here (the `Channel` contract allows it, and asks no more).
   */
  readonly closed?: (peer: number) => void;
  /**
   * Optional: on failure, mark the ring failed for its reader ({@link RingProducer.closeFailed}), so
   * that a reader whose receive waits on this rank learns it (`Poller.sweepFailed`). Off where the
   * ring's memory may no longer be this rank's to write when it fails (ivshmem's revoked regions).
   */
  readonly signalFailure?: boolean;
}

/** One peer's outbound channel. */
export class RingChannel implements Channel {
  readonly peer: number;
  private readonly producer: RingProducer;
  private readonly options: RingChannelOptions;
  private announced = false;
  private flagged = false;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;
  private closed = false;
  private resolveClosing: (() => void) | undefined;

  constructor(options: RingChannelOptions) {
    this.options = options;
    this.peer = options.peer;
    this.producer = new RingProducer(options.ring, this.onPublish);
    this.announce();
  }

  /** True while the channel has queued frames, an unannounced ring, or a close to finish. */
  get pending(): boolean {
    if (this.failure !== undefined) return false;
    return !this.announced || this.producer.queued > 0 || (this.closing !== undefined && !this.closed);
  }

  /** Bytes published that the peer has not read yet. */
  get unread(): number {
    return this.producer.unread;
  }

  /** Frames fully written since the channel opened (their `done` was called). */
  get completed(): number {
    return this.producer.completed;
  }

  private readonly onPublish = (): void => {
    if (this.announced && this.options.peerInbox.ring()) this.options.wake(this.peer);
  };

  /**
   * Sends one frame (see the module comment). Never throws: a frame that cannot go gets `done(error)`
   * on a microtask.
   */
  send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone): void {
    if (this.failure !== undefined) return refuse(done, this.failure);
    if (this.closing !== undefined) return refuse(done, new VmcommError('FINALIZED', `the channel to rank ${this.peer} is closed; nothing more can be sent on it`, { peer: this.peer }));
    if (!describes(header, payload)) {
      const length = payload === undefined ? 0 : payload.length;
      return refuse(done, new VmcommError('INVALID_ARGUMENT', `a ring channel got a header that does not announce the ${length}-byte payload; nothing was sent`));
    }
    try {
      this.producer.send(header, payload, done);
    } catch (error) {
      this.fail(error as Error);
      return;
    }
    if (this.producer.queued > 0) this.flag();
  }

  /** {@link Channel.trySend}: a frame that goes into the ring at once and in full, or nothing. */
  trySend(header: Uint8Array, payload: Uint8Array | undefined): boolean {
    if (this.failure !== undefined || this.closing !== undefined) return false;
    // A header that misdescribes its payload takes send()'s path, which refuses it.
    if (!describes(header, payload)) return false;
    try {
      return this.producer.trySend(header, payload) > 0;
    } catch (error) {
      // The shared tail was invalid: the channel fails, and the frame with it (send()'s path).
      this.fail(error as Error);
      return false;
    }
  }

  /**
   * Writes what the ring has room for, announces the ring if that is still to do, finishes a close.
   * Returns the bytes published plus one per announcement (0 = no progress).
   */
  flush(): number {
    if (this.failure !== undefined) return 0;
    let progress = 0;
    if (!this.announced && this.announce()) progress++;
    if (this.producer.queued > 0) {
      try {
        progress += this.producer.flush();
      } catch (error) {
        this.fail(error as Error);
        return progress;
      }
      if (this.producer.waiting && progress === 0) this.checkPeer();
    }
    if (this.closing !== undefined && !this.closed && this.announced && this.producer.queued === 0 && this.failure === undefined) this.finishClose();
    if (!this.pending) this.flagged = false;
    return progress;
  }

  /** Whether the consumer closed its side of the ring (it reads no more). */
  get readerClosed(): boolean {
    return this.producer.consumerClosed;
  }

  /**
   * For a transport's periodic sweep: fails the channel (`PEER_LOST`) when its reader gave the ring up
   * while it runs on (`RingConsumer.close(true)`). The channel itself looks only when it is blocked,
   * so without the sweep a send that waits for the reader's answer (a rendezvous CTS, credits) and
   * writes nothing meanwhile would wait forever. One load.
   */
  sweepReader(): void {
    if (this.failure !== undefined || this.closing !== undefined || !this.producer.consumerDropped) return;
    this.fail(readerDropped(this.peer));
  }

  /** Delivers what is queued (needs `flush()` calls), then marks the ring closed. Idempotent. */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.closing = new Promise<void>((resolve) => (this.resolveClosing = resolve));
    if (this.failure !== undefined) this.finish();
    else if (this.announced && this.producer.queued === 0) this.finishClose();
    else this.flag();
    return this.closing;
  }

  /** Fails queued frames with `error` and reports the loss (unless closing). Idempotent. */
  fail(error: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    // First (a queued frame's `done` may throw), and never over a ring that closed normally.
    if (this.options.signalFailure === true && !this.closed) {
      this.producer.closeFailed();
      if (this.options.peerInbox.ring()) this.options.wake(this.peer);
    }
    this.producer.failQueued(error);
    this.flagged = false;
    const report = this.closing === undefined;
    this.finish();
    if (report) this.options.lost(this.peer, error);
  }

  private announce(): boolean {
    const { peerInbox, self, descriptor } = this.options;
    if (peerInbox.state !== InboxState.OPEN) {
      this.checkPeer();
      return false;
    }
    if (!peerInbox.announce(self, descriptor)) {
      this.flag();
      return false;
    }
    this.announced = true;
    // Data may already be waiting in the ring: make sure the peer looks.
    if (peerInbox.ring()) this.options.wake(this.peer);
    return true;
  }

  /** A blocked producer: is the peer still there to read? */
  private checkPeer(): void {
    const state = this.options.peerInbox.state;
    if (state === InboxState.OPEN && !this.producer.consumerClosed) return;
    if (this.producer.consumerDropped) return this.fail(readerDropped(this.peer));
    const why = state === InboxState.GONE ? 'its thread ended without finalizing' : 'it finalized and reads no more';
    this.fail(new VmcommError('PEER_LOST', `rank ${this.peer} cannot receive: ${why}`, { peer: this.peer }));
  }

  private flag(): void {
    if (this.flagged || this.failure !== undefined) return;
    this.flagged = true;
    this.options.needsFlush(this);
  }

  private finishClose(): void {
    this.producer.close();
    if (this.options.peerInbox.ring()) this.options.wake(this.peer);
    this.finish();
  }

  private finish(): void {
    this.closed = true;
    const resolve = this.resolveClosing;
    this.resolveClosing = undefined;
    if (resolve !== undefined) {
      this.options.closed?.(this.peer);
      resolve();
    }
  }
}

/** What {@link PendingChannels} needs of a channel: {@link RingChannel}, or a transport's wrapper of it. */
export interface FlushableChannel {
  /** Writes what fits; returns the progress made. */
  flush(): number;
  /** Whether frames are still waiting to be written. */
  readonly pending: boolean;
  /** Frames completed so far (a running count). */
  readonly completed: number;
}

/**
 * The channels of one transport that need {@link RingChannel.flush} calls, flushed from `poll()`.
 * Allocation-free once grown.
 */
export class PendingChannels<C extends FlushableChannel = RingChannel> {
  private channels: C[] = [];
  /** Frames that the last {@link flushAll} finished writing (their sends completed). */
  completed = 0;

  get size(): number {
    return this.channels.length;
  }

  add(channel: C): void {
    if (!this.channels.includes(channel)) this.channels.push(channel);
  }

  /** Flushes every pending channel; drops those with nothing left. Returns the total progress. */
  flushAll(): number {
    const list = this.channels;
    let progress = 0;
    let completed = 0;
    for (let i = 0; i < list.length; ) {
      const c = list[i];
      const before = c.completed;
      progress += c.flush();
      completed += c.completed - before;
      if (c.pending) {
        i++;
        continue;
      }
      // Done: swap-remove (the channel moved into slot i is flushed next).
      list[i] = list[list.length - 1];
      list.pop();
    }
    this.completed = completed;
    return progress;
  }

  clear(): void {
    this.channels = [];
  }
}

/** The reader gave this rank's ring up while it runs on. */
function readerDropped(peer: number): VmcommError {
  return new VmcommError('PEER_LOST', `rank ${peer} stopped reading this rank's ring: it gave this rank up (it refused a frame, or found or was told this rank is lost)`, { peer });
}

/** Fails a send without throwing: `done(error)` on a microtask, never inside `send()`. */
export function refuse(done: SendDone | undefined, error: Error): void {
  if (done !== undefined) queueMicrotask(() => done(error));
}

/**
 * The word view of the header buffer the core sent from last (see {@link describes}): it sends from
 * two (`Engine.sendNow`'s and the rest's), so a switch between them costs one lookup.
 */
const describedWords = new HeaderWords();

/** Whether `header` is a whole frame header announcing exactly `payload`'s length (`.length`: see `lib/engine.ts`). */
function describes(header: Uint8Array, payload: Uint8Array | undefined): boolean {
  const n = payload === undefined ? 0 : payload.length;
  // The core's header buffer (from `newHeaderBuffer`) is read as words: the length's two words
  // against eight byte loads. Alternating the two, 8-byte shm half round trips took about 1 % less time.
  const w = describedWords.of(header);
  if (w !== undefined && n <= 0x7fff_ffff) return w[HEADER_PAYLOAD_WORD] === n && w[HEADER_PAYLOAD_WORD + 1] === 0;
  return header.length >= FRAME_HEADER_BYTES && announced(header) === n;
}

/** The payload length a header announces, or −1 when it is not a valid length. */
export function announced(header: Uint8Array): number {
  try {
    return frameLength(header);
  } catch {
    return -1;
  }
}
