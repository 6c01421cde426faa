/**
 * One authenticated socket as the core's {@link Channel}: frames out in call order, frames in through
 * a {@link FrameReader} to the {@link FrameSink}, a goodbye on close, and exactly one `lost` when the
 * connection breaks.
 *
 * **Sending.** A small frame (header + payload up to `coalesceLimitBytes`) is copied into one slice of
 * a {@link StagingRing} and leaves in a single write. A larger frame sends a copy of its header, then
 * its payload by reference (no copy; chunks of at most 1 GiB), corked into one `writev`. In both cases
 * `done` is called from the write callback — when the bytes are with the kernel — as DESIGN.md asks
 * ("tcp: a send completes on the write callback"); that also keeps `done` from ever running inside
 * `send`. Node runs write callbacks in order, so one shared callback serves every frame
 * ({@link CompletionQueue}).
 *
 * **Closing.** `close()` queues a goodbye — a header whose version byte is `CONTROL_VERSION` (0xFF),
 * never valid for data — after everything already queued, then ends the socket. A peer that sees
 * EOF after a goodbye knows the close was intended; EOF without one, a reset or a socket error means
 * the peer is lost.
 *
 * @module
 */

import type net from 'node:net';
import type { Channel, FrameSink, Logger, SendDone } from '../../lib/backend.js';
import { VmcommError } from '../../lib/errors.js';
import { FRAME_HEADER_BYTES } from '../../lib/protocol.js';
import { CompletionQueue } from './completion-queue.js';
import { CONTROL_VERSION, ControlKind, FrameReader, type FrameHandler } from './frame-reader.js';
import type { ReadHandler, ReadRoute } from './socket-reads.js';
import { StagingRing } from './staging-ring.js';

/** Node's write limits are well above this; staying at 1 GiB per write keeps clear of all of them. */
export const MAX_WRITE_BYTES = 1024 * 1024 * 1024;
/** The smallest staging ring; it grows with `coalesceLimitBytes` so several coalesced frames fit. */
const MIN_STAGING_BYTES = 128 * 1024;

/** Everything an endpoint needs. */
export interface EndpointOptions {
  readonly peer: number;
  readonly socket: net.Socket;
  /** The socket's read route; the endpoint takes it over. */
  readonly route: ReadRoute;
  /** The transport's shared read pool. */
  readonly pool: Uint8Array;
  readonly sink: FrameSink;
  readonly coalesceLimitBytes: number;
  readonly closeTimeoutMs: number;
  /** Told once when the connection breaks (after the endpoint has stopped reading). */
  readonly onLost: (endpoint: TcpEndpoint, error: Error) => void;
  readonly logger?: Logger;
}

/** Frames flow both ways. */
const OPEN = 0;
/** `close()` was called: goodbye sent, waiting for the socket to close. */
const CLOSING = 1;
/** The peer said goodbye and ended its side. */
const PEER_CLOSED = 2;
/** Closed on purpose, by either side. */
const CLOSED = 3;
/** Broken: `lost` was reported. */
const LOST = 4;
type State = typeof OPEN | typeof CLOSING | typeof PEER_CLOSED | typeof CLOSED | typeof LOST;

/** A {@link Channel} over one tcp socket. */
export class TcpEndpoint implements Channel, ReadHandler, FrameHandler {
  readonly peer: number;
  private readonly socket: net.Socket;
  private readonly sink: FrameSink;
  private readonly reader: FrameReader;
  private readonly completions = new CompletionQueue();
  private staging: StagingRing | undefined;
  private state: State = OPEN;
  private peerSaidGoodbye = false;
  private socketClosed = false;
  /** The error that failed sends now get. */
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;
  private resolveClosing: (() => void) | undefined;
  private closeTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: EndpointOptions) {
    this.peer = options.peer;
    this.socket = options.socket;
    this.sink = options.sink;
    this.reader = new FrameReader(options.pool, this);
    options.route.handler = this;
    this.socket.setNoDelay(true);
    this.socket.on('error', (err) => this.onError(err));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('close', () => this.onClose());
  }

  // -------------------------------------------------------------------------------------------------
  // Sending

  /**
   * Queues one frame; see the module comment for copying and `done` timing. Never throws: a frame
   * that cannot go (closed or broken channel, a header that does not announce `payload`'s length) gets
   * `done(error)` on a later tick.
   */
  send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone): void {
    const length = payload === undefined ? 0 : payload.byteLength;
    if (this.state !== OPEN || this.peerSaidGoodbye) return this.refuse(done, this.closedError());
    if (header.byteLength < FRAME_HEADER_BYTES || announcedLength(header) !== length) {
      return this.refuse(done, badFrame(header, length));
    }
    const total = FRAME_HEADER_BYTES + length;
    if (total <= this.options.coalesceLimitBytes) {
      const staging = (this.staging ??= this.newStaging());
      const start = staging.alloc(total);
      const frame = start >= 0 ? staging.bytes.subarray(start, start + total) : Buffer.allocUnsafe(total);
      frame.set(header.byteLength === FRAME_HEADER_BYTES ? header : header.subarray(0, FRAME_HEADER_BYTES), 0);
      if (payload !== undefined && length > 0) frame.set(payload, FRAME_HEADER_BYTES);
      this.completions.push(done, start >= 0 ? start + total : -1);
      this.socket.write(frame, this.onWritten);
      return;
    }
    const staging = (this.staging ??= this.newStaging());
    const start = staging.alloc(FRAME_HEADER_BYTES);
    const head = start >= 0 ? staging.bytes.subarray(start, start + FRAME_HEADER_BYTES) : Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    head.set(header.byteLength === FRAME_HEADER_BYTES ? header : header.subarray(0, FRAME_HEADER_BYTES), 0);
    this.completions.push(done, start >= 0 ? start + FRAME_HEADER_BYTES : -1);
    // Corked: header and payload leave in one writev instead of a lone 48-byte packet first.
    this.socket.cork();
    this.socket.write(head);
    const body = payload!;
    for (let at = 0; at < length; at += MAX_WRITE_BYTES) {
      const end = Math.min(length, at + MAX_WRITE_BYTES);
      const last = end === length;
      const piece = at === 0 && last ? body : body.subarray(at, end);
      if (last) this.socket.write(piece, this.onWritten);
      else this.socket.write(piece);
    }
    this.socket.uncork();
  }

  /** The one write callback: completes the oldest frame. */
  private readonly onWritten = (err?: Error | null): void => {
    if (this.completions.length === 0) return; // already failed by onClose
    const done = this.completions.shift();
    const end = this.completions.shiftedEnd;
    if (end >= 0) this.staging!.release(end);
    if (done === undefined) return;
    if (err) done(this.failureFrom(err));
    else if (this.state === LOST) done(this.failure);
    else done();
  };

  private refuse(done: SendDone | undefined, error: Error): void {
    if (done !== undefined) process.nextTick(done, error);
  }

  private newStaging(): StagingRing {
    return new StagingRing(Math.max(MIN_STAGING_BYTES, 4 * this.options.coalesceLimitBytes));
  }

  // -------------------------------------------------------------------------------------------------
  // Receiving (ReadHandler for the socket, FrameHandler for the reader)

  buffer(): Uint8Array {
    return this.reader.buffer();
  }

  read(bytes: number): void {
    try {
      this.reader.read(bytes);
    } catch (err) {
      this.fail(err);
    }
  }

  /** Bytes that arrived with the end of the handshake: the first frames. */
  feed(bytes: Uint8Array): void {
    if (bytes.byteLength === 0) return;
    try {
      this.reader.feed(bytes);
    } catch (err) {
      this.fail(err);
    }
  }

  begin(header: Uint8Array): Uint8Array | undefined {
    return this.sink.begin(this.peer, header);
  }

  commit(): void {
    this.sink.commit(this.peer);
  }

  control(header: Uint8Array): void {
    if (header[1] !== ControlKind.GOODBYE) {
      throw new VmcommError('CORRUPT', `invalid frame: unknown tcp control frame ${header[1]}; the channel is closed`, {
        peer: this.peer,
      });
    }
    this.peerSaidGoodbye = true;
  }

  // -------------------------------------------------------------------------------------------------
  // Closing and failing

  /**
   * Sends what is queued, then a goodbye, then ends the socket; resolves once the socket has closed
   * (the peer answers the end with its own), or after `closeTimeoutMs`, when the socket is destroyed.
   * Frames that arrive before that still reach the sink; none after. Idempotent.
   */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    if (this.socketClosed || this.state === LOST || this.state === CLOSED) return (this.closing = Promise.resolve());
    this.closing = new Promise((resolve) => (this.resolveClosing = resolve));
    if (this.state === OPEN) {
      this.state = CLOSING;
      this.sendGoodbye();
      this.socket.end();
    }
    this.closeTimer = setTimeout(() => this.socket.destroy(), this.options.closeTimeoutMs);
    this.closeTimer.unref();
    return this.closing;
  }

  private sendGoodbye(): void {
    const staging = (this.staging ??= this.newStaging());
    const start = staging.alloc(FRAME_HEADER_BYTES);
    const goodbye = start >= 0 ? staging.bytes.subarray(start, start + FRAME_HEADER_BYTES) : Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    goodbye.fill(0);
    goodbye[0] = CONTROL_VERSION;
    goodbye[1] = ControlKind.GOODBYE;
    this.completions.push(undefined, start >= 0 ? start + FRAME_HEADER_BYTES : -1);
    this.socket.write(goodbye, this.onWritten);
  }

  private onEnd(): void {
    if (this.state !== OPEN) return;
    if (this.peerSaidGoodbye) {
      // The socket answers with its own end (allowHalfOpen is off); 'close' follows.
      this.state = PEER_CLOSED;
      return;
    }
    this.fail(
      new VmcommError('PEER_LOST', `rank ${this.peer} closed its tcp connection without a goodbye: it exited or crashed`, {
        peer: this.peer,
      }),
    );
  }

  private onError(err: Error): void {
    if (this.state === OPEN) this.fail(err);
    else this.failure ??= this.failureFrom(err);
  }

  private onClose(): void {
    this.socketClosed = true;
    clearTimeout(this.closeTimer);
    if (this.state === OPEN) {
      this.fail(new VmcommError('PEER_LOST', `the tcp connection to rank ${this.peer} closed unexpectedly`, { peer: this.peer }));
    } else if (this.state !== LOST) {
      this.state = CLOSED;
    }
    this.reader.stop();
    // Node has called every write callback by now; this is only a safety net.
    const error = this.failure ?? this.closedError();
    while (this.completions.length > 0) {
      const done = this.completions.shift();
      if (done !== undefined) done(error);
    }
    this.resolveClosing?.();
  }

  /** The core gave up the frame being read (`Transport.abandonFrame`): drop the connection as broken. */
  abandon(error: Error): void {
    this.fail(error);
  }

  /** The connection broke: stop reading, destroy the socket, report `lost` once. */
  private fail(cause: unknown): void {
    if (this.state === LOST) return;
    const error = this.failureFrom(cause);
    this.failure = error;
    // A connection this side was already closing, or whose peer had said goodbye (a reset can still
    // follow the goodbye), is not a lost peer.
    const report = this.state === OPEN && !this.peerSaidGoodbye;
    this.state = LOST;
    this.reader.stop();
    this.socket.destroy();
    if (report) this.options.onLost(this, error);
  }

  /** What a broken connection's sends and the sink see: CORRUPT stays as is, the rest becomes PEER_LOST. */
  private failureFrom(cause: unknown): Error {
    if (cause instanceof VmcommError) return cause;
    const err = cause instanceof Error ? cause : new Error(String(cause));
    return new VmcommError('PEER_LOST', `the tcp connection to rank ${this.peer} broke: ${err.message}`, {
      cause: err,
      peer: this.peer,
    });
  }

  private closedError(): Error {
    if (this.state === LOST && this.failure !== undefined) return this.failure;
    if (this.peerSaidGoodbye || this.state === PEER_CLOSED) {
      return new VmcommError('PEER_LOST', `rank ${this.peer} closed its tcp channel (it finalized); nothing more can be sent to it`, {
        peer: this.peer,
      });
    }
    return new VmcommError('FINALIZED', `the tcp channel to rank ${this.peer} is closed; nothing more can be sent on it`, {
      peer: this.peer,
    });
  }
}

/** The payload length a header announces (bytes 32–39, little-endian), read without allocating. */
function announcedLength(h: Uint8Array): number {
  const low = (h[32] | (h[33] << 8) | (h[34] << 16)) + h[35] * 0x100_0000;
  const high = (h[36] | (h[37] << 8) | (h[38] << 16)) + h[39] * 0x100_0000;
  return high * 0x1_0000_0000 + low;
}

function badFrame(header: Uint8Array, length: number): VmcommError {
  const what =
    header.byteLength < FRAME_HEADER_BYTES
      ? `a ${header.byteLength}-byte header (expected ${FRAME_HEADER_BYTES})`
      : `a header announcing ${announcedLength(header)} payload bytes with a ${length}-byte payload`;
  return new VmcommError('INVALID_ARGUMENT', `tcp channel.send got ${what}; nothing was sent`);
}
