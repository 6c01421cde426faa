// The ivshmem transport's optional per-frame MAC (frame-mac.ts): frames of every size round-trip
// with it, a pair where one side asked still agrees, and frames forged by something else with access
// to the region — a flipped payload or header byte, a replayed, dropped or injected record, a record
// made with another job's key — fail that pair with CORRUPT while the other pairs go on. Keys differ
// per direction, job, secret and region.
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Channel } from '../../../lib/backend.js';
import { Op } from '../../../lib/index.js';
import { createLocalJob } from '../../../lib/local-bootstrap.js';
import { emptyHeader, encodeHeader, FRAME_HEADER_BYTES } from '../../../lib/protocol.js';
import { RECORD_ALIGN_BYTES, RECORD_PREFIX_BYTES, RING_CONTROL_BYTES, RING_HEADER_BYTES, ringDataBytes } from '../../../lib/ring/spsc-ring.js';
import { initWithBootstrap } from '../../../lib/start-world.js';
import { openRegionFile } from '../admin.js';
import { deriveMacKey, IVSHMEM_MAC_ENV, MAC_INLINE_BYTES, MAC_RECORD_MAGIC, MacChannel, macFromEnv } from '../frame-mac.js';
import { ivshmem, parseIvshmemInit, type IvshmemTransport } from '../index.js';
import { IvshmemRegion } from '../region.js';
import { pattern, same } from '../../../tests/helpers/bytes.js';
import { addon, handJob, regionFile, removeRegionFiles, select, until, type HandJob } from './pair.js';

function frame(payload: Uint8Array, tag = 0): Uint8Array {
  return encodeHeader({ ...emptyHeader(), tag, payloadBytes: payload.byteLength, messageBytes: payload.byteLength }, new Uint8Array(FRAME_HEADER_BYTES));
}

const jobs: HandJob[] = [];
afterEach(async () => {
  await Promise.all(jobs.splice(0).flatMap((j) => j.transports.map((t) => t.stop())));
});
afterAll(removeRegionFiles);

/** The data area and head word of the ring `from` → `to` in `file` (what another VM could write). */
function ringOf(job: HandJob, file: string, from: number, to: number): { data: Uint8Array; head: () => number; setHead: (h: number) => void } {
  const region = IvshmemRegion.open(openRegionFile(file).region);
  const ref = (rank: number) => {
    const r = job.transports[rank].regions[0];
    return { slot: r.slot, generation: r.generation };
  };
  const ring = region.rings.find(ref(from), ref(to))!;
  expect(ring).toBeDefined();
  const ctl = new Int32Array(ring.region.sab, ring.region.byteOffset, RING_CONTROL_BYTES >> 2);
  const data = new Uint8Array(ring.region.sab, ring.region.byteOffset + RING_HEADER_BYTES, ringDataBytes(ring.region.byteLength));
  return { data, head: () => Atomics.load(ctl, 32) >>> 0, setHead: (h) => Atomics.store(ctl, 32, h | 0) };
}

/** Bytes of a ring record whose prefix is followed by `body` bytes (a ring frame header and its payload). */
const recordOf = (body: number) => Math.ceil((RECORD_PREFIX_BYTES + body) / RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES;

/**
 * Writes a whole ring record at stream position `head` as another VM could: `body` after the prefix,
 * the next record's stamp word cleared, the stamp, then the head word (see `lib/ring/spsc-ring.ts`).
 */
function writeRecord(ring: { data: Uint8Array; setHead: (h: number) => void }, head: number, body: Uint8Array): void {
  const mask = ring.data.byteLength - 1;
  const words = new Int32Array(ring.data.buffer, ring.data.byteOffset, ring.data.byteLength >> 2);
  const length = recordOf(body.length);
  for (let i = 0; i < body.length; i++) ring.data[(head + RECORD_PREFIX_BYTES + i) & mask] = body[i];
  words[((head + length) & mask) >> 2] = 0;
  Atomics.store(words, (head & mask) >> 2, (((head >>> 6) + 1) << 1) | 1);
  ring.setHead(head + length);
}

/** A job of `size` over one region, every pair chosen; `mac(rank)` says who asks for the MAC. */
async function macJob(size: number, mac: (rank: number) => boolean, options: { jobId?: string } = {}): Promise<{ job: HandJob; file: string }> {
  const file = regionFile(4 << 20);
  const job = await handJob(size, (rank) => ({ regions: [file], mac: mac(rank) }), options);
  jobs.push(job);
  const pairs = await select(job);
  expect(pairs.size).toBe((size * (size - 1)) / 2);
  return { job, file };
}

describe('frame MAC: keys and switches', () => {
  it('a key per direction, job, secret and region; the same inputs give the same key', () => {
    const secret = randomBytes(32);
    const uuid = '01234567-89ab-cdef-0123-456789abcdef';
    const k = deriveMacKey(secret, 'job-a', 1, 2, uuid);
    expect(k.byteLength).toBe(32);
    expect(deriveMacKey(Uint8Array.from(secret), 'job-a', 1, 2, uuid).equals(k)).toBe(true);
    const others = [
      deriveMacKey(secret, 'job-a', 2, 1, uuid), // the other direction
      deriveMacKey(secret, 'job-b', 1, 2, uuid), // another job
      deriveMacKey(randomBytes(32), 'job-a', 1, 2, uuid), // another secret
      deriveMacKey(secret, 'job-a', 1, 3, uuid), // another pair
      deriveMacKey(secret, 'job-a', 1, 2, 'fedcba98-7654-3210-fedc-ba9876543210'), // another region
      deriveMacKey(secret, 'job-a1', 1, 2, uuid), // no ambiguity between fields
      deriveMacKey(secret, 'job-a', 12, 2, uuid),
    ];
    for (const o of others) expect(o.equals(k)).toBe(false);
    expect(new Set(others.map((o) => o.toString('hex'))).size).toBe(others.length);
  });

  it('the option and VMCOMM_IVSHMEM_MAC', () => {
    expect(parseIvshmemInit().mac).toBe(false);
    expect(parseIvshmemInit({ mac: true }).mac).toBe(true);
    expect(() => parseIvshmemInit({ mac: 1 as never })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(macFromEnv({})).toBe(false);
    for (const off of ['', '0', 'false', 'no', 'OFF']) expect(macFromEnv({ [IVSHMEM_MAC_ENV]: off }), off).toBe(false);
    for (const on of ['1', 'true', 'yes', 'on', 'anything']) expect(macFromEnv({ [IVSHMEM_MAC_ENV]: on }), on).toBe(true);
  });
});

describe.skipIf(addon === undefined)('frame MAC over ivshmem', () => {
  it('frames of every size round-trip, both ways, pipelined; the card says mac; the ring carries MAC records', async () => {
    const { job, file } = await macJob(2, () => true);
    const [a, b] = job.transports as IvshmemTransport[];
    for (const f of job.fields) expect(f).toMatchObject({ mac: true });
    expect(a.authenticated).toEqual(new Set([1]));
    expect(b.authenticated).toEqual(new Set([0]));
    const ab = await a.connect(1);
    const ba = await b.connect(0);
    expect(ab).toBeInstanceOf(MacChannel);
    const ring = ringOf(job, file, 0, 1);
    const start = ring.head();
    const sizes = [0, 8, 1, 3, MAC_INLINE_BYTES, MAC_INLINE_BYTES + 1, 100_000, 1 << 20, 0, 7, 300_001];
    const payloads = sizes.map((n, i) => pattern(n, i + 1));
    let done = 0;
    const errors: Error[] = [];
    const count = (e?: Error) => (e ? errors.push(e) : done++);
    // All sent at once: the ring (64 KiB) fills, the rest waits, tagged as the ring drains.
    payloads.forEach((p, i) => ab.send(frame(p, i), p, count));
    // The first record in the ring is a MAC head: magic at 16 of its record header (after the ring's
    // record prefix), the core header after the record header.
    const view = new DataView(ring.data.buffer, ring.data.byteOffset + (start & (ring.data.byteLength - 1)));
    expect(view.getUint32(RECORD_PREFIX_BYTES + 16, true)).toBe(MAC_RECORD_MAGIC);
    payloads.forEach((p, i) => ba.send(frame(p, i), p, count));
    await until(() => job.sinks[1].frames.length === sizes.length && job.sinks[0].frames.length === sizes.length && done === 2 * sizes.length, 30_000, () => `frames: ${job.sinks.map((s) => s.frames.length)} done ${done}`);
    expect(errors).toEqual([]);
    for (const s of job.sinks) {
      s.frames.forEach((f, i) => expect(same(f.data, payloads[i]), `frame ${i} (${sizes[i]} bytes)`).toBe(true));
      expect(s.losses).toEqual([]);
    }
    await Promise.all([ab.close(), ba.close()]);
  }, 60_000);

  it('close() delivers what waits first; frames that can no longer go get one done(error) each', async () => {
    const { job } = await macJob(2, () => true);
    const [a, b] = job.transports;
    const ab = await a.connect(1);
    const big = pattern(300_000, 5);
    for (let i = 0; i < 3; i++) ab.send(frame(big, i), big);
    ab.send(frame(new Uint8Array([4])), new Uint8Array([4]));
    await ab.close();
    await until(() => job.sinks[1].frames.length === 4);
    for (let i = 0; i < 3; i++) expect(same(job.sinks[1].frames[i].data, big)).toBe(true);
    // The other way: the receiver stops, the sender queues more than the ring holds, then stops too.
    const ba = await b.connect(0);
    await a.stop();
    const calls: (Error | undefined)[][] = [];
    for (let i = 0; i < 8; i++) {
      calls.push([]);
      const p = i % 2 === 0 ? big : new Uint8Array(100);
      ba.send(frame(p), p, (e) => calls[i].push(e));
    }
    await b.stop();
    await until(() => calls.every((c) => c.length > 0), 5_000, 'every done');
    await new Promise((r) => setTimeout(r, 20));
    for (const c of calls) expect(c).toHaveLength(1);
    // What fit in the ring before the loss was written (done()); the rest failed.
    expect(calls.some((c) => c[0] !== undefined)).toBe(true);
    for (const c of calls) if (c[0] !== undefined) expect(['PEER_LOST', 'FINALIZED']).toContain((c[0] as { code?: string }).code);
  });

  it('only one side asked: the pair authenticates on both ends, frames flow both ways', async () => {
    const { job } = await macJob(2, (rank) => rank === 0);
    expect(job.fields[0]).toMatchObject({ mac: true });
    expect(job.fields[1]).not.toHaveProperty('mac');
    const [a, b] = job.transports as IvshmemTransport[];
    expect(a.authenticated).toEqual(new Set([1]));
    expect(b.authenticated).toEqual(new Set([0]));
    const big = pattern(70_000, 3);
    (await a.connect(1)).send(frame(big), big);
    (await b.connect(0)).send(frame(new Uint8Array([9])), new Uint8Array([9]));
    expect(await b.connect(0)).toBeInstanceOf(MacChannel);
    await until(() => job.sinks[0].frames.length === 1 && job.sinks[1].frames.length === 1);
    expect(same(job.sinks[1].frames[0].data, big)).toBe(true);
    expect([...job.sinks[0].frames[0].data]).toEqual([9]);
  });

  it('nobody asked: no MAC, nothing in the card; VMCOMM_IVSHMEM_MAC=1 at start() asks', async () => {
    const { job } = await macJob(2, () => false);
    for (const f of job.fields) expect(f).not.toHaveProperty('mac');
    expect((job.transports[0] as IvshmemTransport).authenticated.size).toBe(0);
    expect(await job.transports[0].connect(1)).not.toBeInstanceOf(MacChannel);
    const saved = process.env[IVSHMEM_MAC_ENV];
    process.env[IVSHMEM_MAC_ENV] = '1';
    try {
      const file = regionFile();
      const env = await handJob(2, () => ({ regions: [file] }));
      jobs.push(env);
      for (const f of env.fields) expect(f).toMatchObject({ mac: true });
    } finally {
      if (saved === undefined) delete process.env[IVSHMEM_MAC_ENV];
      else process.env[IVSHMEM_MAC_ENV] = saved;
    }
  });

  describe('forgeries: CORRUPT for that peer, the others go on', () => {
    /**
     * Three ranks with the MAC; rank 1 sends rank 0 a frame that `forge` alters in the ring before
     * anyone polls. Rank 0 must lose rank 1 with CORRUPT, deliver nothing forged, and keep
     * exchanging frames with rank 2.
     */
    async function forged(forge: (ring: ReturnType<typeof ringOf>, channel: Channel, at: number) => void, why: RegExp, options: { warmUp?: boolean } = {}): Promise<void> {
      const { job, file } = await macJob(3, () => true);
      const [t0, t1, t2] = job.transports;
      const c10 = await t1.connect(0);
      const c20 = await t2.connect(0);
      const c02 = await t0.connect(2);
      const ring = ringOf(job, file, 1, 0);
      if (options.warmUp) {
        c10.send(frame(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
        await until(() => job.sinks[0].frames.length === 1);
      }
      const before = job.sinks[0].frames.length;
      // Sent and altered in one synchronous run: no poll happens in between.
      forge(ring, c10, ring.head());
      await until(() => job.sinks[0].losses.length > 0, 5_000, 'the loss');
      expect(job.sinks[0].losses).toHaveLength(1);
      expect(job.sinks[0].losses[0]).toMatchObject({ peer: 1, error: { code: 'CORRUPT', message: expect.stringMatching(/rank 1 over ivshmem failed authentication/) } });
      expect(job.sinks[0].losses[0].error.message).toMatch(why);
      expect(job.sinks[0].frames.length).toBe(before);
      // The other pairs go on, both ways.
      const p = pattern(40_000, 9);
      c20.send(frame(p), p);
      c02.send(frame(p), p);
      await until(() => job.sinks[0].frames.some((f) => f.peer === 2) && job.sinks[2].frames.some((f) => f.peer === 0));
      expect(same(job.sinks[0].frames.find((f) => f.peer === 2)!.data, p)).toBe(true);
      expect(job.sinks[2].losses).toEqual([]);
    }

    const at = (ring: ReturnType<typeof ringOf>, pos: number) => pos & (ring.data.byteLength - 1);

    it('a flipped payload byte', async () => {
      await forged((ring, c, head) => {
        const p = pattern(1000, 4);
        c.send(frame(p), p);
        ring.data[at(ring, head + RECORD_PREFIX_BYTES + 48 + 48 + 500)] ^= 0x01; // ring prefix, record header, core header, then the payload
      }, /record 0 carries a wrong tag/);
    });

    it('a flipped byte of the frame header (the message tag)', async () => {
      await forged((ring, c, head) => {
        const p = pattern(100, 4);
        c.send(frame(p, 5), p);
        ring.data[at(ring, head + RECORD_PREFIX_BYTES + 48 + 12)] ^= 0x04;
      }, /record 0 carries a wrong tag/);
    });

    it('a flipped byte of a body record of a large frame', async () => {
      await forged((ring, c, head) => {
        const p = pattern(40_000, 4); // head (no inline payload), then body records
        c.send(frame(p), p);
        ring.data[at(ring, head + recordOf(48 + 48) + RECORD_PREFIX_BYTES + 48 + 17)] ^= 0x80;
      }, /record 1 carries a wrong tag/);
    });

    it('a replayed frame (an earlier record copied over the next)', async () => {
      await forged(
        (ring, c, head) => {
          const p = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
          const len = recordOf(48 + 48 + 8);
          c.send(frame(p), p);
          // All but the stamp word, which names the position (a forger writes the right one).
          for (let i = 4; i < len; i++) ring.data[at(ring, head + i)] = ring.data[at(ring, head - len + i)];
        },
        /record 1 carries a wrong tag/,
        { warmUp: true },
      );
    });

    it('a dropped frame (the second record moved over the first, the head moved back)', async () => {
      await forged((ring, c, head) => {
        const p = new Uint8Array(8).fill(1);
        const q = new Uint8Array(8).fill(2);
        const len = recordOf(48 + 48 + 8);
        c.send(frame(p), p);
        c.send(frame(q), q);
        writeRecord(ring, head, ring.data.slice(at(ring, head + len + RECORD_PREFIX_BYTES), at(ring, head + len + RECORD_PREFIX_BYTES) + 48 + 48 + 8));
      }, /record 0 carries a wrong tag/);
    });

    it('an injected plain frame (well-formed, no MAC)', async () => {
      await forged((ring, _c, head) => {
        const h = frame(new Uint8Array(8));
        writeRecord(ring, head, Uint8Array.from({ length: 56 }, (_, i) => (i < 48 ? h[i] : 0)));
      }, /not a MAC record/);
    });

    it('a record tagged with another job’s key', async () => {
      const { job: other, file } = await macJob(2, () => true, { jobId: 'another-job' });
      // A well-formed record of the other job, as its rank 1 would write it.
      const otherRing = ringOf(other, file, 1, 0);
      const start = otherRing.head();
      const p = new Uint8Array(8).fill(6);
      (await other.transports[1].connect(0)).send(frame(p), p);
      const body = Uint8Array.from({ length: 48 + 48 + 8 }, (_, i) => otherRing.data[at(otherRing, start + RECORD_PREFIX_BYTES + i)]);
      await forged((ring, _c, head) => writeRecord(ring, head, body), /record 0 carries a wrong tag/);
    });
  });
});

describe.skipIf(addon === undefined)('frame MAC in a world', () => {
  it('values, buffers (eager and rendezvous) and collectives over authenticated ivshmem; one rank asking is enough', async () => {
    const file = regionFile(4 << 20);
    const comms = await Promise.all(
      createLocalJob(3).map((b, rank) => initWithBootstrap(b, { backends: [ivshmem({ regions: [file], mac: rank === 1 })], only: ['ivshmem', 'tcp'] })),
    );
    try {
      for (const c of comms) for (let p = 0; p < 3; p++) if (p !== c.rank) expect(c.transportOf(p)).toBe('ivshmem');
      expect(comms.map((c) => (c.locality().backends.ivshmem as { mac?: boolean }).mac)).toEqual([undefined, true, undefined]);
      const big = pattern(3 << 20, 5);
      await Promise.all(
        comms.map(async (c) => {
          const next = (c.rank + 1) % 3;
          const prev = (c.rank + 2) % 3;
          const out = c.sendBuffer(big, next, 1);
          const got = new Uint8Array(big.byteLength);
          await c.recvBuffer(got, prev, 1);
          await out;
          expect(same(got, big)).toBe(true);
          const obj = { from: c.rank, list: [1, 2, 3], text: 'x'.repeat(20_000) };
          const s = c.send(obj, next, 2);
          expect(await c.recv(prev, 2)).toEqual({ from: prev, list: [1, 2, 3], text: 'x'.repeat(20_000) });
          await s;
          expect(await c.allreduce(c.rank + 1, Op.SUM)).toBe(6);
          await c.barrier();
        }),
      );
    } finally {
      await Promise.all(comms.map((c) => c.finalize()));
    }
  }, 60_000);
});

describe.skipIf(addon === undefined)('frame MAC in a world: a forged frame', () => {
  it('the receive from the forger’s pair fails with CORRUPT; the process and the other pairs go on', async () => {
    const file = regionFile(4 << 20);
    const comms = await Promise.all(createLocalJob(3).map((b) => initWithBootstrap(b, { backends: [ivshmem({ regions: [file], mac: true })], only: ['ivshmem', 'tcp'] })));
    try {
      // Channels open (first use), then the ring 1 → 0 as another VM would see it.
      await Promise.all([comms[1].send('hello', 0, 1), comms[0].recv(1, 1)]);
      const region = IvshmemRegion.open(openRegionFile(file).region);
      const ref = (rank: number) => {
        const r = (comms[rank].locality().backends.ivshmem as { regions: { slot: number; generation: number }[] }).regions[0];
        return { slot: r.slot, generation: r.generation };
      };
      const ringOf = (from: number, to: number) => {
        const ring = region.rings.find(ref(from), ref(to))!;
        const ctl = new Int32Array(ring.region.sab, ring.region.byteOffset, RING_CONTROL_BYTES >> 2);
        const data = new Uint8Array(ring.region.sab, ring.region.byteOffset + RING_HEADER_BYTES, ringDataBytes(ring.region.byteLength));
        return { data, at: (pos: number) => pos & (data.byteLength - 1), head: () => Atomics.load(ctl, 32) >>> 0, setHead: (h: number) => Atomics.store(ctl, 32, h | 0) };
      };
      /** Sends 64 bytes from `from` to `to` and flips one of them in the ring, as another VM could. */
      const forge = (from: number, to: number, tag: number): Promise<void> => {
        const ring = ringOf(from, to);
        const head = ring.head();
        const sent = comms[from].sendBuffer(new Uint8Array(64).fill(1), to, tag);
        expect(ring.head() - head).toBeGreaterThan(0); // written synchronously
        ring.data[ring.at(head + RECORD_PREFIX_BYTES + 48 + 48 + 10)] ^= 0xff;
        return sent;
      };
      await forge(1, 0, 2);
      await expect(comms[0].recvBuffer(new Uint8Array(64), 1, 2)).rejects.toMatchObject({ code: 'CORRUPT', message: expect.stringMatching(/rank 1 over ivshmem failed authentication/) });
      // Rank 0 and rank 2 go on, both ways.
      const got = await Promise.all([comms[0].send({ n: 1 }, 2, 3), comms[2].recv(0, 3), comms[2].send({ n: 2 }, 0, 4), comms[0].recv(2, 4)]);
      expect(got[1]).toEqual({ n: 1 });
      expect(got[3]).toEqual({ n: 2 });
      // Rank 1 does not know that rank 0 stopped reading it (rank 0 still heartbeats). A record
      // injected the other way too (rank 0 no longer writes there): both ends know, finalize ends.
      const back = ringOf(0, 1);
      const head = back.head();
      writeRecord(back, head, Uint8Array.from({ length: 56 }, (_, i) => (i === 32 ? 8 : 0)));
      await expect(comms[1].recvBuffer(new Uint8Array(64), 0, 5)).rejects.toMatchObject({ code: 'CORRUPT', message: expect.stringMatching(/not a MAC record/) });
      // A CORRUPT pair counts as lost in finalize's barrier: every rank finishes.
      await Promise.all(comms.map((c) => c.finalize()));
    } finally {
      await Promise.allSettled(comms.map((c) => c.finalize()));
    }
  }, 60_000);
});
