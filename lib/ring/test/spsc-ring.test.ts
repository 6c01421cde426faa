import { describe, expect, it, vi } from 'vitest';
import { FRAME_HEADER_BYTES } from '../../protocol.js';
import { RECORD_ALIGN_BYTES, RECORD_PREFIX_BYTES, RING_CONTROL_BYTES, RING_DATA_SKEW_BYTES, RING_HEADER_BYTES, RingConsumer, RingProducer, ringDataBytes, ringRegionBytes } from '../spsc-ring.js';
import { bytes, header, recordingSink, ringRegion, runTsWorker, startAt } from './helpers.js';

/** Prefix, header and payload, padded to a multiple of 64. */
const record = (n: number) => Math.ceil((RECORD_PREFIX_BYTES + FRAME_HEADER_BYTES + n) / RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES;

/** Alternates flush and poll until the producer's queue is empty (bounded). */
function drain(p: RingProducer, c: RingConsumer, sink: ReturnType<typeof recordingSink>): void {
  for (let i = 0; i < 1_000_000 && (p.queued > 0 || c.available() > 0 || c.midFrame); i++) {
    c.poll(sink, 1, 1000);
    p.flush();
  }
  expect(p.queued).toBe(0);
}

describe('spsc ring', () => {
  it('lays the data area out 32 bytes into a cache line, in a region of whole lines', () => {
    expect(RING_HEADER_BYTES % 64).toBe(RING_DATA_SKEW_BYTES);
    expect(RING_DATA_SKEW_BYTES).toBe(32);
    for (const d of [256, 4096, 1 << 20]) {
      expect(ringRegionBytes(d) % 64).toBe(0);
      expect(ringDataBytes(ringRegionBytes(d))).toBe(d);
    }
    // Records, at stream positions 64k, start 32 bytes into a line of a line-aligned region.
    const region = ringRegion(256);
    expect(region.byteOffset % 64).toBe(0);
    const p = new RingProducer(region);
    for (let k = 0; k < 3; k++) {
      p.send(header(8, k), bytes(8, k), undefined);
      const at = region.byteOffset + RING_HEADER_BYTES + 64 * k;
      expect(at % 64).toBe(32);
      expect(new Int32Array(region.sab, at, 1)[0]).toBe(((k + 1) << 1) | 1);
    }
  });

  it('a reader waiting for a record loads its stamp and its last word, which sit in different cache lines', () => {
    // The second load's result is unused: an edit must not drop it as dead code (see RingConsumer.poll).
    const region = ringRegion(256);
    const p = new RingProducer(region);
    const c = new RingConsumer(region);
    const sink = recordingSink();
    p.send(header(8, 0), bytes(8, 0), undefined);
    c.poll(sink, 0, 10);
    const load = Atomics.load;
    const loaded: number[] = [];
    const spy = vi.spyOn(Atomics, 'load').mockImplementation(((a: Int32Array, i: number) => {
      if (a.buffer === region.sab) loaded.push(a.byteOffset + 4 * i);
      return load(a, i);
    }) as typeof Atomics.load);
    try {
      expect(c.poll(sink, 0, 10)).toBe(0);
    } finally {
      spy.mockRestore();
    }
    // The next record starts at stream position 64.
    const stampAt = region.byteOffset + RING_HEADER_BYTES + 64;
    const lastWordAt = stampAt + RECORD_ALIGN_BYTES - 4;
    expect(loaded).toEqual([stampAt, lastWordAt]);
    expect(Math.floor(stampAt / 64)).not.toBe(Math.floor(lastWordAt / 64));
    expect(sink.frames.map((f) => f.id)).toEqual([0]);
  });

  it('that second load stays in the ring from a tail off the record grid, in the last line of the data area', () => {
    // Shared memory gone wrong: a tail 4 bytes before the end. Unmasked, the record's "last word"
    // would lie beyond the data area (a RangeError, not CORRUPT).
    const D = 256;
    const region = ringRegion(D);
    startAt(region, D - 4);
    const c = new RingConsumer(region);
    expect(c.poll(recordingSink(), 0, 10)).toBe(0);
  });

  it('carries frames across the wrap point at every record offset, in u32 stream positions too', () => {
    const D = 256;
    const starts = [...Array.from({ length: D / 64 }, (_, k) => k * 64), 2 ** 32 - 64, 2 ** 32 - 128, 2 ** 31];
    for (const start of starts) {
      // 136: the record fills what the ring holds (D − 64) exactly; a payload wraps at starts 128 and 192.
      for (const n of [0, 1, 7, 8, 9, 40, 72, 100, 136]) {
        const region = ringRegion(D);
        startAt(region, start);
        const p = new RingProducer(region);
        const c = new RingConsumer(region);
        const sink = recordingSink();
        const payload = bytes(n, start + n);
        let done = 0;
        p.send(header(n, 5), payload, () => done++);
        expect(done).toBe(1);
        expect(c.poll(sink, 3, 10)).toBe(1);
        expect(sink.frames).toHaveLength(1);
        expect(sink.frames[0]).toMatchObject({ peer: 3, id: 5, length: n });
        expect(Buffer.compare(sink.frames[0].data, payload)).toBe(0);
        expect(c.available()).toBe(0);
        expect(c.position).toBe((start + record(n)) >>> 0);
      }
    }
  });

  it('fits a frame that exactly fills the ring; the next waits until it is read', () => {
    const D = 256;
    const region = ringRegion(D);
    const p = new RingProducer(region);
    const c = new RingConsumer(region);
    const sink = recordingSink();
    // The ring holds D − 64 bytes: the rest keeps the next record's stamp word clear.
    const n = D - RECORD_ALIGN_BYTES - RECORD_PREFIX_BYTES - FRAME_HEADER_BYTES;
    const dones: number[] = [];
    p.send(header(n, 1), bytes(n, 1), () => dones.push(1));
    expect(dones).toEqual([1]);
    expect(p.unread).toBe(D - RECORD_ALIGN_BYTES);
    p.send(header(8, 2), bytes(8, 2), () => dones.push(2));
    expect(dones).toEqual([1]);
    expect(p.queued).toBe(1);
    expect(p.waiting).toBe(true);
    expect(c.poll(sink, 0, 10)).toBe(1);
    // The producer asked to be woken; the consumer freed space and says so.
    expect(c.producerWantsWake).toBe(true);
    p.flush();
    expect(dones).toEqual([1, 2]);
    expect(p.waiting).toBe(false);
    expect(c.poll(sink, 0, 10)).toBe(1);
    expect(sink.frames.map((f) => f.id)).toEqual([1, 2]);
    expect(Buffer.compare(sink.frames[0].data, bytes(n, 1))).toBe(0);
  });

  it('streams payloads bigger than the ring: one begin, pieces into the target, one commit, done after the last piece', () => {
    for (const D of [256, 4096]) {
      for (const n of [D, D * 3 + 5, 100_003]) {
        const region = ringRegion(D);
        const p = new RingProducer(region);
        const c = new RingConsumer(region);
        const sink = recordingSink();
        const payload = bytes(n, n);
        let done = 0;
        p.send(header(n, 9), payload, () => done++);
        expect(done).toBe(0);
        let pieces = 0;
        while (p.queued > 0) {
          const before = c.position;
          c.poll(sink, 2, 10);
          if (c.position !== before) pieces++;
          expect(sink.begins).toBe(1);
          if (p.queued > 0) expect(sink.frames).toHaveLength(0);
          p.flush();
        }
        expect(done).toBe(1);
        if (c.poll(sink, 2, 10) > 0) pieces++;
        expect(sink.frames).toHaveLength(1);
        expect(pieces).toBeGreaterThan(1);
        expect(Buffer.compare(sink.frames[0].data, payload)).toBe(0);
      }
    }
  });

  it('discards what does not fit the target, and everything when there is none; the next frame is intact', () => {
    const region = ringRegion(512);
    const p = new RingProducer(region);
    const c = new RingConsumer(region);
    let which = 0;
    const sink = recordingSink((n) => (which++ === 0 ? new Uint8Array(Math.min(n, 10)) : which === 2 ? undefined : new Uint8Array(n)));
    const big = bytes(3000, 4);
    p.send(header(3000, 1), big, undefined);
    p.send(header(3000, 2), big, undefined);
    p.send(header(16, 3), bytes(16, 3), undefined);
    drain(p, c, sink);
    expect(sink.frames.map((f) => [f.id, f.data.byteLength])).toEqual([
      [1, 10],
      [2, 0],
      [3, 16],
    ]);
    expect(Buffer.compare(sink.frames[0].data, big.subarray(0, 10))).toBe(0);
    expect(Buffer.compare(sink.frames[2].data, bytes(16, 3))).toBe(0);
  });

  it('carries zero-length frames (header only, no payload object)', () => {
    const region = ringRegion(256);
    const p = new RingProducer(region);
    const c = new RingConsumer(region);
    const sink = recordingSink();
    for (let i = 0; i < 20; i++) p.send(header(0, i), i % 2 ? undefined : new Uint8Array(0), undefined);
    drain(p, c, sink);
    expect(sink.frames.map((f) => f.id)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(sink.frames.every((f) => f.length === 0)).toBe(true);
  });

  it('keeps 1,000 small frames in order through a ring that keeps filling, each done called once, in order', () => {
    const region = ringRegion(1024);
    const p = new RingProducer(region);
    const c = new RingConsumer(region);
    const sink = recordingSink();
    const dones: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const n = i % 37;
      p.send(header(n, i), bytes(n, i), () => dones.push(i));
      if (i % 50 === 49) c.poll(sink, 0, 7);
    }
    drain(p, c, sink);
    expect(dones).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(sink.frames.map((f) => f.id)).toEqual(dones);
    for (const f of sink.frames) expect(Buffer.compare(f.data, bytes(f.id % 37, f.id))).toBe(0);
  });

  it('calls done when the payload is in the ring, after the publish, and lets done send again', () => {
    const region = ringRegion(256);
    let published = 0;
    const order: string[] = [];
    const p = new RingProducer(region, () => {
      published++;
      order.push('publish');
    });
    const c = new RingConsumer(region);
    const sink = recordingSink();
    p.send(header(8, 1), bytes(8, 1), () => {
      order.push('done 1');
      // Re-entrant send from a done.
      p.send(header(8, 2), bytes(8, 2), () => order.push('done 2'));
    });
    expect(order).toEqual(['publish', 'done 1', 'publish', 'done 2']);
    // A queued frame: done only when its last piece is written.
    p.send(header(600, 3), bytes(600, 3), () => order.push('done 3'));
    expect(order.at(-1)).not.toBe('done 3');
    drain(p, c, sink);
    expect(order.at(-1)).toBe('done 3');
    expect(published).toBeGreaterThan(3);
    expect(sink.frames.map((f) => f.id)).toEqual([1, 2, 3]);
  });

  it('a consumer that gives the ring up is told from one that closed it, and a later close does not hide it', () => {
    const region = ringRegion(256);
    const p = new RingProducer(region);
    const closed = new RingConsumer(region);
    closed.close();
    expect([p.consumerClosed, p.consumerDropped]).toEqual([true, false]);
    closed.close(true);
    closed.close();
    expect([p.consumerClosed, p.consumerDropped]).toEqual([true, true]);
  });

  it('failQueued fails waiting frames with the error, once each', () => {
    const region = ringRegion(256);
    const p = new RingProducer(region);
    const results: (Error | undefined)[] = [];
    p.send(header(100, 1), bytes(100, 1), (e) => results.push(e));
    p.send(header(100, 2), bytes(100, 2), (e) => results.push(e));
    p.send(header(100, 3), bytes(100, 3), (e) => results.push(e));
    const err = new Error('gone');
    p.failQueued(err);
    expect(results).toEqual([undefined, err, err]);
    expect(p.queued).toBe(0);
  });

  describe('corrupt shared state → CORRUPT, no out-of-bounds access, no hang', () => {
    const ctlOf = (region: { sab: SharedArrayBuffer; byteOffset: number }) => new Int32Array(region.sab, region.byteOffset, RING_CONTROL_BYTES / 4);
    const CORRUPT = { name: 'VmcommError', code: 'CORRUPT' };

    it('refuses a region 64 bytes short of its data size (the size before layout 3, 512 + D) whatever its header says', () => {
      const sab = new SharedArrayBuffer(64 + 512 + 1024);
      const region = { sab, byteOffset: 64, byteLength: 512 + 1024 };
      const ctl = ctlOf(region);
      Atomics.store(ctl, 0, 0x4752_4d56);
      Atomics.store(ctl, 1, 3);
      Atomics.store(ctl, 2, 1024);
      expect(() => new RingConsumer(region)).toThrow(expect.objectContaining({ ...CORRUPT, message: expect.stringMatching(/1024 data bytes in a 1536-byte region/) }));
      expect(() => new RingProducer(region)).toThrow(expect.objectContaining(CORRUPT));
    });

    it('refuses a bad layout word', () => {
      for (const [word, value] of [
        [0, 0x12345678],
        [1, 99],
        [2, 1000],
        [2, 512],
        [2, -1],
      ] as const) {
        const region = ringRegion(256);
        Atomics.store(ctlOf(region), word, value);
        expect(() => new RingConsumer(region)).toThrow(expect.objectContaining(CORRUPT));
        expect(() => new RingProducer(region)).toThrow(expect.objectContaining(CORRUPT));
      }
    });

    it('refuses a word at a record boundary that is not its stamp, a whole record bigger than the ring, a streamed one with a head more than a ring ahead or short of its header, an impossible length', () => {
      // The record at position 0: stamp 3 says whole, 2 streamed (see the module comment).
      const stamped = (stamp: number, length: number) => (data: Uint8Array) => {
        new Int32Array(data.buffer, data.byteOffset, 1)[0] = stamp;
        data[RECORD_PREFIX_BYTES] = 1; // version
        data[RECORD_PREFIX_BYTES + 1] = 1; // kind
        new DataView(data.buffer, data.byteOffset).setUint32(RECORD_PREFIX_BYTES + 32, length, true);
      };
      const cases: ((ctl: Int32Array, data: Uint8Array) => void)[] = [
        (_, data) => (data[0] = 5), // the stamp of position 128
        (_, data) => (data[0] = 0xff), // no record's stamp
        (_, data) => stamped(3, 1000)(data), // whole, but bigger than the ring
        (ctl, data) => {
          stamped(2, 1000)(data);
          Atomics.store(ctl, 32, 257);
        },
        (ctl, data) => {
          stamped(2, 1000)(data);
          Atomics.store(ctl, 32, -8);
        },
        (ctl, data) => {
          stamped(2, 1000)(data);
          Atomics.store(ctl, 32, 40);
        },
        (ctl, data) => {
          stamped(2, 0)(data);
          data[RECORD_PREFIX_BYTES + 39] = 0xff; // length ≥ 2^56
          Atomics.store(ctl, 32, 64);
        },
      ];
      for (const set of cases) {
        const region = ringRegion(256);
        const c = new RingConsumer(region);
        set(ctlOf(region), new Uint8Array(region.sab, region.byteOffset + RING_HEADER_BYTES, 256));
        const sink = recordingSink();
        expect(() => c.poll(sink, 0, 10)).toThrow(expect.objectContaining(CORRUPT));
      }
    });

    it('finds records by their stamps, not the head word: a head that moved with no stamp delivers nothing', () => {
      const region = ringRegion(256);
      const c = new RingConsumer(region);
      Atomics.store(ctlOf(region), 32, 128);
      const sink = recordingSink();
      expect(c.poll(sink, 0, 10)).toBe(0);
      expect(sink.begins).toBe(0);
    });

    it('a reader past the head word (it reads whole records by their stamps; a failed flush left the head word behind) counts nothing unread', () => {
      const region = ringRegion(256);
      const p = new RingProducer(region);
      const c = new RingConsumer(region);
      const sink = recordingSink();
      p.send(header(8, 1), bytes(8, 1), undefined);
      Atomics.store(ctlOf(region), 32, 0); // as if the head store never ran
      expect(c.poll(sink, 0, 10)).toBe(1);
      expect(c.available()).toBe(0);
    });

    it('a producer clears the next record’s stamp word before it publishes: stale bytes of an earlier lap are never read as a record', () => {
      const region = ringRegion(256);
      const data32 = new Int32Array(region.sab, region.byteOffset + RING_HEADER_BYTES, 64);
      // Bytes an earlier lap left everywhere: each boundary holds the stamp a record there would have.
      for (let at = 0; at < 256; at += 64) data32[at >> 2] = (((at >>> 6) + 1) << 1) | 1;
      data32[0] = 0;
      const p = new RingProducer(region);
      const c = new RingConsumer(region);
      const sink = recordingSink();
      p.send(header(8, 1), bytes(8, 1), undefined);
      expect(c.poll(sink, 0, 10)).toBe(1);
      // Without the clear, the stale stamp at 64 would pass for a second record here.
      expect(c.poll(sink, 0, 10)).toBe(0);
      expect(sink.frames.map((f) => f.id)).toEqual([1]);
    });

    it('a producer refuses a tail that is not behind its head', () => {
      const region = ringRegion(256);
      const p = new RingProducer(region);
      p.send(header(200, 1), bytes(200, 1), undefined);
      Atomics.store(ctlOf(region), 64, 5000);
      expect(() => p.send(header(200, 2), bytes(200, 2), undefined)).toThrow(expect.objectContaining(CORRUPT));
    });

    it('survives random garbage: every poll returns or throws CORRUPT, quickly', () => {
      let seed = 12345;
      const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 2 ** 24;
      for (let round = 0; round < 300; round++) {
        const region = ringRegion(256);
        const c = new RingConsumer(region);
        const sink = recordingSink((n) => new Uint8Array(Math.min(n, 1 << 16)));
        const all = new Uint8Array(region.sab, region.byteOffset, region.byteLength);
        for (let k = 0; k < 20; k++) {
          for (let j = 0; j < 16; j++) all[RING_HEADER_BYTES + Math.floor(rnd() * 256)] = Math.floor(rnd() * 256);
          if (rnd() < 0.5) all[RING_HEADER_BYTES + Math.floor(rnd() * 256)] = 1; // often a valid version byte
          Atomics.store(ctlOf(region), 32, Math.floor(rnd() * 600) - 50);
          try {
            c.poll(sink, 0, 100);
          } catch (e) {
            expect(e).toMatchObject(CORRUPT);
            break;
          }
        }
      }
    });
  });

  /**
   * Runs `drive` with every `Atomics.store` that `acting()` says is one side's followed at once by
   * `other()`: the other side acting at that point, as a concurrent thread may. An `Atomics.store` is
   * where a side publishes (its plain writes before it become visible to the other side by then), so
   * acting after each one visits every point where the published state changes, deterministically.
   * Not while `other` runs (the other side's own stores do not trigger it).
   */
  function afterEveryStore(region: { sab: SharedArrayBuffer }, acting: () => boolean, other: () => void, drive: () => void): number {
    const store = Atomics.store;
    let nested = false;
    let calls = 0;
    const spy = vi.spyOn(Atomics, 'store').mockImplementation(((a: Int32Array, i: number, v: number) => {
      const r = store(a, i, v);
      if (!nested && acting() && a.buffer === region.sab) {
        nested = true;
        try {
          calls++;
          other();
        } finally {
          nested = false;
        }
      }
      return r;
    }) as typeof Atomics.store);
    try {
      drive();
    } finally {
      spy.mockRestore();
    }
    return calls;
  }

  /** Frames of these payload sizes, each with its own bytes: whole records queued before streamed ones (D = 256). */
  const MIXED = [8, 8, 8, 8, 20, 1000, 8, 300, 0, 8];

  function expectIntact(sink: ReturnType<typeof recordingSink>, sizes: readonly number[], dones: readonly number[]): void {
    expect(sink.losses).toEqual([]);
    expect(dones).toEqual(sizes.map((_, i) => i));
    expect(sink.frames.map((f) => f.id)).toEqual(sizes.map((_, i) => i));
    sink.frames.forEach((f, i) => expect(Buffer.compare(f.data, bytes(sizes[i], i))).toBe(0));
  }

  it('a reader that polls at every point where the producer publishes finds the ring consistent: whole records, then streamed ones, in one flush; and trySend', () => {
    // For instance between a streamed record's stamp and the head word that says how far it goes
    // (the head word must move first).
    const region = ringRegion(256);
    const p = new RingProducer(region);
    const c = new RingConsumer(region);
    const sink = recordingSink();
    const sizes = [...MIXED, 8, 16];
    const dones: number[] = [];
    // The first three fill the ring (3 × 64 = D − 64); the rest of MIXED queue.
    MIXED.forEach((n, i) => p.send(header(n, i), bytes(n, i), () => dones.push(i)));
    expect(p.queued).toBe(MIXED.length - 3);
    let producing = false;
    const reads = afterEveryStore(region, () => producing, () => c.poll(sink, 0, 1000), () => {
      c.poll(sink, 0, 1000);
      for (let i = 0; i < 10_000 && (p.queued > 0 || c.available() > 0 || c.midFrame); i++) {
        producing = true;
        p.flush();
        producing = false;
        c.poll(sink, 0, 1000);
      }
      // Frames that go in at once (trySend), with the reader looking after each store too.
      for (let i = MIXED.length; i < sizes.length; i++) {
        producing = true;
        expect(p.trySend(header(sizes[i], i), bytes(sizes[i], i))).toBeGreaterThan(0);
        producing = false;
        dones.push(i);
      }
      c.poll(sink, 0, 1000);
    });
    expect(reads).toBeGreaterThan(sizes.length);
    expectIntact(sink, sizes, dones);
  });

  it('a producer that writes at every point where the reader publishes never overwrites what the reader still copies', () => {
    // The mirror case: the reader's tail store frees space, and a writer may fill it at once; a
    // reader that released bytes before copying them out would deliver the next lap's bytes. Pieces
    // of a quarter ring (1 KiB here) with the ring kept full: a freed piece is refilled past its start.
    const region = ringRegion(4096);
    const p = new RingProducer(region);
    const c = new RingConsumer(region);
    const sink = recordingSink();
    const dones: number[] = [];
    const sizes = [...MIXED, 20_000, 8, 9_000, 3_000, 0];
    sizes.forEach((n, i) => p.send(header(n, i), bytes(n, i), () => dones.push(i)));
    let reading = false;
    const writes = afterEveryStore(region, () => reading, () => p.flush(), () => {
      for (let i = 0; i < 10_000 && (p.queued > 0 || c.available() > 0 || c.midFrame); i++) {
        reading = true;
        c.poll(sink, 0, 1);
        reading = false;
      }
    });
    expect(writes).toBeGreaterThan(sizes.length);
    expectIntact(sink, sizes, dones);
  });

  it('one poll copies at most 8 D of a streamed payload, however far ahead the producer is', async () => {
    const D = 16 * 1024;
    const region = ringRegion(D);
    const n = 4 * 1024 * 1024;
    const ctl = new Int32Array(region.sab, region.byteOffset, RING_CONTROL_BYTES >> 2);
    const [HEAD, TAIL] = [128 >> 2, 256 >> 2];
    // A target slow enough that the producer (another thread) has refilled the ring by the time each
    // piece is copied (or 2 ms passed): a consumer that never stopped between pieces would read the
    // whole message in one poll.
    class SlowTarget extends Uint8Array {
      override set(src: ArrayLike<number>, offset?: number): void {
        super.set(src, offset);
        const until = performance.now() + 2;
        while (((Atomics.load(ctl, HEAD) - Atomics.load(ctl, TAIL)) >>> 0) < D / 2 && performance.now() < until);
      }
    }
    const into = new SlowTarget(n);
    const sink = recordingSink((len) => (len === n ? into : new Uint8Array(len)));
    const c = new RingConsumer(region);
    const { result, worker } = runTsWorker<string>('lib/ring/test/worker-producer.ts', { region, frames: [n], seed: 5 });
    try {
      const deadline = Date.now() + 60_000;
      let most = 0;
      let polls = 0;
      while (sink.frames.length < 1 && Date.now() < deadline) {
        const before = c.position;
        c.poll(sink, 1, 100);
        polls++;
        most = Math.max(most, (c.position - before) >>> 0);
        if (c.producerWantsWake) c.producerWantsWake = false;
        if (c.available() === 0) await new Promise((r) => setImmediate(r));
      }
      expect(await result).toBe('sent');
      expect(Buffer.compare(into, bytes(n, 5))).toBe(0);
      // 8 D, the piece that crossed it, and the record's head.
      expect(most).toBeLessThanOrEqual(8 * D + D / 4 + 64);
      expect(polls).toBeGreaterThanOrEqual(n / (8 * D + D / 4 + 64));
    } finally {
      await worker.terminate();
    }
  }, 120_000);

  it('streams 16 MiB from a producer thread to this one intact (real concurrency), a bounded part per poll', async () => {
    const D = 64 * 1024;
    const region = ringRegion(D);
    const n = 16 * 1024 * 1024 + 13;
    const into = new Uint8Array(n);
    const sink = recordingSink((len) => (len === n ? into : new Uint8Array(len)));
    const c = new RingConsumer(region);
    const { result, worker } = runTsWorker<string>('lib/ring/test/worker-producer.ts', { region, frames: [100, n, 0, 7], seed: 3 });
    try {
      const t0 = performance.now();
      const deadline = Date.now() + 60_000;
      // The most one poll read: bounded (8 D of a streamed payload, plus the piece that passed the
      // bound and the small records around it) however fast the producer refills.
      let most = 0;
      while (sink.frames.length < 4 && Date.now() < deadline) {
        const before = c.position;
        c.poll(sink, 1, 100);
        most = Math.max(most, (c.position - before) >>> 0);
        if (c.producerWantsWake) c.producerWantsWake = false;
        if (c.available() === 0) await new Promise((r) => setImmediate(r));
      }
      expect(await result).toBe('sent');
      expect(most).toBeLessThanOrEqual(8 * D + D / 4 + 1024);
      console.log(`16 MiB through a 64 KiB ring between two threads: ${(performance.now() - t0).toFixed(0)} ms (worker start included)`);
      expect(sink.frames.map((f) => f.length)).toEqual([100, n, 0, 7]);
      const expected = bytes(n, 3 + 1);
      expect(Buffer.compare(into, expected)).toBe(0);
      expect(Buffer.compare(sink.frames[0].data, bytes(100, 3))).toBe(0);
    } finally {
      await worker.terminate();
    }
  }, 120_000);
});
