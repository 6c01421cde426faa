/**
 * A {@link Channel} with single copy: the ring layer's {@link RingChannel} (ring, announcement,
 * doorbell) plus the producer's side of `single-copy-sink.ts`'s protocol — large payloads by single
 * copy behind a gate — and noticing a reader that stopped.
 *
 * ## The gate
 *
 * A frame that goes by single copy becomes a descriptor frame in the ring, and the channel then holds
 * every later frame in a backlog of its own until the reader answers: READ calls the frame's `done`
 * (the sender's buffer is free); REFUSED sends the payload through the ring as a fallback frame and
 * turns single copy off for this peer. So frames still reach the peer in call order, and the reader
 * never has to look past an open descriptor. Holding small frames back costs nothing: the reader is
 * busy copying the large one meanwhile.
 *
 * ## A reader that stopped
 *
 * While this channel waits on its reader — a full ring, an unanswered descriptor — it checks every
 * `livenessCheckMs` that the reader's inbox is still open, that it has not closed this ring and,
 * where the transport can tell more (`shm`: a process killed by a signal cannot mark its inbox gone,
 * but the kernel drops its lock on the inbox file), that the reader is alive; once it is not, queued
 * frames fail with `PEER_LOST` and the loss is reported. The transport's wait loop must therefore
 * poll at least that often while {@link SingleCopyChannel.pending} (a sleep with a timeout), since a
 * reader that is gone rings no doorbell.
 *
 * @module
 */

import type { Channel, SendDone } from '../backend.js';
import { VmcommError } from '../errors.js';
import { FRAME_HEADER_BYTES } from '../protocol.js';
import { InboxState } from './inbox.js';
import { announced, refuse, RingChannel, type RingChannelOptions } from './ring-channel.js';
import { SendQueue } from './send-queue.js';
import { DESCRIPTOR_BYTES, PIECE_BYTES, encodeDescriptor, markerHeader, SingleCopyFrame, type SingleCopySink } from './single-copy-sink.js';
import { CopyResult, Fate, HelpResult, nextToken, type SingleCopyControl } from './single-copy-control.js';

/**
 * How a producer publishes payloads for single copy and writes the half a reader asks of it: `shm`'s
 * names addresses and writes with `process_vm_writev`, `threads`' pins views and writes with `memcpy`.
 */
export interface PayloadWriter {
  /** This process's pid (the reader checks it against the card). */
  readonly pid: number;
  /** Payloads of at least this many bytes go by single copy. */
  readonly minBytes: number;
  /** A handle naming `payload` for the reader's {@link PayloadReader.read}, valid until {@link release}. */
  handleOf(payload: Uint8Array): bigint;
  /** The reader answered (or the channel failed): `handle` is no longer used. */
  release(handle: bigint): void;
  /** Writes `from` at byte `offset` of the reader's target `handle` (from the reader's request); returns the bytes written. */
  write(handle: bigint, offset: number, from: Uint8Array): number;
}

/** What a {@link SingleCopyChannel} needs. */
export interface SingleCopyChannelOptions {
  /** The ring channel's options, but for the two hooks this channel takes over. */
  readonly ring: Omit<RingChannelOptions, 'needsFlush' | 'lost'>;
  /** The ring's control block (single-copy answers). */
  readonly control: SingleCopyControl;
  /** Single copy to this peer, or `undefined` for never. */
  readonly writer: PayloadWriter | undefined;
  /** The channel has work that only {@link SingleCopyChannel.flush} can finish. */
  readonly needsFlush: (channel: SingleCopyChannel) => void;
  /** The channel broke (reported once, not after `close()`). */
  readonly lost: (peer: number, error: Error) => void;
  /** Whether the reader is still alive (`shm`: its inbox lock is held). Called at most every {@link livenessCheckMs}. */
  readonly readerAlive: () => boolean;
  /** How often, in ms, a waiting channel checks its reader. */
  readonly livenessCheckMs: number;
  /** A monotonic clock in ms. */
  readonly now: () => number;
}

/** The frame behind the gate. */
interface InFlight {
  readonly payload: Uint8Array;
  readonly done: SendDone | undefined;
  readonly token: number;
  /** The payload's handle, released once the reader answered. */
  readonly handle: bigint;
  /** Cooperative copy: bytes of the asked-for half written so far (0 until asked); -1 once answered. */
  helpWritten: number;
}

/** One peer's outbound channel with single copy. */
export class SingleCopyChannel implements Channel {
  readonly peer: number;
  private readonly ring: RingChannel;
  private readonly options: SingleCopyChannelOptions;
  private readonly backlog = new SendQueue();
  private inFlight: InFlight | undefined;
  private token = 0;
  private writer: PayloadWriter | undefined;
  /** Reused: only one descriptor is in flight at a time (the gate). */
  private readonly descriptor = new Uint8Array(DESCRIPTOR_BYTES);
  private readonly marker = new Uint8Array(FRAME_HEADER_BYTES);
  private readonly frontHeader = new Uint8Array(FRAME_HEADER_BYTES);
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;
  private resolveClosing: (() => void) | undefined;
  private ringClosing = false;
  private closed = false;
  private flagged = false;
  private waitingSince = -1;
  private lastCheck = 0;
  /** Frames sent by single copy, and payloads re-sent through the ring after a refusal (diagnostics). */
  readonly counts = { singleCopies: 0, fallbacks: 0 };

  constructor(options: SingleCopyChannelOptions) {
    this.options = options;
    this.peer = options.ring.peer;
    this.writer = options.writer;
    this.ring = new RingChannel({
      ...options.ring,
      needsFlush: () => this.flag(),
      lost: (_peer, error) => this.failHere(error),
    });
  }

  /** True while the channel has work only {@link flush} can finish. */
  get pending(): boolean {
    if (this.failure !== undefined) return false;
    return this.ring.pending || this.inFlight !== undefined || this.backlog.length > 0 || (this.closing !== undefined && !this.closed);
  }

  /**
   * Frames whose sends completed since the channel opened: written into the ring (descriptors
   * included), or read by single copy. The wait loop ends its turn when this grows.
   */
  get completed(): number {
    return this.ring.completed + this.counts.singleCopies;
  }

  /** Whether single copy is still used towards this peer (off after a refusal). */
  get singleCopy(): boolean {
    return this.writer !== undefined;
  }

  /** Sends one frame; never throws (a frame that cannot go gets `done(error)` on a microtask). */
  send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone): void {
    if (this.failure !== undefined) return refuse(done, this.failure);
    if (this.closing !== undefined) return refuse(done, new VmcommError('FINALIZED', `the channel to rank ${this.peer} is closed; nothing more can be sent on it`, { peer: this.peer }));
    if (this.inFlight !== undefined || this.backlog.length > 0) {
      if (header.length < FRAME_HEADER_BYTES) return refuse(done, new VmcommError('INVALID_ARGUMENT', 'a frame header is 48 bytes; nothing was sent'));
      this.backlog.push(header, payload, done);
      this.flag();
      return;
    }
    this.dispatch(header, payload, done);
  }

  /** {@link Channel.trySend}: through the ring at once, when the gate is open and single copy would not take the frame. */
  trySend(header: Uint8Array, payload: Uint8Array | undefined): boolean {
    if (this.failure !== undefined || this.closing !== undefined || this.inFlight !== undefined || this.backlog.length > 0) return false;
    const writer = this.writer;
    if (writer !== undefined && payload !== undefined && payload.length >= writer.minBytes) return false;
    return this.ring.trySend(header, payload);
  }

  /** The gate is open: single copy, or the ring. */
  private dispatch(header: Uint8Array, payload: Uint8Array | undefined, done: SendDone | undefined): void {
    const writer = this.writer;
    if (writer !== undefined && payload !== undefined && payload.length >= writer.minBytes && payload.length > 0 && announced(header) === payload.length) {
      let handle: bigint;
      try {
        handle = writer.handleOf(payload);
      } catch {
        // A payload that cannot be named (a threads pin refuses a resizable buffer) goes through the ring.
        this.ring.send(header, payload, done);
        return;
      }
      this.token = nextToken(this.token);
      const token = this.token;
      encodeDescriptor(this.descriptor, header, writer.pid, token, handle, payload.byteLength);
      this.inFlight = { payload, done, token, handle, helpWritten: 0 };
      this.ring.send(markerHeader(this.marker, SingleCopyFrame.DESCRIPTOR, DESCRIPTOR_BYTES), this.descriptor, undefined);
      this.flag();
      return;
    }
    this.ring.send(header, payload, done);
  }

  /**
   * Writes what can be written, collects the answer to an open descriptor, releases the backlog,
   * finishes a close, and checks a reader it waits on. Returns a positive number when anything moved.
   */
  flush(): number {
    if (this.failure !== undefined) return 0;
    // Always: the ring channel re-arms its own needs-flush flag only inside flush(), also when its
    // queue was drained meanwhile by a send().
    let progress = this.ring.flush();
    const f = this.inFlight;
    if (f !== undefined && f.helpWritten >= 0 && this.writer !== undefined) {
      try {
        progress += this.help(f, this.writer);
      } catch (error) {
        this.fail(error as Error);
        return progress;
      }
    }
    if (f !== undefined && this.failure === undefined) {
      let outcome: CopyResult;
      try {
        outcome = this.options.control.outcome(f.token);
      } catch (error) {
        this.fail(error as Error);
        return progress;
      }
      if (outcome !== CopyResult.NONE) {
        this.inFlight = undefined;
        this.writer?.release(f.handle);
        progress++;
        if (outcome === CopyResult.READ) {
          this.counts.singleCopies++;
          f.done?.();
        } else {
          this.counts.fallbacks++;
          // The reader cannot reach our memory: this payload, and every later one, through the ring.
          this.writer = undefined;
          this.ring.send(markerHeader(this.marker, SingleCopyFrame.FALLBACK, f.payload.byteLength), f.payload, f.done);
        }
      }
    }
    while (this.inFlight === undefined && this.backlog.length > 0 && this.failure === undefined) {
      const q = this.backlog;
      const slot = q.slotAt(0);
      const h = this.frontHeader;
      h.set(q.headers.subarray(slot * FRAME_HEADER_BYTES, (slot + 1) * FRAME_HEADER_BYTES));
      const payload = q.payloadAtSlot(slot);
      const done = q.shift();
      this.dispatch(h, payload, done);
      progress++;
    }
    if (this.failure !== undefined) return progress;
    if (this.closing !== undefined && !this.ringClosing && this.inFlight === undefined && this.backlog.length === 0) this.closeRing();
    // Waiting on the reader (an unanswered descriptor, a full ring): since when, and is it alive?
    if (this.inFlight === undefined && !this.ring.pending) this.waitingSince = -1;
    else if (progress > 0 || this.waitingSince < 0) this.waitingSince = this.options.now();
    else this.checkReader();
    if (!this.pending) this.flagged = false;
    return progress;
  }

  /**
   * Cooperative copy (`single-copy-sink.ts`): when the reader asked, writes the next piece of the
   * half it asked for straight into its target; says so once all of it is written, or at once when
   * the write fails (the reader then reads that half itself). Returns the bytes written.
   */
  private help(f: InFlight, writer: PayloadWriter): number {
    const control = this.options.control;
    // Claimed for this piece: a reader that gives the frame up meanwhile waits for the piece to end.
    const req = control.claimHelp(f.token);
    if (req === undefined) return 0;
    let result: HelpResult | undefined;
    let wrote = 0;
    try {
      if (req.from + req.length > f.payload.byteLength || req.length === 0) throw corruptHelp(this.peer, req.from, req.length, f.payload.byteLength);
      const n = Math.min(req.length - f.helpWritten, PIECE_BYTES);
      try {
        const at = req.from + f.helpWritten;
        wrote = writer.write(req.handle, at, f.payload.subarray(at, at + n));
        if (!(wrote > 0)) result = HelpResult.FAILED;
        else if ((f.helpWritten += wrote) >= req.length) result = HelpResult.WRITTEN;
      } catch {
        // EPERM, ESRCH, EFAULT…: the reader reads this half itself (and finds any real trouble there).
        result = HelpResult.FAILED;
      }
    } finally {
      control.releaseHelp(f.token);
    }
    if (result !== undefined) {
      f.helpWritten = -1;
      this.options.control.helped(f.token, result);
      if (this.options.ring.peerInbox.ring()) this.options.ring.wake(this.peer);
    }
    return wrote;
  }

  /** Delivers what is queued (needs `flush()` calls), then closes the ring. Idempotent. */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.closing = new Promise<void>((resolve) => (this.resolveClosing = resolve));
    if (this.failure !== undefined) this.finish();
    else if (this.inFlight === undefined && this.backlog.length === 0) this.closeRing();
    // Else the reader's answer wakes this rank, whose poll then flushes (a rank asleep does not poll
    // for a flag alone: threads sleeps until its doorbell rings).
    else this.flag();
    return this.closing;
  }

  /** Nothing is behind the gate any more: the ring channel delivers what it holds, then closes. */
  private closeRing(): void {
    this.ringClosing = true;
    void this.ring.close().then(() => this.finish());
  }

  /** Fails everything queued with `error` and reports the loss (unless closing). Idempotent. */
  fail(error: Error): void {
    if (this.failure !== undefined) return;
    this.ring.fail(error); // reports through failHere
    this.failHere(error);
  }

  private failHere(error: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.flagged = false;
    const f = this.inFlight;
    this.inFlight = undefined;
    // The message behind the gate: failed, unless its reader already delivered it. Decided before
    // the caller learns it, so that a reader copying it delivers none of it once it is given up.
    if (f !== undefined) {
      let fate: Fate = Fate.GIVEN_UP;
      try {
        fate = this.options.control.decide(f.token, Fate.GIVEN_UP);
      } catch {
        // A corrupt control block: the reader cannot deliver through it either.
      }
      if (fate === Fate.GIVEN_UP) {
        // A reader waiting for the half it asked of us would wait forever: the answer wakes it. One
        // waiting for a fallback frame, or reading, learns from the fate word: wake it too.
        if (f.helpWritten >= 0) this.options.control.helped(f.token, HelpResult.FAILED);
        if (this.options.ring.peerInbox.ring()) this.options.ring.wake(this.peer);
      }
      this.writer?.release(f.handle);
      if (fate === Fate.DELIVERED) {
        this.counts.singleCopies++;
        f.done?.();
      } else f.done?.(error);
    }
    while (this.backlog.length > 0) this.backlog.shift()?.(error);
    const report = this.closing === undefined;
    this.finish();
    if (report) this.options.lost(this.peer, error);
  }

  /** For a transport's periodic sweep: see {@link RingChannel.sweepReader} (the ring's failure fails this channel). */
  sweepReader(): void {
    this.ring.sweepReader();
  }

  /** Waiting on the reader: is it still there? */
  private checkReader(): void {
    const now = this.options.now();
    if (now - this.lastCheck < this.options.livenessCheckMs || now - this.waitingSince < this.options.livenessCheckMs) return;
    this.lastCheck = now;
    const state = this.options.ring.peerInbox.state;
    if (state === InboxState.GONE || ((state === InboxState.CLOSED || this.ring.readerClosed) && this.inFlight !== undefined)) {
      const why = state === InboxState.GONE ? 'it ended without finalizing' : state === InboxState.CLOSED ? 'it finalized' : 'it closed this ring';
      return this.fail(new VmcommError('PEER_LOST', `rank ${this.peer} stopped reading (${why})`, { peer: this.peer }));
    }
    if (!this.options.readerAlive()) {
      this.fail(new VmcommError('PEER_LOST', `rank ${this.peer} ended without finalizing (its inbox file is no longer locked)`, { peer: this.peer }));
    }
  }

  private flag(): void {
    if (this.flagged || this.failure !== undefined) return;
    this.flagged = true;
    this.options.needsFlush(this);
  }

  private finish(): void {
    this.closed = true;
    const resolve = this.resolveClosing;
    this.resolveClosing = undefined;
    if (resolve === undefined) return;
    // A close the ring channel finished has told the transport already; one ended by a failure has not.
    if (!this.ringClosing) this.options.ring.closed?.(this.peer);
    resolve();
  }
}

/** Single-copy counters of a transport (diagnostics, tests); see {@link singleCopyCounts}. */
export interface SingleCopyCounts {
  /** As a sender: frames that went by single copy, and payloads re-sent through the ring after a refusal. */
  readonly sent: number;
  readonly fallbacks: number;
  /** As a receiver: descriptors received, payloads read and their bytes, refusals, halves the sender wrote. */
  readonly descriptors: number;
  readonly reads: number;
  readonly bytesRead: number;
  readonly refusals: number;
  readonly helped: number;
}

/** Sums a transport's channels' and its sink's counters. */
export function singleCopyCounts(channels: Iterable<SingleCopyChannel>, sink: SingleCopySink | undefined): SingleCopyCounts {
  let sent = 0;
  let fallbacks = 0;
  for (const c of channels) {
    sent += c.counts.singleCopies;
    fallbacks += c.counts.fallbacks;
  }
  return { sent, fallbacks, ...(sink?.counts ?? { descriptors: 0, reads: 0, bytesRead: 0, refusals: 0, helped: 0 }) };
}

function corruptHelp(peer: number, from: number, length: number, payloadBytes: number): VmcommError {
  return new VmcommError('CORRUPT', `rank ${peer} asked this rank to write bytes ${from}…${from + length} of a ${payloadBytes}-byte payload`, { peer });
}
