/**
 * The frame header every transport carries, and the message protocol kinds (eager, rendezvous,
 * credits). Pure: no I/O. Layout, little-endian, {@link FRAME_HEADER_BYTES} bytes:
 *
 * | offset | type | field |
 * |---|---|---|
 * | 0 | u8  | version ({@link PROTOCOL_VERSION}) |
 * | 1 | u8  | kind ({@link FrameKind}) |
 * | 2 | u16 | flags ({@link FrameFlags}) |
 * | 4 | u32 | context id (communicator × p2p/collective) |
 * | 8 | i32 | source rank in that communicator |
 * | 12 | i32 | tag |
 * | 16 | u32 | sequence number (per pair) |
 * | 20 | u32 | sender's request id (RTS, CTS, DATA, cancel) |
 * | 24 | u32 | receiver's request id (CTS, DATA) |
 * | 28 | u32 | aux (EAGER: the sender's credit window; CREDIT: credits returned; cancel result; PATH: step) |
 * | 32 | u64 | payload bytes that follow this header |
 * | 40 | u64 | message bytes (the whole message; for RTS, what DATA will carry) |
 *
 * @module
 */

import { VmcommError } from './errors.js';

/** Bytes in every frame header. */
export const FRAME_HEADER_BYTES = 48;
/** The wire version; a frame with another version is `CORRUPT`. */
export const PROTOCOL_VERSION = 1;

/** What a frame is. */
export const FrameKind = {
  /** A whole message, payload included. Uses one credit. */
  EAGER: 1,
  /** Request to send: envelope and length only; the receiver answers CTS once it matched. */
  RTS: 2,
  /** Clear to send: the receiver matched the RTS and has a buffer. */
  CTS: 3,
  /** The payload of a rendezvous message, after CTS. */
  DATA: 4,
  /** Returns `aux` eager credits to the sender. */
  CREDIT: 5,
  /** The sender withdraws an RTS not yet matched (a timed-out or aborted send). */
  RTS_CANCEL: 6,
  /** Answer to RTS_CANCEL: aux = 1 withdrawn, 0 already matched (a CTS went out before it). */
  CANCEL_REPLY: 7,
  /**
   * The pair's path (migration, `lib/migration/`): a transport switch marker or a step of the
   * negotiation that moves a pair back to a faster transport. `aux` says which ({@link PathStep}).
   * Never reaches matching: the core's ordered inbound layer consumes it.
   */
  PATH: 8,
} as const;
/** One of {@link FrameKind}'s values. */
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];
const MAX_KIND = 8;

/** Bit flags in the header. */
export const FrameFlags = {
  /** The message is a msgpack-encoded value (`send`), not raw bytes (`sendBuffer`). */
  OBJECT: 1,
  /** DATA: the sender withdrew the message after the receiver had matched it; no payload follows. */
  WITHDRAWN: 2,
} as const;

/** A decoded header (for the core; transports need only {@link frameLength}). */
export interface FrameHeader {
  kind: FrameKind;
  flags: number;
  context: number;
  source: number;
  tag: number;
  seq: number;
  sendId: number;
  recvId: number;
  aux: number;
  payloadBytes: number;
  messageBytes: number;
}

/** A header with every field zero, to fill in. */
export function emptyHeader(): FrameHeader {
  return {
    kind: FrameKind.EAGER,
    flags: 0,
    context: 0,
    source: 0,
    tag: 0,
    seq: 0,
    sendId: 0,
    recvId: 0,
    aux: 0,
    payloadBytes: 0,
    messageBytes: 0,
  };
}

/**
 * True where a header's little-endian 32-bit fields are the host's own `Int32Array` words (every
 * platform Node runs on in practice); elsewhere headers go byte by byte.
 */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The word of a header's sequence number (offset 16) in {@link HeaderWords}' view. */
export const HEADER_SEQ_WORD = 16 >> 2;
/** The word of a header's payload length (offset 32, low word first) in {@link HeaderWords}' view. */
export const HEADER_PAYLOAD_WORD = 32 >> 2;

/** The word views of header buffers made by {@link newHeaderBuffer}. */
const wordViews = new WeakMap<Uint8Array, Int32Array>();

/**
 * A {@link FRAME_HEADER_BYTES}-byte header buffer that {@link encodeHeader}, {@link decodeHeader}
 * and the rings access as twelve 32-bit words instead of 48 bytes: a small message spends as much
 * on its header as on its payload, and on every hop (encode, copy into the ring, copy out, decode).
 * Any other `Uint8Array` works too, byte by byte.
 */
export function newHeaderBuffer(): Uint8Array {
  const bytes = new Uint8Array(FRAME_HEADER_BYTES);
  if (LITTLE_ENDIAN) wordViews.set(bytes, new Int32Array(bytes.buffer));
  return bytes;
}

/**
 * The word view of a header buffer, remembered for the last buffer asked about: one call site
 * (an encoder, a ring's copy) sees the same buffer message after message, so it pays one compare,
 * not a WeakMap lookup.
 */
export class HeaderWords {
  private bytes: Uint8Array | undefined;
  private words: Int32Array | undefined;

  /** `bytes`' words when it came from {@link newHeaderBuffer} (on a little-endian host), else undefined. */
  of(bytes: Uint8Array): Int32Array | undefined {
    if (bytes === this.bytes) return this.words;
    const words = wordViews.get(bytes);
    if (words !== undefined) {
      this.bytes = bytes;
      this.words = words;
    }
    return words;
  }
}

const encodeWords = new HeaderWords();
const decodeWords = new HeaderWords();

/**
 * Writes `h` into `out` (at least {@link FRAME_HEADER_BYTES} long). Returns `out`. Word stores for a
 * buffer from {@link newHeaderBuffer}, else byte stores — never a DataView: every message encodes a
 * header, and a DataView per call costs an allocation plus, for a small on-heap array,
 * materializing its ArrayBuffer (about 0.1 µs a frame together).
 */
export function encodeHeader(h: FrameHeader, out: Uint8Array): Uint8Array {
  const w = encodeWords.of(out);
  if (w !== undefined) {
    w[0] = PROTOCOL_VERSION | (h.kind << 8) | ((h.flags & 0xffff) << 16);
    w[1] = h.context;
    w[2] = h.source;
    w[3] = h.tag;
    w[HEADER_SEQ_WORD] = h.seq;
    w[5] = h.sendId;
    w[6] = h.recvId;
    w[7] = h.aux;
    // An Int32Array store keeps the low 32 bits (ToInt32 is exact below 2^53): no `%`, which on a
    // double is a slow x87 `fprem`.
    w[HEADER_PAYLOAD_WORD] = h.payloadBytes;
    w[HEADER_PAYLOAD_WORD + 1] = Math.floor(h.payloadBytes / 0x1_0000_0000);
    w[10] = h.messageBytes;
    w[11] = Math.floor(h.messageBytes / 0x1_0000_0000);
    return out;
  }
  // Typed-array stores past the end are silently dropped: a short buffer would go out half written.
  if (out.byteLength < FRAME_HEADER_BYTES) throw new RangeError(`a frame header needs ${FRAME_HEADER_BYTES} bytes, got ${out.byteLength}`);
  out[0] = PROTOCOL_VERSION;
  out[1] = h.kind;
  out[2] = h.flags;
  out[3] = h.flags >>> 8;
  put32(out, 4, h.context);
  put32(out, 8, h.source);
  put32(out, 12, h.tag);
  put32(out, 16, h.seq);
  put32(out, 20, h.sendId);
  put32(out, 24, h.recvId);
  put32(out, 28, h.aux);
  put64(out, 32, h.payloadBytes);
  put64(out, 40, h.messageBytes);
  return out;
}

/**
 * Reads and validates a header into `into`. Throws `CORRUPT` for a wrong version, an unknown kind, or
 * lengths beyond 2^53 (no JavaScript buffer could hold them). `words` remembers the word view of the
 * last buffer it was asked about: a caller that decodes several peers' headers, each from a buffer
 * of its own, passes one per peer, so that a hit is a compare and not a `WeakMap` lookup.
 */
export function decodeHeader(bytes: Uint8Array, into: FrameHeader, words: HeaderWords = decodeWords): FrameHeader {
  const w = words.of(bytes);
  let kind: number;
  if (w !== undefined) {
    const w0 = w[0];
    const version = w0 & 0xff;
    if (version !== PROTOCOL_VERSION) throw corrupt(`frame version ${version}, expected ${PROTOCOL_VERSION}`);
    kind = (w0 >>> 8) & 0xff;
    if (kind < 1 || kind > MAX_KIND) throw corrupt(`unknown frame kind ${kind}`);
    into.kind = kind as FrameKind;
    into.flags = w0 >>> 16;
    into.context = w[1] >>> 0;
    into.source = w[2];
    into.tag = w[3];
    into.seq = w[HEADER_SEQ_WORD] >>> 0;
    into.sendId = w[5] >>> 0;
    into.recvId = w[6] >>> 0;
    into.aux = w[7] >>> 0;
    into.payloadBytes = length64(w[HEADER_PAYLOAD_WORD], w[HEADER_PAYLOAD_WORD + 1]);
    into.messageBytes = length64(w[10], w[11]);
  } else {
    if (bytes.byteLength < FRAME_HEADER_BYTES) throw corrupt(`a frame header is ${FRAME_HEADER_BYTES} bytes, got ${bytes.byteLength}`);
    const version = bytes[0];
    if (version !== PROTOCOL_VERSION) throw corrupt(`frame version ${version}, expected ${PROTOCOL_VERSION}`);
    kind = bytes[1];
    if (kind < 1 || kind > MAX_KIND) throw corrupt(`unknown frame kind ${kind}`);
    into.kind = kind as FrameKind;
    into.flags = bytes[2] | (bytes[3] << 8);
    into.context = get32(bytes, 4) >>> 0;
    into.source = get32(bytes, 8);
    into.tag = get32(bytes, 12);
    into.seq = get32(bytes, 16) >>> 0;
    into.sendId = get32(bytes, 20) >>> 0;
    into.recvId = get32(bytes, 24) >>> 0;
    into.aux = get32(bytes, 28) >>> 0;
    into.payloadBytes = get64(bytes, 32);
    into.messageBytes = get64(bytes, 40);
  }
  if (into.payloadBytes > into.messageBytes && kind !== FrameKind.DATA) {
    throw corrupt(`payload of ${into.payloadBytes} bytes exceeds the message length ${into.messageBytes}`);
  }
  return into;
}

/**
 * The payload length of a frame, from its header: what a transport reads after the header. Throws
 * `CORRUPT` when it exceeds 2^53 − 1.
 */
export function frameLength(header: Uint8Array): number {
  // Byte arithmetic, not a DataView: transports call this once per frame and must not allocate.
  return get64(header, 32);
}

/**
 * {@link frameLength} of `header`, whose bytes `words` also views (a buffer from
 * {@link newHeaderBuffer}): two word loads instead of eight byte loads, on a little-endian host.
 */
export function frameLengthOfWords(header: Uint8Array, words: Int32Array): number {
  return LITTLE_ENDIAN ? length64(words[HEADER_PAYLOAD_WORD], words[HEADER_PAYLOAD_WORD + 1]) : get64(header, 32);
}

/** Lengths stay below 2^53 (the largest exact JavaScript integer): the high word's limit. */
const MAX_LENGTH_HIGH_WORD = 0x1f_ffff;

/** Stores the low 32 bits of `n` little-endian (signed and unsigned fields alike). */
function put32(out: Uint8Array, at: number, n: number): void {
  out[at] = n;
  out[at + 1] = n >>> 8;
  out[at + 2] = n >>> 16;
  out[at + 3] = n >>> 24;
}

/** A little-endian 32-bit word as a signed int32 (`>>> 0` makes it unsigned). */
function get32(b: Uint8Array, at: number): number {
  return b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24);
}

/** Stores a length below 2^53 as a little-endian u64. */
function put64(out: Uint8Array, at: number, n: number): void {
  put32(out, at, n); // put32 keeps the low 32 bits (its stores and shifts convert exactly below 2^53)
  put32(out, at + 4, Math.floor(n / 0x1_0000_0000));
}

function get64(b: Uint8Array, at: number): number {
  return length64(get32(b, at), get32(b, at + 4));
}

/** A u64 length from its two little-endian words (as signed int32s); `CORRUPT` at 2^53 or more. */
function length64(lo: number, hi: number): number {
  const high = hi >>> 0;
  // Below 2^32 (every small frame) an integer, not a double: V8 keeps what follows in integer ops.
  if (high === 0) return lo >>> 0;
  if (high > MAX_LENGTH_HIGH_WORD) throw corrupt(`a length of 2^${Math.floor(Math.log2(high)) + 32} bytes or more`);
  return high * 0x1_0000_0000 + (lo >>> 0);
}

function corrupt(what: string): VmcommError {
  return new VmcommError('CORRUPT', `invalid frame: ${what}; the channel is closed`);
}
