// The stream protocol's pure parts: tags, control messages, the credit rule, how writes become messages.
import { describe, expect, it } from 'vitest';
import { TAG_UB } from '../../../lib/constants.js';
import { controlTag, dataTag, decodeControl, encodeControl, Outbox, shouldGrant, STREAM_TAG_UB, type ControlMessage, type OutMessage } from '../../../adapters/stream/protocol.js';

describe('stream protocol: tags', () => {
  it('stream tag t uses 2t (data) and 2t + 1 (control), all within TAG_UB', () => {
    expect([dataTag(0), controlTag(0), dataTag(7), controlTag(7)]).toEqual([0, 1, 14, 15]);
    expect(controlTag(STREAM_TAG_UB)).toBeLessThanOrEqual(TAG_UB);
    expect(controlTag(STREAM_TAG_UB + 1)).toBeGreaterThan(TAG_UB);
  });
});

describe('stream protocol: control messages', () => {
  it('round-trip', () => {
    const all: ControlMessage[] = [
      { kind: 'credit', upTo: 12, chunkBytes: 65_536 },
      { kind: 'close', sent: 0 },
      { kind: 'reset', sent: 3, reason: 'boom' },
    ];
    for (const m of all) expect(decodeControl(encodeControl(m))).toEqual(m);
    expect(decodeControl([1, 5n, 1024n])).toEqual({ kind: 'credit', upTo: 5, chunkBytes: 1024 });
  });

  it('anything malformed is CORRUPT', () => {
    for (const bad of [undefined, 'x', [], [9, 1], [1, -1, 10], [1, 1, 0], [1, 1.5, 10], [2], [2, 1, 2], [3, 1], [3, 1, 5], { kind: 1 }]) {
      expect(() => decodeControl(bad), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
    }
  });
});

describe('stream protocol: when credits are granted', () => {
  it('in batches of about half a window while data flows', () => {
    const window = 8;
    let granted = window;
    let advertised = window; // the opening grant
    let received = 0;
    const batches: number[] = [];
    for (let i = 0; i < 40; i++) {
      received++; // a message is taken, its receive re-posted
      granted++;
      if (shouldGrant(granted, advertised, received, window)) {
        batches.push(granted - advertised);
        advertised = granted;
      }
    }
    expect(batches.every((b) => b === 4)).toBe(true);
    // The sender never runs dry: its allowance (advertised − received) stays ≥ half a window − 1.
  });

  it('at once when the sender may have run dry, never when there is nothing new', () => {
    expect(shouldGrant(5, 4, 4, 4)).toBe(true); // a paused reader resumes one chunk at a time
    expect(shouldGrant(4, 4, 0, 4)).toBe(false);
    expect(shouldGrant(1, 0, 0, 1)).toBe(true); // window 1: every message
    expect(shouldGrant(2, 1, 1, 1)).toBe(true);
    expect(shouldGrant(4, 0, 0, 4)).toBe(true); // the opening grant
  });
});

describe('stream protocol: how writes become messages (Outbox)', () => {
  const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill);
  /** Sends everything with unlimited credits; `flush` at the end, as the stream does at the end of a tick. */
  const drain = (box: Outbox, writes: Uint8Array[][], max: number) => {
    const out: OutMessage[] = [];
    for (const w of writes) {
      box.write(w);
      for (let m = box.next(max, false); m; m = box.next(max, false)) out.push(m);
      expect(box.consumed).toBe(true); // every chunk copied or handed out: the write is acknowledged
    }
    for (let m = box.next(max, true); m; m = box.next(max, true)) out.push(m);
    expect(box.gathered).toBe(0);
    return out;
  };
  const joined = (parts: Uint8Array[]) => Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));

  it('a write longer than a message goes out in place, as views of at most max bytes', () => {
    const big = bytes(10_000, 1);
    const out = drain(new Outbox(), [[big]], 4096);
    expect(out.map((m) => [m.bytes.byteLength, m.borrowed])).toEqual([[4096, true], [4096, true], [1808, true]]);
    for (const m of out) expect(m.bytes.buffer).toBe(big.buffer); // no copy
  });

  it('writes that fit are copied and gathered up to max; a long one in between goes out in place, in order', () => {
    const small = Array.from({ length: 10 }, (_, i) => bytes(100, i));
    const large = bytes(1000, 99);
    const out = drain(new Outbox(), [small.slice(0, 5), [large], small.slice(5)], 300);
    expect(out.map((m) => [m.bytes.byteLength, m.borrowed])).toEqual([[300, false], [200, false], [300, true], [300, true], [300, true], [100, true], [300, false], [200, false]]);
    expect(out[0].bytes.buffer).not.toBe(small[0].buffer);
    expect(out[2].bytes.buffer).toBe(large.buffer);
    expect(joined(out.map((m) => m.bytes)).equals(joined([...small.slice(0, 5), large, ...small.slice(5)]))).toBe(true);
  });

  it('a gathered message waits for more writes until it is full or flushed', () => {
    const box = new Outbox();
    box.write([bytes(10, 1)]);
    expect(box.next(100, false)).toBeUndefined(); // copied, acknowledged, not sent yet
    expect([box.consumed, box.gathered]).toEqual([true, 10]);
    box.write([bytes(95, 2)]); // does not fit beside it: the first goes now
    expect(box.next(100, false)?.bytes.byteLength).toBe(10);
    expect(box.next(100, false)).toBeUndefined();
    expect(box.next(100, true)?.bytes.byteLength).toBe(95);
  });

  it('reuses a gathered message’s buffer once it has arrived; drop forgets what is unsent', () => {
    let allocations = 0;
    const box = new Outbox((n) => (allocations++, new Uint8Array(n)));
    for (let i = 0; i < 5; i++) {
      box.write([bytes(50, i)]);
      const m = box.next(100, true)!;
      expect(m.bytes[0]).toBe(i);
      box.recycle(m);
    }
    expect(allocations).toBe(1);
    box.write([bytes(30, 1), bytes(500, 2)]);
    box.absorb(100);
    expect(box.drop()).toBe(530);
    expect([box.consumed, box.gathered, box.next(100, true)]).toEqual([true, 0, undefined]);
  });

  it('gather buffers start small and grow to a whole message while small writes keep coming', () => {
    const sizes: number[] = [];
    const box = new Outbox((n) => (sizes.push(n), new Uint8Array(n)));
    const out = drain(box, Array.from({ length: 300 }, (_, i) => [bytes(10 * 1024, i)]), 1024 * 1024);
    expect(sizes.slice(0, 5)).toEqual([64, 128, 256, 512, 1024].map((k) => k * 1024));
    expect(out.slice(0, 5).map((m) => m.bytes.byteLength / 10240)).toEqual([6, 12, 25, 51, 102]);
    expect(out.every((m) => !m.borrowed)).toBe(true);
  });

  it('keeps every byte in order for random mixes', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let round = 0; round < 50; round++) {
      const writes = Array.from({ length: 1 + Math.floor(rnd() * 10) }, (_, i) => Array.from({ length: 1 + Math.floor(rnd() * 3) }, (_, j) => bytes(Math.floor(rnd() ** 3 * 20_000), (round + i + j) & 0xff)));
      const max = 1 + Math.floor(rnd() * 8192);
      const out = drain(new Outbox(), writes, max);
      expect(out.every((m) => m.bytes.byteLength > 0 && m.bytes.byteLength <= max)).toBe(true);
      expect(joined(out.map((m) => m.bytes)).equals(joined(writes.flat()))).toBe(true);
    }
  });
});
