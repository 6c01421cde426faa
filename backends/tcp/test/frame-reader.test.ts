import { describe, expect, it } from 'vitest';
import { FRAME_HEADER_BYTES, FrameKind, emptyHeader, encodeHeader, frameLength } from '../../../lib/protocol.js';
import { CONTROL_VERSION, ControlKind, DIRECT_READ_MIN_BYTES, FrameReader, type FrameHandler } from '../frame-reader.js';
import { concatBytes as concat } from '../../../tests/helpers/bytes.js';

interface Seen {
  kind: 'frame' | 'control';
  tag: number;
  length: number;
  payload?: number[];
}

/** A handler that keeps what it sees; targets are fresh arrays unless `targets` says otherwise. */
class Recorder implements FrameHandler {
  seen: Seen[] = [];
  targets: (Uint8Array | undefined | 'fresh')[] = [];
  private current: { tag: number; length: number; target: Uint8Array | undefined } | undefined;
  begin(header: Uint8Array): Uint8Array | undefined {
    const length = frameLength(header);
    const tag = new DataView(header.buffer, header.byteOffset).getInt32(12, true);
    const choice = this.targets.length > 0 ? this.targets.shift() : 'fresh';
    const target = choice === 'fresh' ? new Uint8Array(length) : choice;
    this.current = { tag, length, target };
    return target;
  }
  commit(): void {
    const c = this.current!;
    this.seen.push({ kind: 'frame', tag: c.tag, length: c.length, payload: c.target ? [...c.target] : undefined });
    this.current = undefined;
  }
  control(header: Uint8Array): void {
    this.seen.push({ kind: 'control', tag: header[1], length: 0 });
  }
}

function frame(tag: number, payload: number[]): Uint8Array {
  const h = encodeHeader({ ...emptyHeader(), kind: FrameKind.EAGER, tag, payloadBytes: payload.length, messageBytes: payload.length }, new Uint8Array(48));
  const out = new Uint8Array(48 + payload.length);
  out.set(h);
  out.set(payload, 48);
  return out;
}

function goodbye(): Uint8Array {
  const g = new Uint8Array(FRAME_HEADER_BYTES);
  g[0] = CONTROL_VERSION;
  g[1] = ControlKind.GOODBYE;
  return g;
}

/** Delivers `stream` through read(): each read lands in whatever buffer() offers, at most `chunk` bytes. */
function pump(reader: FrameReader, stream: Uint8Array, chunk: number): void {
  let at = 0;
  while (at < stream.byteLength) {
    const into = reader.buffer();
    const n = Math.min(into.byteLength, chunk, stream.byteLength - at);
    into.set(stream.subarray(at, at + n));
    reader.read(n);
    at += n;
  }
}

describe('FrameReader', () => {
  const stream = concat([frame(1, [1, 2, 3]), frame(2, []), goodbye(), frame(3, Array.from({ length: 100 }, (_, i) => i))]);
  const expected: Seen[] = [
    { kind: 'frame', tag: 1, length: 3, payload: [1, 2, 3] },
    { kind: 'frame', tag: 2, length: 0, payload: [] },
    { kind: 'control', tag: ControlKind.GOODBYE, length: 0 },
    { kind: 'frame', tag: 3, length: 100, payload: Array.from({ length: 100 }, (_, i) => i) },
  ];

  it('parses the same frames however the stream is split into reads', () => {
    for (let chunk = 1; chunk <= stream.byteLength; chunk++) {
      const r = new Recorder();
      pump(new FrameReader(new Uint8Array(4096), r), stream, chunk);
      expect(r.seen).toEqual(expected);
    }
  });

  it('parses the same frames fed from outside buffers, split anywhere', () => {
    for (let cut = 0; cut <= stream.byteLength; cut++) {
      const r = new Recorder();
      const reader = new FrameReader(new Uint8Array(64), r);
      reader.feed(stream.subarray(0, cut));
      reader.feed(stream.subarray(cut));
      expect(r.seen).toEqual(expected);
    }
  });

  it('discards the part of a payload beyond its target, and all of it without one', () => {
    const r = new Recorder();
    const short = new Uint8Array(2);
    r.targets = [short, undefined];
    pump(new FrameReader(new Uint8Array(4096), r), concat([frame(1, [9, 8, 7, 6]), frame(2, [5, 5]), frame(3, [4])]), 3);
    expect(short).toEqual(Uint8Array.of(9, 8));
    expect(r.seen.map((s) => s.tag)).toEqual([1, 2, 3]);
    expect(r.seen[1].payload).toBeUndefined();
    expect(r.seen[2].payload).toEqual([4]);
  });

  it('reads a large payload straight into its target', () => {
    const r = new Recorder();
    const length = 3 * DIRECT_READ_MIN_BYTES + 5;
    const target = new Uint8Array(length);
    r.targets = [target];
    const reader = new FrameReader(new Uint8Array(4096), r);
    const payload = Array.from({ length }, (_, i) => (i * 7) & 0xff);
    const bytes = frame(1, payload);
    // The header and the first bytes of payload come through the pool…
    const first = reader.buffer();
    first.set(bytes.subarray(0, 100));
    reader.read(100);
    // …then the reader offers the target itself.
    const direct = reader.buffer();
    expect(direct.buffer).toBe(target.buffer);
    expect(direct.byteOffset).toBe(52);
    pump(reader, bytes.subarray(100), 10_000);
    expect(r.seen).toHaveLength(1);
    expect(Buffer.from(target).equals(Buffer.from(payload))).toBe(true);
    expect(reader.buffer().buffer).not.toBe(target.buffer);
  });

  it('reads a truncated large payload directly only as far as the target goes', () => {
    const r = new Recorder();
    const target = new Uint8Array(DIRECT_READ_MIN_BYTES * 2);
    r.targets = [target];
    const reader = new FrameReader(new Uint8Array(4096), r);
    const payload = Array.from({ length: DIRECT_READ_MIN_BYTES * 4 }, (_, i) => i & 0xff);
    const bytes = concat([frame(1, payload), frame(2, [42])]);
    const first = reader.buffer();
    first.set(bytes.subarray(0, 48));
    reader.read(48);
    expect(reader.buffer().byteLength).toBe(target.byteLength);
    pump(reader, bytes.subarray(48), 50_000);
    expect(Buffer.from(target).equals(Buffer.from(payload.slice(0, target.byteLength)))).toBe(true);
    expect(r.seen.map((s) => s.tag)).toEqual([1, 2]);
    expect(r.seen[1].payload).toEqual([42]);
  });

  it('computes the payload length exactly as frameLength does', () => {
    for (const length of [0, 1, 255, 256, 65_535, 65_536, 2 ** 31, 2 ** 32 + 7, 2 ** 53 - 1]) {
      const h = encodeHeader({ ...emptyHeader(), payloadBytes: length, messageBytes: length }, new Uint8Array(48));
      let seen = -1;
      const reader = new FrameReader(new Uint8Array(64), {
        begin: (header) => {
          seen = frameLength(header);
          return undefined;
        },
        commit: () => undefined,
        control: () => undefined,
      });
      reader.feed(h);
      expect(seen).toBe(length);
      expect(reader.buffer().byteLength).toBe(64); // still discarding into the pool
    }
  });

  it('throws CORRUPT for a length beyond 2^53 and for a control frame with a payload', () => {
    const h = new Uint8Array(48);
    h[0] = 1;
    h[1] = FrameKind.EAGER;
    h.fill(0xff, 32, 40);
    expect(() => new FrameReader(new Uint8Array(64), new Recorder()).feed(h)).toThrow(expect.objectContaining({ name: 'VmcommError', code: 'CORRUPT' }));
    const g = goodbye();
    g[32] = 1;
    expect(() => new FrameReader(new Uint8Array(64), new Recorder()).feed(g)).toThrow(expect.objectContaining({ name: 'VmcommError', code: 'CORRUPT' }));
  });

  it('makes no handler call after stop()', () => {
    const r = new Recorder();
    const reader = new FrameReader(new Uint8Array(64), r);
    reader.feed(frame(1, [1]).subarray(0, 30));
    reader.stop();
    reader.feed(concat([frame(1, [1]).subarray(30), frame(2, [2])]));
    expect(r.seen).toEqual([]);
  });
});
