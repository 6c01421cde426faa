/**
 * The stream protocol: which messages a stream sends, on which tags, and the credit rules that bound
 * memory at both ends. Pure (no I/O), so it is unit-tested on its own; `stream.ts` moves the messages.
 *
 * **Tags.** A stream lives in the communicator's side context (`comm.sideContext()`), so its
 * messages never match the application's receives. Stream tag `t` uses two tags there: `2t` for
 * *data* (the bytes, in order; an empty message is FIN) and `2t + 1` for *control* (credit grants
 * and the one terminal message). Stream tags therefore run from 0 to {@link STREAM_TAG_UB}.
 *
 * **Credits.** The receiving end grants the sender a number of data messages (absolute, "up to
 * message n"), each at most `chunkBytes` long (the receiver's choice, sent with every grant). A grant
 * is one posted receive: the receiver posts a receive for each message it allows, and posts again
 * only as its reader consumes (Node's `push()` returning true), so a paused reader stops the writer
 * with at most `windowChunks × chunkBytes` in flight. FIN needs a credit like any data message, so
 * nothing on the data tag can outrun a grant (and land in a later stream's receive). Grants go out
 * in batches of about half a window ({@link shouldGrant}).
 *
 * **Close.** Each end of each incarnation sends exactly one terminal control message, after which it
 * sends nothing: `CLOSE(sent)` when it is done (both FINs exchanged, or `destroy()` without an error:
 * it reads no more) or `RESET(sent, reason)` on `destroy(err)`. `sent` counts its data messages
 * (FIN included), so the other end knows how many to absorb before it may forget the stream: a new
 * stream on the same (peer, tag) starts only when the previous one on this rank has sent its
 * terminal, received the peer's and absorbed the peer's data — which is what keeps one
 * incarnation's messages out of the next.
 *
 * @module
 */

import { TAG_UB, VmcommError } from 'vmcomm';

/** The largest stream tag: stream tag t uses tags 2t and 2t + 1 of the side context. */
export const STREAM_TAG_UB = Math.floor((TAG_UB - 1) / 2);

/** Default largest data message (and the largest chunk handed to the reader), in bytes. */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** Default receive window, in chunks: at most this many data messages in flight per direction. */
export const DEFAULT_WINDOW_CHUNKS = 4;
/** Largest accepted `chunkBytes`. */
export const MAX_CHUNK_BYTES = 64 * 1024 * 1024;
/** Largest accepted `windowChunks`. */
export const MAX_WINDOW_CHUNKS = 4096;

/** The data tag of stream tag `tag`. */
export function dataTag(tag: number): number {
  return 2 * tag;
}

/** The control tag of stream tag `tag`. */
export function controlTag(tag: number): number {
  return 2 * tag + 1;
}

/** Control message kinds (the first element of a control message). */
export const ControlKind = {
  /** `[CREDIT, upTo, chunkBytes]`: the sender may send data messages numbered below `upTo`. */
  CREDIT: 1,
  /** `[CLOSE, sent]`: terminal; this end sent `sent` data messages and is done. */
  CLOSE: 2,
  /** `[RESET, sent, reason]`: terminal; this end was destroyed with an error. */
  RESET: 3,
} as const;

/** A decoded control message. */
export type ControlMessage =
  | { kind: 'credit'; upTo: number; chunkBytes: number }
  | { kind: 'close'; sent: number }
  | { kind: 'reset'; sent: number; reason: string };

/** The value a control message is sent as (a short msgpack array). */
export function encodeControl(m: ControlMessage): unknown[] {
  switch (m.kind) {
    case 'credit':
      return [ControlKind.CREDIT, m.upTo, m.chunkBytes];
    case 'close':
      return [ControlKind.CLOSE, m.sent];
    case 'reset':
      return [ControlKind.RESET, m.sent, m.reason];
  }
}

/** Decodes a control message; anything else is `CORRUPT`. */
export function decodeControl(v: unknown): ControlMessage {
  if (Array.isArray(v)) {
    const kind = v[0];
    const a = count(v[1]);
    const b = v[2];
    if (kind === ControlKind.CREDIT && v.length === 3 && a !== undefined) {
      const chunkBytes = count(b);
      if (chunkBytes !== undefined && chunkBytes > 0) return { kind: 'credit', upTo: a, chunkBytes };
    }
    if (kind === ControlKind.CLOSE && v.length === 2 && a !== undefined) return { kind: 'close', sent: a };
    if (kind === ControlKind.RESET && v.length === 3 && a !== undefined && typeof b === 'string') return { kind: 'reset', sent: a, reason: b };
  }
  throw new VmcommError('CORRUPT', `malformed stream control message ${String(JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x))).slice(0, 80)}`);
}

/** A message count (msgpack may give a large one back as a bigint), or `undefined`. */
function count(x: unknown): number | undefined {
  const n = typeof x === 'bigint' ? Number(x) : x;
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/**
 * When a receiver sends a grant: when the sender's remaining allowance (`advertised − received`,
 * an upper bound of what it may still send) has fallen to half the window or less, and there is
 * something new to grant. So grants go out in batches of about half a window while data flows, and
 * at once when a paused reader resumes and the sender may have run dry.
 *
 * @param granted receives posted so far (the grant to send)
 * @param advertised the last grant sent
 * @param received data messages taken so far
 */
export function shouldGrant(granted: number, advertised: number, received: number, windowChunks: number): boolean {
  if (granted <= advertised) return false;
  return advertised - received <= windowChunks - Math.max(1, windowChunks >> 1);
}

/** Gather buffers an outbox keeps for reuse (more are only needed while more messages are in flight). */
const MAX_SPARE_GATHER_BUFFERS = 4;
/** The first gather buffer's size; it doubles, up to a message, each time one fills. */
const FIRST_GATHER_BYTES = 64 * 1024;

/** A data message to send: its bytes, and whether they are the writer's own (else the outbox's copy). */
export interface OutMessage {
  readonly bytes: Uint8Array;
  /** A view of a writer's chunk: its write may be acknowledged only once this message has arrived. */
  readonly borrowed: boolean;
  /** For a gathered message: the whole gather buffer, to {@link Outbox.recycle} once it arrived. */
  readonly gatherBuffer?: Uint8Array;
}

/**
 * Cuts writes into data messages of at most `max` bytes (the receiver's `chunkBytes`), like a
 * socket's send buffer of one message:
 *
 * - A chunk that fits in one message is copied into the *gather buffer* at once ({@link absorb}), so
 *   its write can be acknowledged at once and the writer's next writes keep coming; small writes in
 *   a row share a message. The gather buffer goes out when full, before a long chunk, or when the
 *   stream flushes (at the end of the tick in which it was written, or when a credit arrives).
 * - A longer chunk is sent in place, as views of the writer's buffer (no copy), in messages of `max`
 *   bytes that travel together up to the credit window; its write is acknowledged when they have all
 *   arrived.
 *
 * Gather buffers are reused once their message has arrived ({@link recycle}), so a stream in steady
 * state allocates nothing per message; they start at 64 KiB and double each time one fills, up to
 * a message, so a stream that only ever writes a little holds little. Pure bookkeeping: the stream
 * sends what {@link next} returns.
 */
export class Outbox {
  #chunks: readonly Uint8Array[] = [];
  #index = 0;
  #offset = 0;
  #gather: Uint8Array | undefined;
  #used = 0;
  /** Size of the next gather buffer: small for a few small writes, up to a message for bulk. */
  #size = FIRST_GATHER_BYTES;
  readonly #spare: Uint8Array[] = [];

  constructor(private readonly allocate: (bytes: number) => Uint8Array = (n) => new Uint8Array(n)) {}

  /** Takes a write's chunks (the previous write must be {@link consumed}). */
  write(chunks: readonly Uint8Array[]): void {
    this.#chunks = chunks;
    this.#index = 0;
    this.#offset = 0;
    this.#skipEmpty();
  }

  /** Whether every chunk of the current write has been copied or handed out as a view. */
  get consumed(): boolean {
    return this.#index >= this.#chunks.length;
  }

  /** Bytes waiting in the gather buffer. */
  get gathered(): number {
    return this.#used;
  }

  /** Copies the leading short chunks into the gather buffer while they fit (needs no credit). */
  absorb(max: number): void {
    while (!this.consumed) {
      const c = this.#chunks[this.#index];
      // (A chunk that fits is never cut, so it is always taken whole.)
      if (c.byteLength > max) return;
      if (this.#gather === undefined) {
        this.#gather = this.#spareOf(Math.min(max, Math.max(this.#size, c.byteLength)));
      } else if (this.#used + c.byteLength > this.#gather.byteLength) {
        // Full: it goes as it is, and the next one is bigger (bulk writes soon fill whole messages).
        this.#size = Math.min(max, 2 * this.#gather.byteLength);
        return;
      }
      this.#gather.set(c, this.#used);
      this.#used += c.byteLength;
      this.#index++;
      this.#offset = 0;
      this.#skipEmpty();
    }
  }

  /**
   * The next message to send, for one credit; `undefined` when nothing is due. The gather buffer is
   * due when the next chunk does not fit beside it, or when `flush` is asked for.
   */
  next(max: number, flush: boolean): OutMessage | undefined {
    this.absorb(max);
    if (!this.consumed && this.#used === 0 && this.#chunks[this.#index].byteLength > max) {
      const c = this.#chunks[this.#index];
      const n = Math.min(c.byteLength - this.#offset, max);
      const view = c.subarray(this.#offset, this.#offset + n);
      this.#offset += n;
      if (this.#offset >= c.byteLength) {
        this.#index++;
        this.#offset = 0;
        this.#skipEmpty();
      }
      return { bytes: view, borrowed: true };
    }
    if (this.#used > 0 && (flush || !this.consumed)) {
      const gatherBuffer = this.#gather!;
      const bytes = gatherBuffer.subarray(0, this.#used);
      this.#gather = undefined;
      this.#used = 0;
      return { bytes, borrowed: false, gatherBuffer };
    }
    return undefined;
  }

  /** A gathered message has arrived: its buffer serves again. */
  recycle(m: OutMessage): void {
    if (m.gatherBuffer && this.#spare.length < MAX_SPARE_GATHER_BUFFERS) this.#spare.push(m.gatherBuffer);
  }

  /** Forgets what is not sent (the stream is destroyed or the peer stopped reading); returns the bytes dropped. */
  drop(): number {
    this.#spare.length = 0;
    let dropped = this.#used;
    for (let i = this.#index; i < this.#chunks.length; i++) dropped += this.#chunks[i].byteLength - (i === this.#index ? this.#offset : 0);
    this.#chunks = [];
    this.#index = this.#offset = this.#used = 0;
    this.#gather = undefined;
    return dropped;
  }

  #spareOf(bytes: number): Uint8Array {
    while (this.#spare.length > 0) {
      const b = this.#spare.pop()!;
      if (b.byteLength >= bytes) return b;
    }
    return this.allocate(bytes);
  }

  #skipEmpty(): void {
    while (this.#index < this.#chunks.length && this.#chunks[this.#index].byteLength - this.#offset === 0) {
      this.#index++;
      this.#offset = 0;
    }
  }
}
