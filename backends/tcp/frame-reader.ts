/**
 * Turns the byte stream of one tcp connection back into frames: a pure state machine with no I/O.
 *
 * The stream is a sequence of {@link FRAME_HEADER_BYTES}-byte headers, each followed by the payload
 * length it announces. For every data frame the reader asks its {@link FrameHandler} where the payload
 * goes (`begin`), fills that target, discards whatever does not fit, and reports `commit`. A header
 * whose first byte is {@link CONTROL_VERSION} is a transport-level control frame (the goodbye), never
 * shown to the core.
 *
 * The reader also picks where the *next* socket read lands ({@link FrameReader.buffer}): the shared
 * read pool while headers are being parsed, or, when a large payload is pending, straight into the
 * target the core gave, so a big message reaches the user's buffer with no extra copy.
 *
 * @module
 */

import { VmcommError } from '../../lib/errors.js';
import { FRAME_HEADER_BYTES, frameLength } from '../../lib/protocol.js';

/**
 * First header byte of a transport-level control frame. Data frames carry `PROTOCOL_VERSION` (1)
 * there, and the core rejects any other version as `CORRUPT`, so a control frame can never be taken
 * for data. Control frames have no payload.
 */
export const CONTROL_VERSION = 0xff;

/** Control frame kinds (header byte 1 when byte 0 is {@link CONTROL_VERSION}). */
export const ControlKind = {
  /** The sender closes on purpose: the EOF that follows is not a failure. */
  GOODBYE: 1,
} as const;
/** One of {@link ControlKind}'s values. */
export type ControlKind = (typeof ControlKind)[keyof typeof ControlKind];

/**
 * A pending payload at least this long is read straight into its target; shorter ones go through
 * the pool, where one read can also pick up the headers that follow (fewer syscalls for a stream of
 * small frames, and the copy is cheap at this size).
 */
export const DIRECT_READ_MIN_BYTES = 32 * 1024;

/** What the reader reports to. All calls are synchronous; any of them may throw to stop the stream. */
export interface FrameHandler {
  /** A data frame's header is complete. Returns where its payload goes (see `FrameSink.begin`). */
  begin(header: Uint8Array): Uint8Array | undefined;
  /** The payload of the frame begun last is in place. */
  commit(): void;
  /** A control frame arrived (`header[1]` is its {@link ControlKind}). */
  control(header: Uint8Array): void;
}

/** Reader phases: collecting a header, or consuming the payload it announced. */
const READING_HEADER = 0;
const READING_PAYLOAD = 1;

/** Parses one connection's inbound bytes. One instance per connection; see the module comment. */
export class FrameReader {
  /** Collects the current header, also when it arrives split across reads. */
  private readonly header = new Uint8Array(FRAME_HEADER_BYTES);
  private headerFilled = 0;
  private phase: typeof READING_HEADER | typeof READING_PAYLOAD = READING_HEADER;
  /** Where the current payload goes (`undefined`: discard all of it). */
  private target: Uint8Array | undefined = undefined;
  /** Payload bytes already in `target`. */
  private targetFilled = 0;
  /** Payload bytes of the current frame not yet consumed (written or discarded). */
  private payloadLeft = 0;
  /** True when the last {@link buffer} handed out a slice of `target` rather than the pool. */
  private readingDirect = false;
  private stopped = false;

  /**
   * @param pool - where reads land while headers are parsed. It may be shared by every connection
   *   of a transport: the reader consumes all of a read before returning (it copies what it keeps).
   * @param handler - receives the frames.
   */
  constructor(
    private readonly pool: Uint8Array,
    private readonly handler: FrameHandler,
  ) {}

  /** Where the next socket read should land. Never empty. */
  buffer(): Uint8Array {
    if (this.phase === READING_PAYLOAD && this.target !== undefined && this.payloadLeft >= DIRECT_READ_MIN_BYTES) {
      const room = Math.min(this.target.byteLength - this.targetFilled, this.payloadLeft);
      if (room >= DIRECT_READ_MIN_BYTES) {
        this.readingDirect = true;
        return this.target.subarray(this.targetFilled, this.targetFilled + room);
      }
    }
    this.readingDirect = false;
    return this.pool;
  }

  /**
   * `bytes` bytes landed at the start of the buffer {@link buffer} returned last. Throws what the
   * handler throws, or `CORRUPT` for an impossible length or a bad control frame; after a throw the
   * reader must not be used again.
   */
  read(bytes: number): void {
    if (this.readingDirect) {
      this.targetFilled += bytes;
      this.payloadLeft -= bytes;
      if (this.payloadLeft === 0) this.endFrame();
      return;
    }
    this.consume(this.pool, 0, bytes);
  }

  /** Bytes that arrived some other way (after the handshake, or from a 'data' event). Copied. */
  feed(bytes: Uint8Array): void {
    this.consume(bytes, 0, bytes.byteLength);
  }

  /** No more handler calls, and nothing more into a frame's target, whatever arrives (the connection is being torn down). */
  stop(): void {
    this.stopped = true;
    this.target = undefined;
  }

  private consume(src: Uint8Array, at: number, end: number): void {
    while (at < end && !this.stopped) {
      if (this.phase === READING_HEADER) {
        const take = Math.min(FRAME_HEADER_BYTES - this.headerFilled, end - at);
        copyBytes(src, at, this.header, this.headerFilled, take);
        this.headerFilled += take;
        at += take;
        if (this.headerFilled === FRAME_HEADER_BYTES) {
          this.headerFilled = 0;
          this.beginFrame();
        }
      } else {
        const take = Math.min(this.payloadLeft, end - at);
        const target = this.target;
        if (target !== undefined) {
          const fit = Math.min(take, target.byteLength - this.targetFilled);
          if (fit > 0) {
            copyBytes(src, at, target, this.targetFilled, fit);
            this.targetFilled += fit;
          }
        }
        at += take;
        this.payloadLeft -= take;
        if (this.payloadLeft === 0) this.endFrame();
      }
    }
  }

  private beginFrame(): void {
    const header = this.header;
    if (header[0] === CONTROL_VERSION) {
      if (frameLength(header) !== 0) throw new VmcommError('CORRUPT', 'invalid frame: a tcp control frame announced a payload; the channel is closed');
      this.handler.control(header);
      return;
    }
    const length = frameLength(header);
    const target = this.handler.begin(header);
    if (length === 0) {
      this.handler.commit();
      return;
    }
    this.target = target;
    this.targetFilled = 0;
    this.payloadLeft = length;
    this.phase = READING_PAYLOAD;
  }

  private endFrame(): void {
    this.phase = READING_HEADER;
    this.target = undefined;
    this.readingDirect = false;
    if (!this.stopped) this.handler.commit();
  }
}

/** Copies `n` bytes; a plain loop for the tiny copies (headers, 8-byte payloads) that dominate latency. */
function copyBytes(src: Uint8Array, from: number, dst: Uint8Array, to: number, n: number): void {
  if (n <= 64) {
    for (let i = 0; i < n; i++) dst[to + i] = src[from + i];
  } else {
    dst.set(src.subarray(from, from + n), to);
  }
}
