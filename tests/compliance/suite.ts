/**
 * The compliance suite every transport passes (js-libp2p's interface-compliance-tests pattern): a
 * function of a setup that builds worlds whose pairs use the transport under test. It imports nothing
 * from any backend.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANY_SOURCE, ANY_TAG } from '../../lib/constants.js';
import type { Communicator } from '../../lib/communicator.js';
import type { Status } from '../../lib/errors.js';
import { waitAll, waitAny, type Request } from '../../lib/request.js';
import { pattern, same } from '../helpers/bytes.js';
import { reportLost } from '../helpers/local-worlds.js';
import { within } from '../helpers/settle.js';


/** What a backend's spec provides. */
export interface BackendSetup {
  /** The transport name `transportOf` must report between distinct ranks (or `self` for size 1). */
  readonly transport: string;
  /** Largest world the transport supports in this setup (self: 1). */
  readonly maxSize: number;
  /** The eager limit (bytes) the setup configures, so sizes around it are tested. */
  readonly eagerLimitBytes: number;
  /** Builds a fresh world of `size` ranks (index = rank). */
  setup(size: number): Promise<Communicator[]>;
  /** Messages of up to this many bytes are tested (default 64 MiB). */
  readonly largestBytes?: number;
  /**
   * Whether `test()` alone moves this transport's messages, with no turn of the event loop (shared
   * memory and `self`, DESIGN section 3); a socket needs the event loop. Default false.
   */
  readonly progressesInTest?: boolean;
  /**
   * Whether a large payload arrives over several polls or reads (rings, sockets) rather than in the
   * call that began its frame. Then a peer reported lost elsewhere while one arrives is tested
   * (`Transport.abandonFrame`). Default true.
   */
  readonly framesSpanPolls?: boolean;
}

/** Calls `test()` on each request, never yielding, until all completed or `ms` passed; whether they did. */
function testUntilDone(requests: readonly Request<unknown>[], ms = 10_000): boolean {
  const until = performance.now() + ms;
  for (;;) {
    let done = true;
    for (const r of requests) if (!r.test()) done = false;
    if (done) return true;
    if (performance.now() > until) return false;
  }
}


async function finalizeAll(comms: Communicator[]): Promise<void> {
  await Promise.all(comms.map((c) => c.finalize()));
}

/** Registers the suite for one transport. */
export function backendSuite(s: BackendSetup): void {
  const pairSize = Math.min(2, s.maxSize);
  const largest = s.largestBytes ?? 64 * 1024 * 1024;

  describe(`compliance: ${s.transport}`, () => {
    let comms: Communicator[];
    let a: Communicator;
    let b: Communicator;
    let rb: number; // rank of b
    let ra: number;
    let nextTag = 100;
    const tag = () => nextTag++;

    beforeAll(async () => {
      comms = await s.setup(pairSize);
      a = comms[0];
      b = comms[pairSize - 1];
      ra = 0;
      rb = pairSize - 1;
    });
    afterAll(async () => {
      if (comms) await finalizeAll(comms);
    });

    it('reports the transport under test', () => {
      expect(a.transportOf(rb)).toBe(s.transport);
      expect(b.transportOf(ra)).toBe(s.transport);
      expect(a.transportOf(ra)).toBe('self');
    });

    const sizes = () => [0, 1, s.eagerLimitBytes - 1, s.eagerLimitBytes, s.eagerLimitBytes + 1, 1024 * 1024, largest].filter((n, i, all) => n >= 0 && all.indexOf(n) === i);

    it('moves buffers of 0, 1, eager−1, eager, eager+1 bytes, 1 MiB and the largest size intact', async () => {
      for (const n of sizes()) {
        const t = tag();
        const data = pattern(n, n + 1);
        const into = new Uint8Array(n);
        const r = b.irecvBuffer(into, ra, t);
        await a.sendBuffer(data, rb, t);
        const st = await r;
        expect(st).toEqual({ source: ra, tag: t, bytes: n });
        expect(same(into, data)).toBe(true);
      }
    });

    it('moves values around the eager limit with their types', async () => {
      for (const n of [0, s.eagerLimitBytes - 64, s.eagerLimitBytes + 64, 3 * 1024 * 1024]) {
        const t = tag();
        const value = { n, f: new Float64Array(Math.max(0, Math.floor(n / 8))).map((_, i) => i * 0.5), big: 2n ** 100n + BigInt(n), m: new Map([[1, 'one']]), d: new Date(n), buf: Buffer.from('x') };
        const r = b.irecv<typeof value>(ra, t);
        await a.send(value, rb, t);
        const got = await r;
        expect(got.n).toBe(n);
        expect(got.f).toBeInstanceOf(Float64Array);
        expect(got.f.length).toBe(value.f.length);
        if (value.f.length > 3) expect(got.f[3]).toBe(1.5);
        expect(got.big).toBe(value.big);
        expect(got.m).toBeInstanceOf(Map);
        expect(got.m.get(1)).toBe('one');
        expect(got.d).toBeInstanceOf(Date);
        expect(got.d.getTime()).toBe(n);
        expect(Buffer.isBuffer(got.buf)).toBe(true);
      }
    });

    it('keeps order per (source, tag) under load, eager and rendezvous mixed, sends not awaited', async () => {
      const t = tag();
      const count = 1000;
      const sends: Request<void>[] = [];
      for (let i = 0; i < count; i++) {
        const size = i % 97 === 0 ? s.eagerLimitBytes * 2 : i % 5;
        const msg = new Uint8Array(size + 4);
        new DataView(msg.buffer).setUint32(0, i, true);
        sends.push(a.isendBuffer(msg, rb, t));
      }
      const seen: number[] = [];
      const buf = new Uint8Array(s.eagerLimitBytes * 2 + 4);
      for (let i = 0; i < count; i++) {
        await b.recvBuffer(buf, ra, t);
        seen.push(new DataView(buf.buffer).getUint32(0, true));
      }
      await waitAll(sends);
      expect(seen).toEqual(Array.from({ length: count }, (_, i) => i));
    });

    it('matches many outstanding receives posted before their sends, by tag', async () => {
      const n = 300;
      const base = tag();
      nextTag += n;
      const recvs = Array.from({ length: n }, (_, i) => b.irecv<number>(ra, base + (n - 1 - i)));
      const sends = Array.from({ length: n }, (_, i) => a.isend(i, rb, base + i));
      const got = await waitAll(recvs);
      await waitAll(sends);
      expect(got).toEqual(Array.from({ length: n }, (_, i) => n - 1 - i));
    });

    it('sends large messages both directions at once', async () => {
      const t = tag();
      const n = 8 * 1024 * 1024 + 3;
      const x = pattern(n, 1);
      const y = pattern(n, 2);
      const intoB = new Uint8Array(n);
      const intoA = new Uint8Array(n);
      const reqs = [b.irecvBuffer(intoB, ra, t), a.irecvBuffer(intoA, rb, t), a.isendBuffer(x, rb, t), b.isendBuffer(y, ra, t)];
      await waitAll(reqs);
      expect(same(intoB, x)).toBe(true);
      expect(same(intoA, y)).toBe(true);
    });

    it('truncation consumes the message and reports its status; the next message is intact', async () => {
      const t = tag();
      const small = new Uint8Array(4);
      for (const n of [8, s.eagerLimitBytes * 3]) {
        const p = a.isendBuffer(pattern(n, 9), rb, t);
        const err = await b.recvBuffer(small, ra, t).then(() => undefined, (e) => e);
        expect(err).toMatchObject({ name: 'VmcommError', code: 'TRUNCATE', status: { source: ra, tag: t, bytes: n } });
        expect(same(small, pattern(n, 9).subarray(0, 4))).toBe(true);
        await p;
      }
      await a.send('after', rb, t);
      expect(await b.recv(ra, t)).toBe('after');
    });

    it('honours wildcards, recvMessage, probe and iprobe', async () => {
      const t = tag();
      expect(b.iprobe(ra, t)).toBeUndefined();
      await a.send([1, 2, 3], rb, t);
      const st = await b.probe(ANY_SOURCE, t);
      expect(st.source).toBe(ra);
      expect(st.tag).toBe(t);
      expect(b.iprobe(ra, ANY_TAG)).toBeDefined();
      const m = await b.recvMessage<number[]>(ANY_SOURCE, ANY_TAG);
      expect(m).toEqual({ data: [1, 2, 3], source: ra, tag: t });
      expect(b.iprobe(ANY_SOURCE, t)).toBeUndefined();
    });

    it('a message sent with a tag is not taken by a receive for another tag', async () => {
      const t1 = tag();
      const t2 = tag();
      const r2 = b.irecv(ra, t2);
      await a.send('one', rb, t1);
      await a.send('two', rb, t2);
      expect(await r2).toBe('two');
      expect(await b.recv(ra, t1)).toBe('one');
    });

    it('messages that each differ from the one before in one header field arrive as sent: tag, length, kind, communicator, source rank', async () => {
      // Ring transports send a repeated message by rewriting only its sequence number: a tag, kind or
      // communicator the shortcut missed would show here as a wrong tag, value or communicator. (A
      // missed length is also refused by the channel's own check, and the source follows from the
      // communicator; the peer's credit window, also in the header, is varied in
      // tests/unit/review-credits.test.ts, which needs two transports.) One message at a time, its
      // receive posted first (blocking sends, within any credit window).
      const t1 = tag();
      const t2 = tag();
      const dups = await Promise.all(comms.map((c) => c.dup()));
      // Ranks reversed: a's rank in `rev` differs from its world rank when there are two.
      const revs = await Promise.all(comms.map((c) => c.split(0, -c.rank)));
      const [dupA, dupB, revA, revB] = [dups[0], dups[pairSize - 1], revs[0]!, revs[pairSize - 1]!];
      const bytesOf = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => seed + i);
      const one = async (to: Communicator, send: () => Promise<void>) => {
        const into = new Uint8Array(8);
        const r = to.irecvBuffer(into, ANY_SOURCE, ANY_TAG);
        await send();
        const st = await r;
        return [st.source, st.tag, [...into.subarray(0, st.bytes)]];
      };
      expect(await one(b, () => a.sendBuffer(bytesOf(8, 1), rb, t1))).toEqual([ra, t1, [...bytesOf(8, 1)]]);
      expect(await one(b, () => a.sendBuffer(bytesOf(8, 20), rb, t2))).toEqual([ra, t2, [...bytesOf(8, 20)]]);
      expect(await one(b, () => a.sendBuffer(bytesOf(5, 40), rb, t2))).toEqual([ra, t2, [...bytesOf(5, 40)]]);
      // A value whose encoding is 5 bytes too ('abcd' in msgpack): only the kind of message differs.
      const m = b.recvMessage(ANY_SOURCE, ANY_TAG);
      await a.send('abcd', rb, t2);
      expect(await m).toEqual({ data: 'abcd', source: ra, tag: t2 });
      expect(await one(b, () => a.sendBuffer(bytesOf(5, 50), rb, t2))).toEqual([ra, t2, [...bytesOf(5, 50)]]);
      // Only the communicator differs (a dup keeps the ranks), then the communicator and the source.
      expect(await one(dupB, () => dupA.sendBuffer(bytesOf(5, 60), rb, t2))).toEqual([ra, t2, [...bytesOf(5, 60)]]);
      expect(await one(revB, () => revA.sendBuffer(bytesOf(5, 80), revB.rank, t2))).toEqual([revA.rank, t2, [...bytesOf(5, 80)]]);
      expect(await one(b, () => a.sendBuffer(bytesOf(5, 100), rb, t2))).toEqual([ra, t2, [...bytesOf(5, 100)]]);
      await Promise.all([...dups, ...revs].map((c) => c!.free()));
    });

    it('cancel withdraws an unmatched receive, which then rejects with ABORTED; nothing is lost', async () => {
      const t = tag();
      const r = b.irecv(ra, t);
      expect(r.test()).toBe(false);
      expect(r.cancel()).toBe(true);
      await expect(r).rejects.toMatchObject({ name: 'VmcommError', code: 'ABORTED' });
      expect(r.cancel()).toBe(false);
      await a.send('kept', rb, t);
      expect(await b.recv(ra, t)).toBe('kept');
    });

    it('a receive timeout withdraws the receive (TIMEOUT); a later message still arrives', async () => {
      const t = tag();
      await expect(b.recv(ra, t, { timeout: 20 })).rejects.toMatchObject({ name: 'VmcommError', code: 'TIMEOUT' });
      const ac = new AbortController();
      const p = b.recv(ra, t, { signal: ac.signal });
      ac.abort();
      await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
      await a.send('late', rb, t);
      expect(await b.recv(ra, t, { timeout: 30_000 })).toBe('late');
    });

    it('a rendezvous send times out while unmatched and is withdrawn; nothing arrives later', async () => {
      const t = tag();
      const big = pattern(s.eagerLimitBytes * 4, 3);
      await expect(a.sendBuffer(big, rb, t, { timeout: 30 })).rejects.toMatchObject({ code: 'TIMEOUT' });
      await a.send('marker', rb, t);
      // The withdrawn message must not be received: the next message on the tag is the marker.
      expect(await b.recv(ra, t)).toBe('marker');
    });

    it('test() and waitAny report completion', async () => {
      const t = tag();
      const r1 = b.irecv(ra, t);
      const r2 = b.irecv(ra, t + 1000);
      nextTag++;
      await a.send('x', rb, t);
      const { index, value } = await waitAny([r2, r1]);
      expect(index).toBe(1);
      expect(value).toBe('x');
      expect(r1.test()).toBe(true);
      expect(r2.cancel()).toBe(true);
    });

    it('sendrecv exchanges without deadlock', async () => {
      const t = tag();
      const [x, y] = await Promise.all([a.sendrecv('from-a', rb, rb, t, t), b.sendrecv('from-b', ra, ra, t, t)]);
      if (a === b) expect([x, y].sort()).toEqual(['from-a', 'from-b']);
      else expect([x, y]).toEqual(['from-b', 'from-a']);
    });

    it('rejects bad arguments at once with INVALID_ARGUMENT', async () => {
      const size = a.size;
      for (const call of [
        () => a.send(1, size),
        () => a.send(1, -1),
        () => a.send(1, 0.5),
        () => a.send(1, rb, -1),
        () => a.send(1, rb, 2 ** 31),
        () => a.recv(size),
        () => a.recv(ANY_SOURCE, -5),
        () => a.sendBuffer('nope' as unknown as Uint8Array, rb),
        () => a.sendBuffer(new Uint8Array(new ArrayBuffer(8, { maxByteLength: 16 })), rb),
        () => a.recv(ANY_SOURCE, ANY_TAG, { timeout: -1 }),
        () => a.recv(ANY_SOURCE, ANY_TAG, { signal: {} as AbortSignal }),
        () => a.send(() => 1, rb),
      ]) {
        await expect(call()).rejects.toMatchObject({ name: 'VmcommError', code: 'INVALID_ARGUMENT' });
      }
      const detached = new Uint8Array(8);
      structuredClone(detached.buffer, { transfer: [detached.buffer] });
      await expect(a.sendBuffer(detached, rb)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(() => a.iprobe(size)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
      expect(() => a.transportOf(size)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    });

    it('accepts SharedArrayBuffer-backed and offset views', async () => {
      const t = tag();
      const sab = new SharedArrayBuffer(64);
      const src = new Int32Array(sab, 8, 4);
      src.set([1, -2, 3, -4]);
      const dst = new Int32Array(new SharedArrayBuffer(32), 4, 4);
      const r = b.irecvBuffer(dst, ra, t);
      await a.sendBuffer(src, rb, t);
      await r;
      expect([...dst]).toEqual([1, -2, 3, -4]);
    });
  });

  if (s.maxSize >= 4) {
    describe(`compliance: ${s.transport} at 4 ranks`, () => {
      let comms: Communicator[];
      beforeAll(async () => {
        comms = await s.setup(4);
      });
      afterAll(async () => {
        if (comms) await finalizeAll(comms);
      });

      it('ANY_SOURCE serves every sender (no starvation) and keeps per-sender order', async () => {
        const per = 200;
        const t = 7;
        // Three senders sending concurrently, one message after the other.
        const senders = comms.slice(1).map(async (c) => {
          for (let i = 0; i < per; i++) await c.send([c.rank, i], 0, t);
        });
        const got: [number, number][] = [];
        for (let i = 0; i < 3 * per; i++) got.push(await comms[0].recv<[number, number]>(ANY_SOURCE, t));
        await Promise.all(senders);
        for (const src of [1, 2, 3]) expect(got.filter(([s]) => s === src).map(([, i]) => i)).toEqual(Array.from({ length: per }, (_, i) => i));
        // Fairness: every sender shows up within the first half of the receives.
        const firstHalf = new Set(got.slice(0, (3 * per) / 2).map(([s]) => s));
        expect(firstHalf).toEqual(new Set([1, 2, 3]));
      });

      it('barrier completes on every rank', async () => {
        const order: number[] = [];
        await Promise.all(comms.map((c) => c.barrier().then(() => order.push(c.rank))));
        expect(order.sort()).toEqual([0, 1, 2, 3]);
      });
    });
  }

  describe(`compliance: ${s.transport} progress in test()`, () => {
    if (!s.progressesInTest) {
      it.skip(`skipped: ${s.transport} moves messages from the event loop, so a loop of test() that never yields cannot progress (DESIGN section 3)`, () => {});
      return;
    }

    it('a loop of test() that never yields opens the channel, and moves eager, rendezvous and large messages both ways', async () => {
      // A fresh world: the pair's channels are opened by these very sends (MPI_Test-style code that
      // never awaits must not depend on a microtask to dial).
      const comms = await s.setup(pairSize);
      try {
        const a = comms[0];
        const b = comms[pairSize - 1];
        const rb = pairSize - 1;
        for (const [i, n] of [8, s.eagerLimitBytes * 4 + 1, 300 * 1024].entries()) {
          const there = pattern(n, i + 1);
          const back = pattern(n, i + 50);
          const intoB = new Uint8Array(n);
          const intoA = new Uint8Array(n);
          const rB = b.irecvBuffer(intoB, 0, 40 + i);
          const sA = a.isendBuffer(there, rb, 40 + i);
          expect(testUntilDone([sA, rB])).toBe(true);
          const rA = a.irecvBuffer(intoA, rb, 60 + i);
          const sB = b.isendBuffer(back, 0, 60 + i);
          expect(testUntilDone([rA, sB])).toBe(true);
          expect(rB.value).toEqual({ source: 0, tag: 40 + i, bytes: n });
          expect(rA.value).toEqual({ source: rb, tag: 60 + i, bytes: n });
          expect(same(intoB, there)).toBe(true);
          expect(same(intoA, back)).toBe(true);
        }
        // And a message to oneself.
        const mine = a.irecv(0, 99);
        const sent = a.isend('to myself', 0, 99);
        expect(testUntilDone([sent, mine])).toBe(true);
        expect(mine.value).toBe('to myself');
      } finally {
        await finalizeAll(comms);
      }
    });
  });

  describe(`compliance: ${s.transport} peer lost while its message lands`, () => {
    if (s.maxSize < 2 || s.framesSpanPolls === false) {
      it.skip(`skipped: ${s.transport} ${s.maxSize < 2 ? 'has no peer' : 'delivers a frame in the call that begins it'}, so no frame is ever half in`, () => {});
      return;
    }

    it('the launcher reports the sender dead mid-message: the receive rejects PEER_LOST, its buffer is written no more, the send settles', async () => {
      const comms = await s.setup(2);
      const [a, b] = comms;
      try {
        const n = 16 * 1024 * 1024;
        const data = new Uint8Array(n).fill(0x5a);
        // Up to a few tries: a message may go through whole between two looks.
        let caught: { into: Uint8Array; recv: Request<Status>; send: Request<void> } | undefined;
        for (let attempt = 0; attempt < 5 && caught === undefined; attempt++) {
          const into = new Uint8Array(n);
          const recv = b.irecvBuffer(into, 0, 500 + attempt);
          const send = a.isendBuffer(data, 1, 500 + attempt);
          for (let step = 0; ; step++) {
            send.test();
            if (recv.test()) break;
            // Partly in: rings and sockets fill from the start, a cooperative single copy also from the middle.
            if (into[0] !== 0 || into[n >> 1] !== 0) {
              caught = { into, recv, send };
              break;
            }
            if (step % 8 === 7) await new Promise((r) => setImmediate(r));
          }
          if (caught === undefined) await send;
        }
        expect(caught, 'never saw a message half in').toBeDefined();
        const { into, recv, send } = caught!;
        reportLost(b, 0, 'killed in a test');
        await expect(recv).rejects.toMatchObject({ code: 'PEER_LOST' });
        const seen = into.slice();
        // Both sides go on: nothing more may land in the settled receive's buffer.
        const until = performance.now() + 300;
        while (performance.now() < until) {
          send.test();
          b.iprobe();
          await new Promise((r) => setImmediate(r));
        }
        expect(same(into, seen)).toBe(true);
        // The sender learns that nothing more is read (or its last bytes were out already).
        expect((await within(send, 10_000)).status).not.toBe('pending');
      } finally {
        await Promise.all(comms.map((c) => within(c.finalize(), 5000)));
      }
    });
  });

  describe(`compliance: ${s.transport} finalize`, () => {
    it('finalize delivers what is in flight, then every call rejects with FINALIZED', async () => {
      const comms = await s.setup(pairSize);
      const a = comms[0];
      const b = comms[pairSize - 1];
      const rb = pairSize - 1;
      const n = 4 * 1024 * 1024;
      const data = pattern(n, 77);
      const into = new Uint8Array(n);
      const r = b.irecvBuffer(into, 0, 1);
      const sends = [a.isendBuffer(data, rb, 1), a.isend('tail', rb, 2)];
      const tail = b.irecv(0, 2);
      await finalizeAll(comms);
      await waitAll(sends);
      expect((await r).bytes).toBe(n);
      expect(same(into, data)).toBe(true);
      expect(await tail).toBe('tail');
      await expect(a.send(1, rb)).rejects.toMatchObject({ name: 'VmcommError', code: 'FINALIZED' });
      await expect(b.recv()).rejects.toMatchObject({ code: 'FINALIZED' });
      await a.finalize(); // idempotent
    });
  });
}

export type { Status };
