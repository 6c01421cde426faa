/**
 * The shm {@link Channel}: the ring layer's {@link RingChannel} (ring, announcement, doorbell) plus
 * what only processes need — single copy behind a gate, and noticing a reader that died.
 *
 * ## The gate
 *
 * A frame that goes by single copy (`cma.ts`) becomes a descriptor frame in the ring, and the channel
 * then holds every later frame in a backlog of its own until the reader answers: READ calls the
 * frame's `done` (the sender's buffer is free); REFUSED sends the payload through the ring as a
 * fallback frame and turns single copy off for this peer. So frames still reach the peer in call
 * order, and the reader never has to look past an open descriptor. Holding small frames back costs
 * nothing: the reader is busy copying the large one meanwhile.
 *
 * ## A reader that died
 *
 * A process killed by a signal cannot mark its inbox gone, and the launcher's `peer-lost` reaches the
 * core, not the transport. So while this channel waits on its reader — a full ring, an unanswered
 * descriptor — it checks every `livenessCheckMs` whether the reader still holds the lock on its inbox
 * file (`files.ts`); once it does not, queued frames fail with `PEER_LOST` and the loss is reported.
 * Nothing waits forever on a dead reader.
 *
 * @module
 */

import type { Channel, SendDone } from '../../lib/backend.js';
import { VmcommError } from '../../lib/errors.js';
import { FRAME_HEADER_BYTES } from '../../lib/protocol.js';
import { InboxState } from '../../lib/ring/inbox.js';
import { announced, refuse, RingChannel, type RingChannelOptions } from '../../lib/ring/ring-channel.js';
import { SendQueue } from '../../lib/ring/send-queue.js';
import { CMA_DESCRIPTOR_BYTES, CMA_PIECE_BYTES, encodeDescriptor, markerHeader, ShmFrame } from './cma.js';
import { CmaResult, HelpResult, type RingFileControl } from './layout.js';

/** Single copy as the producer sees it. */
export interface ChannelCma {
  /** This process's pid (the reader checks it against the card). */
  readonly pid: number;
  /** Payloads of at least this many bytes go by single copy. */
  readonly minBytes: number;
  /** The address of a view's first byte (the addon's `addressOf`). */
  readonly addressOf: (view: Uint8Array) => bigint;
  /** The reader's pid (from its card), for writing the half it asks for (`cma.ts`, cooperative copy). */
  readonly readerPid: number;
  /** `process_vm_writev` (the addon's `cmaWrite`). */
  readonly write: (pid: number, remote: bigint, from: Uint8Array) => number;
}

/** What a {@link ShmChannel} needs. */
export interface ShmChannelOptions {
  /** The ring channel's options, but for the two hooks this channel takes over. */
  readonly ring: Omit<RingChannelOptions, 'needsFlush' | 'lost'>;
  /** The ring file's control words (single-copy answers). */
  readonly control: RingFileControl;
  /** Single copy to this peer, or `undefined` for never. */
  readonly cma: ChannelCma | undefined;
  /** The channel has work that only {@link ShmChannel.flush} can finish. */
  readonly needsFlush: (channel: ShmChannel) => void;
  /** The channel broke (reported once, not after `close()`). */
  readonly lost: (peer: number, error: Error) => void;
  /** Whether the reader is still alive (its inbox lock is held). Called at most every {@link livenessCheckMs}. */
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
  /** Cooperative copy: bytes of the asked-for half written so far; -1 once answered (or never asked). */
  helpWritten: number;
}

/** One peer's outbound shm channel. */
export class ShmChannel implements Channel {
  readonly peer: number;
  private readonly ring: RingChannel;
  private readonly options: ShmChannelOptions;
  private readonly backlog = new SendQueue();
  private inFlight: InFlight | undefined;
  private token = 0;
  private cma: ChannelCma | undefined;
  /** Reused: only one descriptor is in flight at a time (the gate). */
  private readonly descriptor = new Uint8Array(CMA_DESCRIPTOR_BYTES);
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

  constructor(options: ShmChannelOptions) {
    this.options = options;
    this.peer = options.ring.peer;
    this.cma = options.cma;
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
    return this.cma !== undefined;
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
    const cma = this.cma;
    if (cma !== undefined && payload !== undefined && payload.length >= cma.minBytes) return false;
    return this.ring.trySend(header, payload);
  }

  /** The gate is open: single copy, or the ring. */
  private dispatch(header: Uint8Array, payload: Uint8Array | undefined, done: SendDone | undefined): void {
    const cma = this.cma;
    if (cma !== undefined && payload !== undefined && payload.length >= cma.minBytes && payload.length > 0 && announced(header) === payload.length) {
      this.token = (this.token + 1) | 0;
      const token = this.token;
      encodeDescriptor(this.descriptor, header, cma.pid, token, cma.addressOf(payload), payload.byteLength);
      this.inFlight = { payload, done, token, helpWritten: 0 };
      this.ring.send(markerHeader(this.marker, ShmFrame.CMA_DESCRIPTOR, CMA_DESCRIPTOR_BYTES), this.descriptor, undefined);
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
    if (f !== undefined && f.helpWritten >= 0 && this.cma !== undefined) {
      try {
        progress += this.help(f, this.cma);
      } catch (error) {
        this.fail(error as Error);
        return progress;
      }
    }
    if (f !== undefined && this.failure === undefined) {
      let outcome: CmaResult;
      try {
        outcome = this.options.control.cmaOutcome(f.token);
      } catch (error) {
        this.fail(error as Error);
        return progress;
      }
      if (outcome !== CmaResult.NONE) {
        this.inFlight = undefined;
        progress++;
        if (outcome === CmaResult.READ) {
          this.counts.singleCopies++;
          f.done?.();
        } else {
          this.counts.fallbacks++;
          // The reader cannot reach our memory: this payload, and every later one, through the ring.
          this.cma = undefined;
          this.ring.send(markerHeader(this.marker, ShmFrame.CMA_FALLBACK, f.payload.byteLength), f.payload, f.done);
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
    if (this.closing !== undefined && !this.ringClosing && this.inFlight === undefined && this.backlog.length === 0) {
      this.ringClosing = true;
      void this.ring.close().then(() => this.finish());
    }
    // Waiting on the reader (an unanswered descriptor, a full ring): since when, and is it alive?
    if (this.inFlight === undefined && !this.ring.pending) this.waitingSince = -1;
    else if (progress > 0 || this.waitingSince < 0) this.waitingSince = this.options.now();
    else this.checkReader();
    if (!this.pending) this.flagged = false;
    return progress;
  }

  /**
   * Cooperative copy (`cma.ts`): when the reader asked, writes the next piece of the half it asked
   * for straight into its memory; says so once all of it is written, or at once when the kernel
   * refuses this direction (the reader then reads that half itself). Returns the bytes written.
   */
  private help(f: InFlight, cma: ChannelCma): number {
    const req = this.options.control.helpRequest(f.token);
    if (req === undefined) return 0;
    if (req.from + req.length > f.payload.byteLength || req.length === 0) throw corruptHelp(this.peer, req.from, req.length, f.payload.byteLength);
    const n = Math.min(req.length - f.helpWritten, CMA_PIECE_BYTES);
    let result: HelpResult | undefined;
    let wrote = 0;
    try {
      const at = req.from + f.helpWritten;
      wrote = cma.write(cma.readerPid, req.address + BigInt(f.helpWritten), f.payload.subarray(at, at + n));
      if (!(wrote > 0)) result = HelpResult.FAILED;
      else if ((f.helpWritten += wrote) >= req.length) result = HelpResult.WRITTEN;
    } catch {
      // EPERM, ESRCH, EFAULT…: the reader reads this half itself (and finds any real trouble there).
      result = HelpResult.FAILED;
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
    else this.flag();
    return this.closing;
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
    f?.done?.(error);
    while (this.backlog.length > 0) this.backlog.shift()?.(error);
    const report = this.closing === undefined;
    this.finish();
    if (report) this.options.lost(this.peer, error);
  }

  /** Waiting on the reader: is it still there? */
  private checkReader(): void {
    const now = this.options.now();
    if (now - this.lastCheck < this.options.livenessCheckMs || now - this.waitingSince < this.options.livenessCheckMs) return;
    this.lastCheck = now;
    const state = this.options.ring.peerInbox.state;
    if (state === InboxState.GONE || (state === InboxState.CLOSED && this.inFlight !== undefined)) {
      return this.fail(new VmcommError('PEER_LOST', `rank ${this.peer} stopped reading (${state === InboxState.GONE ? 'it ended without finalizing' : 'it finalized'})`, { peer: this.peer }));
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
    resolve?.();
  }
}

function corruptHelp(peer: number, from: number, length: number, payloadBytes: number): VmcommError {
  return new VmcommError('CORRUPT', `rank ${peer} asked this rank to write bytes ${from}…${from + length} of a ${payloadBytes}-byte payload`, { peer });
}
