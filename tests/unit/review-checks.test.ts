/**
 * Review: behaviours that were checked and found correct. Each of these could fail (they pin down a
 * rule of DESIGN §2/§3); they are kept as regression tests.
 */
import { describe, expect, it } from 'vitest';
import type { Channel, Transport } from '../../lib/backend.js';
import { ValueCodec } from '../../lib/codec.js';
import type { Communicator } from '../../lib/communicator.js';
import { Engine, type PeerPlan } from '../../lib/engine.js';
import { createLocalJob } from '../../lib/local-bootstrap.js';
import type { PostedRecv } from '../../lib/matching.js';
import { decodeHeader, emptyHeader, encodeHeader, FRAME_HEADER_BYTES, FrameFlags, FrameKind } from '../../lib/protocol.js';
import { createRequest, waitAll, waitAny } from '../../lib/request.js';
import { initWithBootstrap } from '../../lib/start-world.js';
import { memory } from '../helpers/memory-transport.js';
import { within, sleep, finalizeAfterEach } from '../helpers/settle.js';


const EAGER = 256;
const CREDITS = 4;
const track = finalizeAfterEach();
async function world(n: number, extra: { eagerLimitBytes?: number; eagerCredits?: number } = {}): Promise<Communicator[]> {
  const plugin = memory({ eagerLimitBytes: EAGER, eagerCredits: CREDITS });
  const comms = await Promise.all(createLocalJob(n).map((b) => initWithBootstrap(b, { backends: [plugin], only: ['memory'], ...extra })));
  return track(comms);
}

/**
 * True when a small message from `a` to `dest` still goes eager: with no receive posted, an eager send
 * completes, a rendezvous one times out (and is withdrawn).
 */
async function stillEager(a: Communicator, dest: number, b: Communicator, tag: number): Promise<boolean> {
  const r = await within(a.sendBuffer(new Uint8Array(8), dest, tag, { timeout: 100 }), 2000);
  if (r.status === 'fulfilled') await b.recvBuffer(new Uint8Array(8), a.rank, tag); // drain it
  return r.status === 'fulfilled';
}

describe('review checks: credits never leak', () => {
  it('a long stream consumed every which way (truncated, value-of-buffer, buffer-of-value, unexpected, posted) stays eager', async () => {
    const [a, b] = await world(2);
    expect(await stillEager(a, 1, b, 1)).toBe(true);
    for (let i = 0; i < 200; i++) {
      const kind = i % 5;
      if (kind === 0) {
        const s = a.isendBuffer(new Uint8Array(100), 1, 2);
        await expect(b.recvBuffer(new Uint8Array(10), 0, 2)).rejects.toMatchObject({ code: 'TRUNCATE', status: { bytes: 100 } });
        await s;
      } else if (kind === 1) {
        await a.sendBuffer(new Uint8Array([i & 255]), 1, 2);
        expect(await b.recv(0, 2)).toEqual(new Uint8Array([i & 255]));
      } else if (kind === 2) {
        const r = b.irecvBuffer(new Uint8Array(64), 0, 2);
        await a.send({ i }, 1, 2);
        expect((await r).bytes).toBeGreaterThan(0);
      } else if (kind === 3) {
        const c = b.irecv(0, 2);
        expect(c.cancel()).toBe(true);
        await expect(c).rejects.toMatchObject({ code: 'ABORTED' });
        await a.send(i, 1, 2);
        expect(await b.recv(0, 2)).toBe(i);
      } else {
        const r = b.irecv(0, 2);
        await a.send(i, 1, 2);
        expect(await r).toBe(i);
      }
    }
    expect(await stillEager(a, 1, b, 1)).toBe(true);
  });

  it('messages to self: more than the credits, unreceived, then all received in order; still eager after', async () => {
    const [a] = await world(1, { eagerLimitBytes: 64, eagerCredits: 2 });
    const sends = Array.from({ length: 20 }, (_, i) => a.isendBuffer(new Uint8Array(i % 3 === 0 ? 200 : 4).fill(i), 0, 5));
    for (let i = 0; i < 20; i++) {
      const buf = new Uint8Array(200);
      const st = await a.recvBuffer(buf, 0, 5);
      expect(st.bytes).toBe(i % 3 === 0 ? 200 : 4);
      expect(buf[0]).toBe(i);
    }
    await waitAll(sends);
    expect(await stillEager(a, 0, a, 6)).toBe(true);
  });

  it('a CORRUPT value (undecodable) is reported on its receive, returns its credit, and the next message is intact', async () => {
    const sent: { kind: number; aux: number }[] = [];
    const channel: Channel = {
      send: (h, _p, done) => {
        const d = decodeHeader(h, emptyHeader());
        sent.push({ kind: d.kind, aux: d.aux });
        done?.();
      },
      close: async () => undefined,
    };
    const t: Transport = { name: 'fake', priority: 1, role: 'local', eagerLimitBytes: 64, eagerCredits: 2, start: async () => ({}), probe: () => true, addPeers: () => undefined, connect: async () => channel, stop: async () => undefined };
    const plans: PeerPlan[] = [0, 1].map(() => ({ transport: t, eagerLimitBytes: 64, eagerCredits: 2 }));
    const codec = new ValueCodec();
    const engine = new Engine(1, 2, codec, { peerLost: () => undefined });
    engine.ready(plans);
    let seq = 0;
    const deliver = (payload: Uint8Array) => {
      const h = emptyHeader();
      h.kind = FrameKind.EAGER;
      h.seq = seq++;
      h.flags = FrameFlags.OBJECT;
      h.tag = 3;
      h.payloadBytes = h.messageBytes = payload.byteLength;
      const target = engine.begin(0, encodeHeader(h, new Uint8Array(FRAME_HEADER_BYTES)));
      target?.set(payload);
      engine.commit(0);
    };
    const post = () => {
      const [req, control] = createRequest<unknown>(undefined);
      const posted: PostedRecv = { source: 0, tag: 3, mode: 'value', bytes: undefined, control };
      engine.receive(0, posted, (r) => r);
      return req;
    };
    const bad = post();
    deliver(new Uint8Array([0xc1, 0xc1, 0xc1])); // 0xc1 is "never used" in msgpack
    await expect(bad).rejects.toMatchObject({ code: 'CORRUPT' });
    deliver(codec.encode('fine')); // unexpected first, then received
    expect(await post()).toBe('fine');
    await sleep(0);
    expect(sent).toContainEqual({ kind: FrameKind.CREDIT, aux: 1 }); // 2 credits → batches of 1
    expect(sent.filter((f) => f.kind === FrameKind.CREDIT).reduce((n, f) => n + f.aux, 0)).toBe(2);
  });
});

describe('review checks: rendezvous', () => {
  it('cancel() of a receive that matched an RTS returns false and the receive still completes', async () => {
    const [a, b] = await world(2);
    const s = a.isendBuffer(new Uint8Array(4 * EAGER).fill(7), 1, 9);
    while (!b.iprobe(0, 9)) await sleep(1);
    const into = new Uint8Array(4 * EAGER);
    const r = b.irecvBuffer(into, 0, 9); // takes the RTS, sends CTS
    expect(r.cancel()).toBe(false);
    expect(await r).toEqual({ source: 0, tag: 9, bytes: 4 * EAGER });
    expect(into.every((x) => x === 7)).toBe(true);
    await s;
  });

  it('a send timing out while its CTS is on the way: either it completes and the data arrives, or it is withdrawn and nothing arrives', async () => {
    const [a, b] = await world(2);
    const outcomes = new Set<string>();
    for (let delay = 0; delay < 12; delay++) {
      const tag = 100 + delay;
      const data = new Uint8Array(2 * EAGER).fill(delay + 1);
      const send = within(a.sendBuffer(data, 1, tag, { timeout: 5 }), 3000);
      await sleep(delay);
      const into = new Uint8Array(2 * EAGER);
      const recv = within(b.recvBuffer(into, 0, tag), 300);
      const s = await send;
      if (s.status === 'fulfilled') {
        expect(await recv).toMatchObject({ status: 'fulfilled', value: { bytes: 2 * EAGER } });
        expect(into[0]).toBe(delay + 1);
        outcomes.add('completed');
      } else {
        expect(s).toMatchObject({ status: 'rejected', error: { code: 'TIMEOUT' } });
        await a.send('marker', 1, tag);
        // The receive posted meanwhile gets the marker's encoded bytes, not the withdrawn data.
        const r = await recv;
        expect(r.status).toBe('fulfilled');
        expect(into[0]).not.toBe(delay + 1);
        outcomes.add('withdrawn');
      }
    }
    expect(outcomes.has('withdrawn')).toBe(true);
  });

  it('eager and rendezvous interleaved on one (source, tag), credits running out mid-stream, receives posted late: order holds', async () => {
    const [a, b] = await world(2);
    const sends = Array.from({ length: 60 }, (_, i) => {
      const m = new Uint8Array(i % 7 === 0 ? 3 * EAGER : 8);
      new DataView(m.buffer).setUint32(0, i, true);
      return a.isendBuffer(m, 1, 4);
    });
    await sleep(20);
    const seen: number[] = [];
    for (let i = 0; i < 60; i++) {
      const into = new Uint8Array(3 * EAGER);
      await b.recvBuffer(into, 0, 4);
      seen.push(new DataView(into.buffer).getUint32(0, true));
    }
    await waitAll(sends);
    expect(seen).toEqual(Array.from({ length: 60 }, (_, i) => i));
  });
});

describe('review checks: modes, sizes, self', () => {
  it('0-byte messages through every mode, eager and (credits exhausted) rendezvous', async () => {
    const [a, b] = await world(2);
    const sends = Array.from({ length: 3 * CREDITS }, () => a.isendBuffer(new Uint8Array(0), 1, 8));
    await sleep(20);
    for (let i = 0; i < sends.length; i++) {
      const mode = i % 3;
      if (mode === 0) expect(await b.recv(0, 8)).toEqual(new Uint8Array(0));
      else if (mode === 1) expect(await b.recvBuffer(new Uint8Array(0), 0, 8)).toEqual({ source: 0, tag: 8, bytes: 0 });
      else expect(await b.recvMessage(0, 8)).toEqual({ data: new Uint8Array(0), source: 0, tag: 8 });
    }
    await waitAll(sends);
  });

  it('a size-1 world: self eager, rendezvous, truncation, withdrawal, probe and sendrecv', async () => {
    const [a] = await world(1, { eagerLimitBytes: 64, eagerCredits: 2 });
    expect(a.transportOf(0)).toBe('self');
    expect(await a.sendrecv('me', 0, 0)).toBe('me');
    const big = new Uint8Array(1000).fill(3);
    expect(await a.sendrecv(big, 0, 0)).toEqual(big); // rendezvous value to self, receive posted first
    await expect(a.sendBuffer(big, 0, 1, { timeout: 20 })).rejects.toMatchObject({ code: 'TIMEOUT' });
    expect(a.iprobe(0, 1)).toBeUndefined();
    const s = a.isendBuffer(big, 0, 1);
    expect(await a.probe(0, 1)).toEqual({ source: 0, tag: 1, bytes: 1000 });
    await expect(a.recvBuffer(new Uint8Array(10), 0, 1)).rejects.toMatchObject({ code: 'TRUNCATE', status: { bytes: 1000 } });
    await s;
  });

  it('ANY_SOURCE + ANY_TAG probe then recv of what it reported, across two senders', async () => {
    const [a, b, c] = await world(3);
    await b.send('from-b', 0, 21);
    const cs = c.isendBuffer(new Uint8Array(3 * EAGER), 0, 22); // rendezvous: completes once received
    await sleep(10);
    for (let i = 0; i < 2; i++) {
      const st = await a.probe();
      const m = await a.recvMessage(st.source, st.tag);
      expect([m.source, m.tag]).toEqual([st.source, st.tag]);
    }
    expect(a.iprobe()).toBeUndefined();
    await cs;
  });
});

describe('review checks: requests and errors', () => {
  it('rejected requests nobody awaits do not surface as unhandled rejections', async () => {
    const [a, b] = await world(2);
    a.isend(1, 99); // INVALID_ARGUMENT, never awaited
    b.irecv(0, 5); // rejected FINALIZED at finalize, never awaited
    a.isendBuffer(new Uint8Array(4 * EAGER), 1, 6); // rendezvous, unmatched: rejected at finalize? (pending send)
    const r = b.irecv(0, 7);
    r.cancel();
    await sleep(10);
    // finalize happens in afterEach; a leftover unhandled rejection fails this file.
    b.irecvBuffer(new Uint8Array(4 * EAGER), 0, 6); // matches the rendezvous send so finalize can finish
  });

  it('waitAny picks the completed one and leaves the others usable', async () => {
    const [a, b] = await world(2);
    const r1 = b.irecv(0, 31);
    const r2 = b.irecv(0, 32);
    await a.send('two', 1, 32);
    expect(await waitAny([r1, r2])).toEqual({ index: 1, value: 'two' });
    await a.send('one', 1, 31);
    expect(await r1).toBe('one');
    await expect(waitAny([])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('every call after finalize rejects (or throws) FINALIZED at once', async () => {
    const [a, b] = await world(2);
    await Promise.all([a.finalize(), b.finalize()]);
    const buf = new Uint8Array(4);
    for (const call of [
      () => a.send(1, 1),
      () => a.isend(1, 1),
      () => a.recv(1),
      () => a.irecv(),
      () => a.recvMessage(),
      () => a.sendBuffer(buf, 1),
      () => a.isendBuffer(buf, 1),
      () => a.recvBuffer(buf),
      () => a.irecvBuffer(buf),
      () => a.probe(),
      () => a.sendrecv(1, 1, 1),
      () => a.barrier(),
    ]) {
      expect(await within(call(), 100)).toMatchObject({ status: 'rejected', error: { code: 'FINALIZED' } });
    }
    expect(() => a.iprobe()).toThrow(expect.objectContaining({ code: 'FINALIZED' }));
  });
});
