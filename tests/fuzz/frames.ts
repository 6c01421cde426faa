/**
 * fast-check arbitraries for vmcomm frames, built from the real encoder (`lib/protocol.ts`,
 * `lib/codec.ts`): plausible frames (small ids, so they often hit live requests), and mutations of
 * them — bit flips, wrong versions, unknown kinds, huge lengths (2^32, 2^53, 2^64 − 1…), truncation,
 * garbage msgpack in object frames, spliced bytes — as a broken or hostile peer would send them.
 */

import fc from 'fast-check';
import { ValueCodec } from '../../lib/codec.js';
import { emptyHeader, encodeHeader, FRAME_HEADER_BYTES, FrameFlags, FrameKind, type FrameHeader } from '../../lib/protocol.js';
import { concatBytes } from '../helpers/bytes.js';

const codec = new ValueCodec();

/** A frame before serialization: its header fields and its payload. */
export interface FrameSpec {
  readonly header: FrameHeader;
  readonly payload: Uint8Array;
}

/** Lengths a corrupted header may announce: around the 2^32 and 2^53 edges and beyond. */
export const HUGE_LENGTHS: readonly bigint[] = [
  2n ** 31n,
  2n ** 31n + 1n,
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 32n + 8n,
  2n ** 40n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 53n + 1n,
  2n ** 63n,
  2n ** 64n - 1n,
];

/** Writes `n` (a u64) little-endian at `at`. */
export function setU64(bytes: Uint8Array, at: number, n: bigint): void {
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setBigUint64(at, BigInt.asUintN(64, n), true);
}

/** A small id most of the time (so CTS/DATA/CANCEL frames name live requests), sometimes any u32. */
const id = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 4 }) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff_ffff }) });

/** A value to send as an object frame. */
const objectValue = fc.oneof(
  fc.integer(),
  fc.string({ maxLength: 16 }),
  fc.array(fc.integer(), { maxLength: 6 }),
  fc.record({ a: fc.integer(), b: fc.string({ maxLength: 4 }) }),
  fc.float64Array({ maxLength: 4 }),
  fc.bigInt(),
);

/**
 * A plausible frame from `source` (a communicator rank) in context `context`: every kind, with its
 * usual flags and lengths, payloads up to `maxPayload` bytes (object payloads are real msgpack).
 */
export function frameSpec(o: { sources: readonly number[]; contexts: readonly number[]; maxPayload: number }): fc.Arbitrary<FrameSpec> {
  const base = fc.record({
    context: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...o.contexts) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff_ffff }) }),
    source: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...o.sources) }, { weight: 1, arbitrary: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) }),
    tag: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 3 }) }, { weight: 1, arbitrary: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) }),
    seq: id,
    sendId: id,
    recvId: id,
    aux: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 16 }) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff_ffff }) }),
  });
  const eager = fc.tuple(base, fc.oneof(fc.uint8Array({ maxLength: o.maxPayload }).map((p) => ({ flags: 0, p })), objectValue.map((v) => ({ flags: FrameFlags.OBJECT, p: codec.encode(v) })))).map(
    ([b, { flags, p }]): FrameSpec => ({ header: { ...emptyHeader(), ...b, kind: FrameKind.EAGER, flags, payloadBytes: p.byteLength, messageBytes: p.byteLength }, payload: p }),
  );
  const rts = fc.tuple(base, fc.constantFrom(0, FrameFlags.OBJECT), fc.integer({ min: 0, max: 4 * o.maxPayload })).map(
    ([b, flags, n]): FrameSpec => ({ header: { ...emptyHeader(), ...b, kind: FrameKind.RTS, flags, payloadBytes: 0, messageBytes: n }, payload: new Uint8Array(0) }),
  );
  const data = fc.tuple(base, fc.uint8Array({ maxLength: 4 * o.maxPayload }), fc.boolean()).map(
    ([b, p, withdrawn]): FrameSpec =>
      withdrawn
        ? { header: { ...emptyHeader(), ...b, kind: FrameKind.DATA, flags: FrameFlags.WITHDRAWN, payloadBytes: 0, messageBytes: p.byteLength }, payload: new Uint8Array(0) }
        : { header: { ...emptyHeader(), ...b, kind: FrameKind.DATA, flags: 0, payloadBytes: p.byteLength, messageBytes: p.byteLength }, payload: p },
  );
  const control = fc.tuple(base, fc.constantFrom(FrameKind.CTS, FrameKind.CREDIT, FrameKind.RTS_CANCEL, FrameKind.CANCEL_REPLY)).map(
    ([b, kind]): FrameSpec => ({ header: { ...emptyHeader(), ...b, kind, flags: 0, payloadBytes: 0, messageBytes: 0 }, payload: new Uint8Array(0) }),
  );
  return fc.oneof({ weight: 4, arbitrary: eager }, { weight: 2, arbitrary: rts }, { weight: 2, arbitrary: data }, { weight: 2, arbitrary: control });
}

/** The bytes of one frame as a transport carries it: the header, then the payload. */
export function frameBytes(f: FrameSpec): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + f.payload.byteLength);
  encodeHeader(f.header, out);
  out.set(f.payload, FRAME_HEADER_BYTES);
  return out;
}

/** One change to a frame's bytes. */
export type Mutation =
  | { readonly kind: 'flip'; readonly at: number; readonly bit: number }
  | { readonly kind: 'byte'; readonly at: number; readonly value: number }
  | { readonly kind: 'version'; readonly value: number }
  | { readonly kind: 'kind'; readonly value: number }
  | { readonly kind: 'length'; readonly field: 'payload' | 'message' | 'both'; readonly value: bigint }
  | { readonly kind: 'truncate'; readonly keep: number }
  | { readonly kind: 'garbage-payload'; readonly bytes: Uint8Array }
  | { readonly kind: 'splice'; readonly at: number; readonly bytes: Uint8Array };

/** Mutations, weighted towards the header (where a transport and the core must validate). */
export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat({ max: FRAME_HEADER_BYTES - 1 }), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat({ max: FRAME_HEADER_BYTES + 16 }), value: fc.nat({ max: 255 }) }),
  // 0xff is the tcp control version: a control frame with a payload, or an unknown control kind.
  fc.record({ kind: fc.constant('version' as const), value: fc.oneof(fc.constantFrom(0, 2, 0x7f, 0xfe, 0xff), fc.nat({ max: 255 })) }),
  fc.record({ kind: fc.constant('kind' as const), value: fc.oneof(fc.constantFrom(0, 8, 9, 0x80, 0xff), fc.nat({ max: 255 })) }),
  fc.record({
    kind: fc.constant('length' as const),
    field: fc.constantFrom('payload' as const, 'message' as const, 'both' as const),
    value: fc.oneof(fc.constantFrom(...HUGE_LENGTHS), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 256n })),
  }),
  fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat({ max: FRAME_HEADER_BYTES + 64 }) }),
  fc.record({ kind: fc.constant('garbage-payload' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 48 }) }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat({ max: FRAME_HEADER_BYTES + 16 }), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
);

/**
 * Applies `m` to a frame's bytes. `garbage-payload` keeps a consistent header (object flag set, the
 * new length in both length fields), so the frame passes the transport and the header checks and
 * only the value decoder can notice.
 */
export function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  const b = Uint8Array.from(bytes);
  switch (m.kind) {
    case 'flip':
      if (m.at < b.byteLength) b[m.at] ^= 1 << m.bit;
      return b;
    case 'byte':
      if (m.at < b.byteLength) b[m.at] = m.value;
      return b;
    case 'version':
      if (b.byteLength > 0) b[0] = m.value;
      return b;
    case 'kind':
      if (b.byteLength > 1) b[1] = m.value;
      return b;
    case 'length':
      if (b.byteLength < FRAME_HEADER_BYTES) return b;
      if (m.field !== 'message') setU64(b, 32, m.value);
      if (m.field !== 'payload') setU64(b, 40, m.value);
      return b;
    case 'truncate':
      return b.slice(0, Math.min(m.keep, b.byteLength));
    case 'garbage-payload': {
      if (b.byteLength < FRAME_HEADER_BYTES) return b;
      const out = new Uint8Array(FRAME_HEADER_BYTES + m.bytes.byteLength);
      out.set(b.subarray(0, FRAME_HEADER_BYTES));
      out[1] = FrameKind.EAGER;
      out[2] |= FrameFlags.OBJECT;
      setU64(out, 32, BigInt(m.bytes.byteLength));
      setU64(out, 40, BigInt(m.bytes.byteLength));
      out.set(m.bytes, FRAME_HEADER_BYTES);
      return out;
    }
    case 'splice': {
      const at = Math.min(m.at, b.byteLength);
      const out = new Uint8Array(b.byteLength + m.bytes.byteLength);
      out.set(b.subarray(0, at));
      out.set(m.bytes, at);
      out.set(b.subarray(at), at + m.bytes.byteLength);
      return out;
    }
  }
}

/**
 * True when `m`, alone on the first frame of a stream, makes that header certainly invalid, so the
 * channel must close as CORRUPT. (Version 0xff is tcp's control version: with kind 1 and no payload
 * it is a genuine goodbye.)
 */
export function certainlyCorrupt(m: Mutation): boolean {
  if (m.kind === 'version') return m.value !== 1 && m.value !== 0xff;
  // Kind 8 (PATH) is valid on the wire, but the world's ordered inbound layer consumes it: these
  // harnesses feed an engine directly, which takes it for corrupt.
  if (m.kind === 'kind') return m.value === 0 || m.value > 7;
  if (m.kind === 'length') return m.value >= 2n ** 53n;
  return false;
}

/** One frame of a stream: plausible, and sometimes mutated. */
export interface StreamFrame {
  readonly spec: FrameSpec;
  readonly mutations: readonly Mutation[];
}

/**
 * A stream of frames, some mutated, as the bytes a peer writes. Messages (EAGER, RTS) mostly carry
 * the pair's next sequence number, as a real peer's do: the core refuses one older than the last
 * (CORRUPT), so random numbers would end most streams at their second message. One in eight keeps
 * the number it was drawn with, which may be older.
 */
export function frameStream(o: { sources: readonly number[]; contexts: readonly number[]; maxPayload: number; maxFrames: number }): fc.Arbitrary<StreamFrame[]> {
  const frame = fc.record({
    spec: frameSpec(o),
    mutations: fc.oneof({ weight: 2, arbitrary: fc.constant([] as Mutation[]) }, { weight: 3, arbitrary: fc.array(mutation, { minLength: 1, maxLength: 3 }) }),
    inSequence: fc.oneof({ weight: 7, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  });
  return fc.array(frame, { minLength: 1, maxLength: o.maxFrames }).map((frames) => {
    let next = 0;
    return frames.map(({ spec, mutations, inSequence }): StreamFrame => {
      const { kind } = spec.header;
      if (!inSequence || (kind !== FrameKind.EAGER && kind !== FrameKind.RTS)) return { spec, mutations };
      return { spec: { header: { ...spec.header, seq: next++ }, payload: spec.payload }, mutations };
    });
  });
}

/** The bytes of a stream. */
export function streamBytes(frames: readonly StreamFrame[]): Uint8Array {
  return concatBytes(frames.map((f) => f.mutations.reduce((b, m) => mutate(b, m), frameBytes(f.spec))));
}

/** Where a byte stream is cut into reads: sorted offsets inside it. */
export function cuts(length: number, fractions: readonly number[]): number[] {
  return [...new Set(fractions.map((f) => Math.floor(f * length)))].filter((c) => c > 0 && c < length).sort((a, b) => a - b);
}
