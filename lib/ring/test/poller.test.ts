import { describe, expect, it } from 'vitest';
import { Inbox, InboxSender, inboxBytes, initInbox } from '../inbox.js';
import { Poller } from '../poller.js';
import { PendingChannels, RingChannel } from '../ring-channel.js';
import type { Region } from '../region.js';
import { RING_HEADER_BYTES, RingConsumer, RingProducer, initRing, ringRegionBytes } from '../spsc-ring.js';
import { emptyHeader, encodeHeader, FrameKind, newHeaderBuffer } from '../../protocol.js';
import { bytes, header, recordingSink } from './helpers.js';

/** An arena: one inbox at 0, then rings of `dataBytes`; descriptors are (offset u32, length u32). */
function arena(rings: number, dataBytes: number, slots = 8) {
  const inboxLength = inboxBytes(slots);
  const ringLength = ringRegionBytes(dataBytes);
  const sab = new SharedArrayBuffer(inboxLength + rings * ringLength);
  initInbox({ sab, byteOffset: 0, byteLength: inboxLength }, slots);
  const ring = (i: number): Region => ({ sab, byteOffset: inboxLength + i * ringLength, byteLength: ringLength });
  const descriptorOf = (r: Region) => {
    const d = new Uint8Array(8);
    new DataView(d.buffer).setUint32(0, r.byteOffset, true);
    new DataView(d.buffer).setUint32(4, r.byteLength, true);
    return d;
  };
  const attach = (from: number, d: Uint8Array): RingConsumer => {
    const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
    return new RingConsumer({ sab, byteOffset: v.getUint32(0, true), byteLength: v.getUint32(4, true) });
  };
  return { sab, inbox: { sab, byteOffset: 0, byteLength: inboxLength }, ring, descriptorOf, attach };
}

describe('poller', () => {
  it('polls only announced rings, round-robin: every sender is served in turn', () => {
    const a = arena(3, 4096);
    const sink = recordingSink();
    const woken: number[] = [];
    const lost: [number, Error][] = [];
    const poller = new Poller(new Inbox(a.inbox), sink, { attach: a.attach, wakeProducer: (p) => woken.push(p), lost: (p, e) => lost.push([p, e]), inboxBroken: (e) => lost.push([-1, e]) }, { framesPerPoll: 3, framesPerRing: 1 });
    const sender = new InboxSender(a.inbox);
    const producers = [0, 1, 2].map((i) => {
      initRing(a.ring(i));
      return new RingProducer(a.ring(i));
    });
    // Ring 2 gets frames but is never announced: never polled.
    for (const [i, p] of producers.entries()) for (let k = 0; k < 5; k++) p.send(header(4, i * 100 + k), bytes(4, k), undefined);
    sender.announce(10, a.descriptorOf(a.ring(0)));
    sender.announce(11, a.descriptorOf(a.ring(1)));
    for (let k = 1; k <= 5; k++) {
      poller.poll();
      // One frame per ring per poll (budget 3, one per ring), in each ring's order.
      expect(sink.frames.filter((f) => f.peer === 10).map((f) => f.id)).toEqual([0, 1, 2, 3, 4].slice(0, k));
      expect(sink.frames.filter((f) => f.peer === 11).map((f) => f.id)).toEqual([100, 101, 102, 103, 104].slice(0, k));
    }
    expect(sink.frames).toHaveLength(10);
    expect(poller.peers.sort()).toEqual([10, 11]);
    expect(lost).toEqual([]);
  });

  it('a frame whose delivery detaches another ring ends the round: the detached ring delivers nothing more', () => {
    const a = arena(2, 4096);
    const sink = recordingSink();
    const sender = new InboxSender(a.inbox);
    const producers = [0, 1].map((i) => {
      initRing(a.ring(i));
      return new RingProducer(a.ring(i));
    });
    for (const [i, p] of producers.entries()) p.send(header(4, i * 100), bytes(4, 0), undefined);
    sender.announce(10, a.descriptorOf(a.ring(0)));
    sender.announce(11, a.descriptorOf(a.ring(1)));
    const poller = new Poller(new Inbox(a.inbox), sink, { attach: a.attach, wakeProducer: () => undefined, lost: () => undefined, inboxBroken: () => undefined });
    // Rank 10's frame has rank 11 given up (what Transport.abandonFrame does from the engine).
    const commit = sink.commit.bind(sink);
    sink.commit = (peer) => {
      commit(peer);
      if (peer === 10) poller.detach(11);
    };
    poller.poll();
    poller.poll();
    expect(sink.frames.map((f) => f.peer)).toEqual([10]);
    expect(poller.peers).toEqual([10]);
  });

  it('a budget smaller than the rings still reaches every ring over successive polls', () => {
    const a = arena(4, 4096);
    const sink = recordingSink();
    const poller = new Poller(new Inbox(a.inbox), sink, { attach: a.attach, wakeProducer: () => undefined, lost: () => undefined, inboxBroken: () => undefined }, { framesPerPoll: 1, framesPerRing: 1 });
    const sender = new InboxSender(a.inbox);
    for (let i = 0; i < 4; i++) {
      initRing(a.ring(i));
      const p = new RingProducer(a.ring(i));
      for (let k = 0; k < 3; k++) p.send(header(0, k), undefined, undefined);
      sender.announce(i, a.descriptorOf(a.ring(i)));
    }
    for (let k = 0; k < 4; k++) poller.poll();
    expect(new Set(sink.frames.map((f) => f.peer))).toEqual(new Set([0, 1, 2, 3]));
  });

  it('drops a corrupt ring and reports its peer; the other rings go on', () => {
    const a = arena(2, 4096);
    const sink = recordingSink();
    const lost: number[] = [];
    const poller = new Poller(new Inbox(a.inbox), sink, { attach: a.attach, wakeProducer: () => undefined, lost: (p) => lost.push(p), inboxBroken: () => undefined });
    const sender = new InboxSender(a.inbox);
    for (let i = 0; i < 2; i++) {
      initRing(a.ring(i));
      sender.announce(i, a.descriptorOf(a.ring(i)));
    }
    poller.poll();
    // Ring 0's first record boundary holds a word that is no record's stamp.
    Atomics.store(new Int32Array(a.sab, a.ring(0).byteOffset + RING_HEADER_BYTES, 1), 0, 0x1234);
    const p1 = new RingProducer(a.ring(1));
    p1.send(header(3, 7), bytes(3, 1), undefined);
    for (let k = 0; k < 3; k++) poller.poll();
    expect(lost).toEqual([0]);
    expect(sink.frames.map((f) => [f.peer, f.id])).toEqual([[1, 7]]);
    // A bad announcement (its ring fails validation) is refused and reported too.
    sender.announce(5, new Uint8Array(8));
    poller.poll();
    expect(lost).toEqual([0, 5]);
  });

  it('wakes a producer that waits for space once it was freed', () => {
    const a = arena(1, 256);
    const sink = recordingSink();
    const woken: number[] = [];
    const poller = new Poller(new Inbox(a.inbox), sink, { attach: a.attach, wakeProducer: (p) => woken.push(p), lost: () => undefined, inboxBroken: () => undefined });
    initRing(a.ring(0));
    const p = new RingProducer(a.ring(0));
    new InboxSender(a.inbox).announce(3, a.descriptorOf(a.ring(0)));
    p.send(header(200, 1), bytes(200, 1), undefined);
    p.send(header(200, 2), bytes(200, 2), undefined);
    expect(p.waiting).toBe(true);
    poller.poll();
    expect(woken).toEqual([3]);
  });
});

describe('ring channel', () => {
  function setup(dataBytes = 256) {
    const a = arena(1, dataBytes);
    initRing(a.ring(0));
    const woken: number[] = [];
    const lost: Error[] = [];
    const pending = new PendingChannels();
    const owner = new Inbox(a.inbox);
    const channel = new RingChannel({
      peer: 4,
      self: 2,
      ring: a.ring(0),
      descriptor: a.descriptorOf(a.ring(0)),
      peerInbox: new InboxSender(a.inbox),
      wake: (p) => woken.push(p),
      needsFlush: (c) => pending.add(c),
      lost: (_p, e) => lost.push(e),
    });
    const sink = recordingSink();
    const poller = new Poller(owner, sink, { attach: a.attach, wakeProducer: () => undefined, lost: () => undefined, inboxBroken: () => undefined });
    return { a, woken, lost, pending, owner, channel, sink, poller };
  }

  it('announces its ring, and wakes the peer only while it sleeps', () => {
    const s = setup();
    s.channel.send(header(8, 1), bytes(8, 1));
    expect(s.woken).toEqual([]);
    s.owner.prepareToSleep();
    s.channel.send(header(8, 2), bytes(8, 2));
    expect(s.woken).toEqual([4]);
    s.owner.clearWaiter();
    s.poller.poll();
    expect(s.sink.frames.map((f) => [f.peer, f.id])).toEqual([
      [2, 1],
      [2, 2],
    ]);
  });

  it('queues what does not fit, flushes from poll, and close() resolves once all is in', async () => {
    const s = setup();
    const dones: number[] = [];
    for (let i = 0; i < 10; i++) s.channel.send(header(100, i), bytes(100, i), () => dones.push(i));
    expect(s.pending.size).toBe(1);
    let closed = false;
    void s.channel.close().then(() => (closed = true));
    for (let k = 0; k < 100 && s.pending.size > 0; k++) {
      s.poller.poll();
      s.pending.flushAll();
    }
    await Promise.resolve();
    expect(closed).toBe(true);
    expect(dones).toEqual([...Array(10).keys()]);
    s.poller.poll();
    expect(s.sink.frames.map((f) => f.id)).toEqual([...Array(10).keys()]);
    // After close: refused with FINALIZED.
    const err = await new Promise<Error | undefined>((r) => s.channel.send(header(0), undefined, r));
    expect(err).toMatchObject({ name: 'VmcommError', code: 'FINALIZED' });
  });

  it('fails queued frames with PEER_LOST when the peer finalized while they waited', async () => {
    const s = setup();
    const results: (Error | undefined)[] = [];
    for (let i = 0; i < 3; i++) s.channel.send(header(100, i), bytes(100, i), (e) => results.push(e));
    s.owner.setState(2); // CLOSED
    s.pending.flushAll();
    expect(results[0]).toBeUndefined();
    expect(results.slice(1)).toEqual([expect.objectContaining({ code: 'PEER_LOST', peer: 4 }), expect.objectContaining({ code: 'PEER_LOST' })]);
    expect(s.lost).toHaveLength(1);
    const late = await new Promise<Error | undefined>((r) => s.channel.send(header(0), undefined, r));
    expect(late).toMatchObject({ code: 'PEER_LOST' });
  });

  it('refuses a header that does not announce the payload, with INVALID_ARGUMENT', async () => {
    const s = setup();
    const err = await new Promise<Error | undefined>((r) => s.channel.send(header(5), bytes(4, 0), r));
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('trySend takes nothing whose header misdescribes its payload, from the word-view header buffer of the core or any other', () => {
    const s = setup();
    const words = newHeaderBuffer();
    const h = { ...emptyHeader(), kind: FrameKind.EAGER, payloadBytes: 5, messageBytes: 5 };
    encodeHeader(h, words);
    expect(s.channel.trySend(words, bytes(4, 0))).toBe(false);
    expect(s.channel.trySend(words, undefined)).toBe(false);
    expect(s.channel.trySend(header(5), bytes(4, 0))).toBe(false);
    // A length of 2^32 + 4 has the 4-byte payload's low word: the high word must be checked too.
    encodeHeader({ ...h, payloadBytes: 2 ** 32 + 4, messageBytes: 2 ** 32 + 4 }, words);
    expect(s.channel.trySend(words, bytes(4, 0))).toBe(false);
    expect(s.channel.completed).toBe(0);
    encodeHeader({ ...h, payloadBytes: 4, messageBytes: 4 }, words);
    expect(s.channel.trySend(words, bytes(4, 7))).toBe(true);
    s.poller.poll();
    expect(s.sink.frames.map((f) => f.length)).toEqual([4]);
  });

  it('holds the announcement while the peer inbox is full and makes it once there is room', () => {
    const a = arena(2, 256, 2);
    initRing(a.ring(0));
    initRing(a.ring(1));
    const sender = new InboxSender(a.inbox);
    expect(sender.announce(9, a.descriptorOf(a.ring(1)))).toBe(true);
    expect(sender.announce(9, a.descriptorOf(a.ring(1)))).toBe(true); // both slots taken
    const pending = new PendingChannels();
    const channel = new RingChannel({ peer: 0, self: 1, ring: a.ring(0), descriptor: a.descriptorOf(a.ring(0)), peerInbox: sender, wake: () => undefined, needsFlush: (c) => pending.add(c), lost: () => undefined });
    channel.send(header(4, 1), bytes(4, 1));
    expect(channel.pending).toBe(true);
    const sink = recordingSink();
    const poller = new Poller(new Inbox(a.inbox), sink, { attach: a.attach, wakeProducer: () => undefined, lost: () => undefined, inboxBroken: () => undefined });
    poller.poll(); // takes ring 1's announcements (the second is refused: a second ring from 9), freeing the slots
    pending.flushAll();
    expect(channel.pending).toBe(false);
    poller.poll();
    expect(sink.frames.map((f) => [f.peer, f.id])).toEqual([[1, 1]]);
  });

  it('a producer whose channel failed is reported lost by the sweep, after what it finished was read; a closed one is not', () => {
    for (const signalFailure of [true, false]) {
      const a = arena(2, 4096);
      const lost: [number, Error][] = [];
      const sink = recordingSink();
      const poller = new Poller(new Inbox(a.inbox), sink, { attach: a.attach, wakeProducer: () => undefined, lost: (p, e) => lost.push([p, e]), inboxBroken: () => undefined });
      const channelTo = (i: number) => {
        initRing(a.ring(i));
        return new RingChannel({ peer: 0, self: 5 + i, ring: a.ring(i), descriptor: a.descriptorOf(a.ring(i)), peerInbox: new InboxSender(a.inbox), wake: () => undefined, needsFlush: () => undefined, lost: () => undefined, signalFailure });
      };
      const failing = channelTo(0);
      const closing = channelTo(1);
      failing.send(header(4, 1), bytes(4, 1)); // finished before the failure: still delivered
      closing.send(header(4, 2), bytes(4, 2));
      failing.fail(new Error('the sender’s side broke'));
      void closing.close();
      poller.poll(); // takes both rings (a poll delivers up to its budget)
      poller.sweepFailed();
      poller.poll();
      poller.sweepFailed();
      expect(sink.frames.map((f) => [f.peer, f.id]).sort()).toEqual([[5, 1], [6, 2]]);
      if (signalFailure) {
        expect(lost).toEqual([[5, expect.objectContaining({ name: 'VmcommError', code: 'PEER_LOST', peer: 5 })]]);
        expect(poller.peers).toEqual([6]);
      } else expect(lost).toEqual([]); // without the mark the reader cannot tell
    }
  });

  it('the sweep waits until the failed producer’s finished frames were read', () => {
    const a = arena(1, 4096);
    const lost: number[] = [];
    const sink = recordingSink();
    const poller = new Poller(new Inbox(a.inbox), sink, { attach: a.attach, wakeProducer: () => undefined, lost: (p) => lost.push(p), inboxBroken: () => undefined }, { framesPerPoll: 1, framesPerRing: 1 });
    initRing(a.ring(0));
    const channel = new RingChannel({ peer: 0, self: 3, ring: a.ring(0), descriptor: a.descriptorOf(a.ring(0)), peerInbox: new InboxSender(a.inbox), wake: () => undefined, needsFlush: () => undefined, lost: () => undefined, signalFailure: true });
    for (let k = 0; k < 3; k++) channel.send(header(4, k), bytes(4, k));
    channel.fail(new Error('broke'));
    poller.poll(); // one frame per poll
    poller.sweepFailed();
    expect(lost).toEqual([]); // two frames still to read
    poller.poll();
    poller.poll();
    poller.sweepFailed();
    expect(sink.frames.map((f) => f.id)).toEqual([0, 1, 2]);
    expect(lost).toEqual([3]);
  });
});
