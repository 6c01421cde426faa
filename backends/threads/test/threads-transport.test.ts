import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import type { BackendComponents, CardFields, FrameSink, LocalityCard } from '../../../lib/backend.js';
import { emptyHeader, encodeHeader, FRAME_HEADER_BYTES, frameLength } from '../../../lib/protocol.js';
import { CELLS_BYTES } from '../../../lib/ring/collective-cells.js';
import { InboxSender, inboxBytes } from '../../../lib/ring/inbox.js';
import { runTsWorker } from '../../../lib/ring/test/helpers.js';
import { tryLoadNative } from '../../native/native.js';
import { parseThreadsInit, threads, ThreadsTransport, type ThreadsInit } from '../index.js';

let jobs = 0;

/** A sink that records (peer, payload) and losses. */
function sink() {
  const frames: { peer: number; data: Uint8Array }[] = [];
  const lost: { peer: number; error: Error }[] = [];
  let current: { peer: number; data: Uint8Array } | undefined;
  const s: FrameSink = {
    begin(peer, h) {
      current = { peer, data: new Uint8Array(frameLength(h)) };
      return current.data;
    },
    commit() {
      frames.push(current!);
    },
    lost(peer, error) {
      lost.push({ peer, error });
    },
  };
  return { s, frames, lost };
}

function components(rank: number, size: number, jobId: string, s: FrameSink): BackendComponents {
  return { rank, size, jobId, jobSecret: new Uint8Array(32), processNonce: 'p', address: '127.0.0.1', sink: s };
}

function card(rank: number, fields: CardFields, over: Partial<LocalityCard> = {}): LocalityCard {
  return { rank, processNonce: 'p', hostname: hostname(), pid: process.pid, address: '127.0.0.1', backends: { threads: fields }, priorities: { threads: 80 }, ...over };
}

const frame = (n: number, seed = 0) => ({
  header: encodeHeader({ ...emptyHeader(), payloadBytes: n, messageBytes: n }, new Uint8Array(FRAME_HEADER_BYTES)),
  payload: Uint8Array.from({ length: n }, (_, i) => (i + seed) & 0xff),
});

/** Two started, probed, connected-up transports of one job on this thread. */
async function pair(init: ThreadsInit = {}) {
  const jobId = `test-${process.pid}-${jobs++}`;
  const sinks = [sink(), sink()];
  const [a, b] = [0, 1].map((r) => threads({ allowSameThread: true, ...init })(components(r, 2, jobId, sinks[r].s)) as ThreadsTransport);
  const fields = await Promise.all([a.start(), b.start()]);
  expect(await a.probe(card(1, fields[1]!))).toBe(true);
  expect(await b.probe(card(0, fields[0]!))).toBe(true);
  a.addPeers([1]);
  b.addPeers([0]);
  return { a, b, sinks, fields };
}

describe('threads options', () => {
  it('applies defaults and refuses bad values with INVALID_ARGUMENT', () => {
    expect(parseThreadsInit()).toMatchObject({ ringBytes: 0, arenaBytes: 0, eagerLimitBytes: 16 * 1024, eagerCredits: 64, waitMode: 'auto', allowSameThread: false });
    for (const bad of [
      { ringBytes: 5000 },
      { ringBytes: 1024 },
      { eagerCredits: 0 },
      { minSpinNs: 10, maxSpinNs: 5 },
      { waitMode: 'fast' },
      { allowSameThread: 1 },
      { ringbytes: 4096 },
      { probeTimeoutMs: 1.5 },
    ]) {
      expect(() => parseThreadsInit(bad as ThreadsInit), JSON.stringify(bad)).toThrow(expect.objectContaining({ name: 'VmcommError', code: 'INVALID_ARGUMENT' }));
    }
  });

  it('sizes rings from a 4 MiB budget: 1 MiB at 2 ranks, 512 KiB at 8, 128 KiB at 32, 64 KiB at 64; reserves, does not commit', async () => {
    for (const [size, ringBytes] of [
      [2, 1 << 20],
      [8, 512 << 10],
      [32, 128 << 10],
      [64, 64 << 10],
    ]) {
      const t = threads()(components(0, size, `sizes-${jobs++}`, sink().s)) as ThreadsTransport;
      const fields = await t.start();
      expect(fields?.ringBytes).toBe(ringBytes);
      expect(t.memory.arenaBytes).toBeGreaterThan((size - 1) * ringBytes);
      // Beyond the rings: the inbox, the collective cells, ring headers and alignment.
      expect(t.memory.arenaBytes).toBeLessThan((size - 1) * ringBytes + inboxBytes(128) + CELLS_BYTES + size * 1024);
      expect(t.memory.rings).toBe(0);
      await t.stop();
    }
    const explicit = threads({ ringBytes: 8192, arenaBytes: 20_000 })(components(0, 4, `sizes-${jobs++}`, sink().s)) as ThreadsTransport;
    expect((await explicit.start())?.ringBytes).toBe(4096);
    await explicit.stop();
    const tooSmall = threads({ arenaBytes: 1000 })(components(0, 4, `sizes-${jobs++}`, sink().s)) as ThreadsTransport;
    expect(await tooSmall.start()).toBeUndefined();
    expect(tooSmall.unavailableReason).toMatch(/arenaBytes/);
  });

  it('is unavailable in a world of one', async () => {
    const t = threads()(components(0, 1, 'solo', sink().s));
    expect(await t.start()).toBeUndefined();
    expect(t.unavailableReason).toMatch(/world of one/);
  });
});

describe('threads detection', () => {
  it('proves a peer only from its hello with the nonce of its card', async () => {
    const jobId = `probe-${jobs++}`;
    const init = { allowSameThread: true, probeTimeoutMs: 100 };
    const [a, b] = [0, 1].map((r) => threads(init)(components(r, 3, jobId, sink().s)));
    const fields = await Promise.all([a.start(), b.start()]);
    expect(await a.probe(card(1, fields[1]!))).toBe(true);
    // A nonce that was never announced, another pid, another host, no fields, itself: false.
    expect(await a.probe(card(1, { ...fields[1]!, nonce: 'f'.repeat(32) }))).toBe(false);
    expect(await a.probe(card(1, fields[1]!, { pid: process.pid + 1 }))).toBe(false);
    expect(await a.probe(card(1, fields[1]!, { hostname: 'elsewhere' }))).toBe(false);
    expect(await a.probe(card(1, {}))).toBe(false);
    expect(await a.probe(card(0, fields[0]!))).toBe(false);
    // Rank 2 never started: nothing to prove.
    expect(await a.probe(card(2, { nonce: 'a'.repeat(32) }))).toBe(false);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('does not serve a peer on this very thread unless allowSameThread', async () => {
    const jobId = `same-${jobs++}`;
    const [a, b] = [0, 1].map((r) => threads()(components(r, 2, jobId, sink().s)));
    const fields = await Promise.all([a.start(), b.start()]);
    expect(await a.probe(card(1, fields[1]!))).toBe(false);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('proves a peer in another thread of this process, both ways, and carries frames to it', async () => {
    const jobId = `worker-${jobs++}`;
    const s = sink();
    const t = threads()(components(0, 2, jobId, s.s)) as ThreadsTransport;
    const fields = await t.start();
    const { result, worker } = runTsWorker<{ probed: boolean; card: CardFields; got: number[] }>('backends/threads/test/worker-rank.ts', { jobId, peerFields: fields });
    try {
      // The worker posts its card first, then its probe result and what it received.
      const first = await new Promise<{ card: CardFields }>((resolve) => worker.once('message', resolve));
      expect(await t.probe(card(1, first.card))).toBe(true);
      t.addPeers([1]);
      const channel = await t.connect(1);
      const f = frame(100_000, 7); // bigger than the worker's 64 KiB ring: streamed
      channel.send(f.header, f.payload);
      const answer = await new Promise<{ probed: boolean; got: number[] }>((resolve) => worker.on('message', (m) => 'probed' in m && resolve(m)));
      expect(answer.probed).toBe(true);
      expect(answer.got).toEqual([100_000, f.payload.reduce((x, y) => (x + y) % 65_521, 0)]);
      // And the worker's reply frame reached us.
      for (let i = 0; i < 1000 && s.frames.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
      expect(s.frames.map((x) => x.data.byteLength)).toEqual([3]);
    } finally {
      await worker.terminate();
      await t.stop();
      void result.catch(() => undefined);
    }
  }, 60_000);
});

describe.skipIf(tryLoadNative().addon === undefined)('a thread-rank that is terminated', () => {
  it('leaves its inbox gone (the addon stores it as the thread is torn down): a send waiting on it fails with PEER_LOST and the loss is reported', async () => {
    const jobId = `worker-${jobs++}`;
    const s = sink();
    const t = threads({ ringBytes: 4096, singleCopy: false })(components(0, 2, jobId, s.s)) as ThreadsTransport;
    const fields = await t.start();
    const { result, worker } = runTsWorker<unknown>('backends/threads/test/worker-idle-rank.ts', { jobId, peerFields: fields });
    void result.catch(() => undefined);
    try {
      const first = await new Promise<{ card: CardFields }>((resolve) => worker.once('message', resolve));
      expect(await t.probe(card(1, first.card))).toBe(true);
      t.addPeers([1]);
      await new Promise<void>((resolve) => worker.on('message', (m) => 'probed' in m && resolve()));
      const channel = await t.connect(1);
      // More than our 4 KiB ring to the worker, which never reads it (it has no poller): the send waits.
      const f = frame(50_000, 1);
      let outcome: Error | undefined | 'pending' = 'pending';
      channel.send(f.header, f.payload, (e) => (outcome = e));
      for (let k = 0; k < 20; k++) await new Promise((r) => setTimeout(r, 5));
      expect(outcome).toBe('pending');
      await worker.terminate(); // no JavaScript runs in the worker from here: no exit hook
      for (let k = 0; k < 400 && (outcome === 'pending' || s.lost.length === 0); k++) await new Promise((r) => setTimeout(r, 10));
      expect(outcome).toMatchObject({ code: 'PEER_LOST', peer: 1 });
      expect(s.lost.map((l) => l.peer)).toEqual([1]);
    } finally {
      await worker.terminate();
      await t.stop();
    }
  }, 30_000);
});

describe('threads channels', () => {
  it('carries frames both ways, in order; rings are carved on first use only', async () => {
    const { a, b, sinks } = await pair({ ringBytes: 4096 });
    expect(a.memory.rings).toBe(0);
    const ab = await a.connect(1);
    expect(a.memory.rings).toBe(1);
    expect(await a.connect(1)).toBe(ab);
    const sent: number[] = [];
    for (let i = 0; i < 200; i++) {
      const f = frame(i * 37, i);
      ab.send(f.header, f.payload, (e) => e === undefined && sent.push(i));
    }
    const ba = await b.connect(0);
    const g = frame(5);
    ba.send(g.header, g.payload);
    for (let k = 0; k < 2000 && (sinks[1].frames.length < 200 || sinks[0].frames.length < 1); k++) await new Promise((r) => setImmediate(r));
    expect(sent).toHaveLength(200);
    expect(sinks[1].frames.map((f) => f.data.byteLength)).toEqual(Array.from({ length: 200 }, (_, i) => i * 37));
    expect(sinks[1].frames[150].data[3]).toBe((3 + 150) & 0xff);
    expect(sinks[0].frames.map((f) => f.peer)).toEqual([1]);
    await Promise.all([ab.close(), ba.close()]);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a peer that stopped: frames that no longer fit fail with PEER_LOST, and the loss is reported once', async () => {
    const { a, b, sinks } = await pair({ ringBytes: 4096 });
    const ab = await a.connect(1);
    await b.stop();
    const results: (Error | undefined)[] = [];
    for (let i = 0; i < 10; i++) {
      const f = frame(1000, i);
      ab.send(f.header, f.payload, (e) => results.push(e));
    }
    for (let k = 0; k < 200 && results.length < 10; k++) await new Promise((r) => setImmediate(r));
    expect(results.filter((e) => e === undefined).length).toBeGreaterThan(0); // what fit the ring
    expect(results.filter((e) => e !== undefined)).not.toHaveLength(0);
    for (const e of results.filter((x) => x !== undefined)) expect(e).toMatchObject({ name: 'VmcommError', code: 'PEER_LOST', peer: 1 });
    expect(sinks[0].lost.map((l) => l.peer)).toEqual([1]);
    await expect(a.connect(1)).resolves.toBe(ab);
    await a.stop();
  });

  it('a frame the reader’s sink refuses: the ring is closed for its sender, whose frames that no longer fit fail with PEER_LOST (no wait forever)', async () => {
    const { a, b, sinks } = await pair({ ringBytes: 4096 });
    // The engine refuses a frame by throwing (CORRUPT, or a peer whose stream it gave up); here any of 777 bytes.
    const { begin } = sinks[1].s;
    sinks[1].s.begin = (peer, h) => {
      if (frameLength(h) === 777) throw new Error('refused by the engine');
      return begin(peer, h);
    };
    const ab = await a.connect(1);
    const results: (Error | undefined)[] = [];
    const refused = frame(777);
    ab.send(refused.header, refused.payload, (e) => results.push(e));
    for (let k = 0; k < 300 && sinks[1].lost.length === 0; k++) await new Promise((r) => setTimeout(r, 2));
    expect(sinks[1].lost.map((l) => l.peer)).toEqual([0]);
    // The sender is alive and keeps sending: the ring fills and nobody reads it any more.
    for (let i = 0; i < 10; i++) {
      const f = frame(1000, i);
      ab.send(f.header, f.payload, (e) => results.push(e));
    }
    for (let k = 0; k < 500 && results.length < 11; k++) await new Promise((r) => setTimeout(r, 2));
    expect(results).toHaveLength(11);
    expect(results.filter((e) => e !== undefined)).not.toHaveLength(0);
    for (const e of results.filter((x) => x !== undefined)) expect(e).toMatchObject({ name: 'VmcommError', code: 'PEER_LOST', peer: 1 });
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a reader that gives the ring up while both run: its sender learns it from its sweep, also when it sends nothing more; a reader that stops does not look like one', async () => {
    const { a, b, sinks } = await pair({ ringBytes: 4096 });
    const ab = await a.connect(1);
    const f = frame(100, 1);
    ab.send(f.header, f.payload);
    for (let k = 0; k < 300 && sinks[1].frames.length === 0; k++) await new Promise((r) => setTimeout(r, 2));
    expect(sinks[1].frames).toHaveLength(1);
    b.abandonFrame(0, new Error('given up in a test'));
    for (let k = 0; k < 300 && sinks[0].lost.length === 0; k++) await new Promise((r) => setTimeout(r, 10));
    expect(sinks[0].lost).toEqual([{ peer: 1, error: expect.objectContaining({ code: 'PEER_LOST', message: expect.stringContaining("stopped reading this rank's ring") }) }]);
    // The same pair shape, where the reader stops instead: its sender reports nothing.
    const other = await pair({ ringBytes: 4096 });
    const cd = await other.a.connect(1);
    cd.send(f.header, f.payload);
    for (let k = 0; k < 300 && other.sinks[1].frames.length === 0; k++) await new Promise((r) => setTimeout(r, 2));
    await other.b.stop();
    await new Promise((r) => setTimeout(r, 1_200)); // two sweeps
    expect(other.sinks[0].lost).toEqual([]);
    await Promise.all([a.stop(), b.stop(), other.a.stop()]);
  });

  it('a channel that fails on its sender’s side: the reader gets what was finished, then reports the sender lost (its sweep)', async () => {
    const { a, b, sinks } = await pair({ ringBytes: 4096 });
    const ab = await a.connect(1);
    const f = frame(100, 1);
    ab.send(f.header, f.payload);
    (ab as unknown as { fail(error: Error): void }).fail(new Error('the sender’s side broke'));
    for (let k = 0; k < 300 && sinks[1].lost.length === 0; k++) await new Promise((r) => setTimeout(r, 10));
    expect(sinks[1].frames.map((x) => x.data.byteLength)).toEqual([100]);
    expect(sinks[1].lost).toEqual([{ peer: 0, error: expect.objectContaining({ name: 'VmcommError', code: 'PEER_LOST', peer: 0 }) }]);
    expect(sinks[0].lost.map((l) => l.peer)).toEqual([1]); // the sender reported it on its side
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a loop of poll() that never yields still runs the sweep: the sender whose channel failed is reported lost', async () => {
    const { a, b, sinks } = await pair({ ringBytes: 4096 });
    const ab = await a.connect(1);
    (ab as unknown as { fail(error: Error): void }).fail(new Error('the sender’s side broke'));
    // What a `test()` loop does: poll, never returning to the event loop, so no timer runs.
    const until = performance.now() + 5_000;
    while (sinks[1].lost.length === 0 && performance.now() < until) b.poll();
    expect(sinks[1].lost).toEqual([{ peer: 0, error: expect.objectContaining({ name: 'VmcommError', code: 'PEER_LOST', peer: 0 }) }]);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('refuses a ring announcement that does not fit the peer arena: CORRUPT, reported as that peer lost', async () => {
    const { a, b, sinks, fields } = await pair();
    expect(fields[0]).toBeDefined();
    // Rank 0 announces garbage into rank 1's inbox (reaching into b's arena the way a peer would).
    const arena = (b as unknown as { arena: { sab: SharedArrayBuffer; plan: { slots: number } } }).arena;
    const inbox = new InboxSender({ sab: arena.sab, byteOffset: 0, byteLength: inboxBytes(arena.plan.slots) });
    expect(inbox.announce(0, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]))).toBe(true);
    for (let k = 0; k < 100 && sinks[1].lost.length === 0; k++) await new Promise((r) => setImmediate(r));
    expect(sinks[1].lost).toHaveLength(1);
    expect(sinks[1].lost[0]).toMatchObject({ peer: 0, error: { code: 'CORRUPT' } });
    await Promise.all([a.stop(), b.stop()]);
  });

  it('a peer killed between claiming an announcement slot and filling it does not hide the rings announced after it', async () => {
    const { a, b, sinks } = await pair();
    // A third rank's claim in rank 1's inbox, never filled (what a kill in that window leaves).
    const arena = (b as unknown as { arena: { sab: SharedArrayBuffer; plan: { slots: number } } }).arena;
    expect(new InboxSender({ sab: arena.sab, byteOffset: 0, byteLength: inboxBytes(arena.plan.slots) }).claim()).toBe(0);
    const ab = await a.connect(1);
    const f = frame(8, 3);
    ab.send(f.header, f.payload);
    // Rank 1's sweep gives the claim up once it has stalled for ANNOUNCEMENT_STALL_MS; rank 0's ring,
    // announced behind it, is then polled (it was never, before).
    const until = performance.now() + 8_000;
    while (sinks[1].frames.length === 0 && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(sinks[1].frames.map((x) => [x.peer, [...x.data]])).toEqual([[0, [...f.payload]]]);
    expect(sinks[1].lost).toEqual([]);
    await ab.close();
    await Promise.all([a.stop(), b.stop()]);
  }, 15_000);

  it('connect refuses ranks it does not serve, and everything after stop', async () => {
    const { a, b } = await pair();
    await expect(a.connect(0)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(a.connect(5)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await Promise.all([a.stop(), b.stop()]);
    await expect(a.connect(1)).rejects.toMatchObject({ code: 'FINALIZED' });
    await a.stop(); // idempotent
  });

  it('offers collective cells in each rank\'s arena: a publish is seen by the peer and wakes it from sleep through its watch', async () => {
    const { a, b } = await pair({ maxSpinNs: 20_000, spinBudgetNs: 20_000 });
    const ca = a.collectiveCells(3, [0, 1])!;
    const cb = b.collectiveCells(3, [0, 1])!;
    expect(ca).toBeDefined();
    expect(ca.payloadBytes).toBe(512);
    // Out of range, a member it does not serve, a communicator without this rank: no cells.
    expect(a.collectiveCells(32, [0, 1])).toBeUndefined();
    expect(a.collectiveCells(-1, [0, 1])).toBeUndefined();
    expect(a.collectiveCells(3, [0, 5])).toBeUndefined();
    expect(a.collectiveCells(3, [1])).toBeUndefined();
    // Another key is another cell: nothing written under key 3 shows there.
    const other = b.collectiveCells(4, [0, 1])!;
    ca.doubles(0, 1)[0] = 2.5;
    ca.announce(77);
    for (let k = 0; k < 5000 && b.waiting?.state !== 'sleeping'; k++) await new Promise((r) => setImmediate(r));
    expect(b.waiting?.state).toBe('sleeping');
    const wakesBefore = b.waiting!.counts.wakes;
    let seen = 0;
    cb.watch(() => {
      seen = cb.stamp(0);
      return seen !== 0;
    });
    ca.publish(41);
    // No polling from here: only the wake-up can run b's watch.
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the watch never saw the stamp')), 10_000);
      const check = () => (seen !== 0 ? (clearTimeout(t), resolve()) : setTimeout(check, 1));
      check();
    });
    expect(seen).toBe(41);
    expect(b.waiting!.counts.wakes).toBeGreaterThan(wakesBefore);
    expect(cb.presence(0)).toBe(77);
    expect(cb.doubles(0, 1)[0]).toBe(2.5);
    // The byte view of a payload buffer is the same memory as its double view.
    expect(Array.from(cb.payload(0, 1).subarray(0, 8))).toEqual(Array.from(new Uint8Array(new Float64Array([2.5]).buffer)));
    expect(other.stamp(0)).toBe(0);
    expect(other.presence(0)).toBe(0);
    await Promise.all([a.stop(), b.stop()]);
    expect(a.collectiveCells(3, [0, 1])).toBeUndefined();
  });

  it('sleeps when idle and is woken by a send', async () => {
    const { a, b, sinks } = await pair({ maxSpinNs: 20_000, spinBudgetNs: 20_000 });
    for (let k = 0; k < 5000 && b.waiting?.state !== 'sleeping'; k++) await new Promise((r) => setImmediate(r));
    expect(b.waiting?.state).toBe('sleeping');
    const ch = await a.connect(1);
    const f = frame(8);
    ch.send(f.header, f.payload);
    // No polling from here: only the wake-up can deliver it.
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('not delivered')), 10_000);
      const check = () => (sinks[1].frames.length > 0 ? (clearTimeout(t), resolve()) : setTimeout(check, 1));
      check();
    });
    expect(b.waiting?.counts.wakes).toBeGreaterThan(0);
    await Promise.all([a.stop(), b.stop()]);
  });
  it("with waitMode 'yield' empty polls call sched_yield (when the addon is built); a peer on this thread still gets event-loop turns", async () => {
    const hasAddon = tryLoadNative().addon !== undefined;
    for (const [waitMode, yieldOnEmpty] of [['yield', hasAddon], ['spin', false]] as const) {
      const { a, b, sinks } = await pair({ waitMode });
      expect(a.waiting).toMatchObject({ yieldOnEmpty, yieldBetweenPolls: true });
      const ch = await a.connect(1);
      const f = frame(8);
      ch.send(f.header, f.payload);
      for (let k = 0; k < 1000 && sinks[1].frames.length === 0; k++) {
        expect(b.poll()).toBeGreaterThanOrEqual(0);
        await new Promise((r) => setImmediate(r));
      }
      expect(sinks[1].frames).toHaveLength(1);
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
