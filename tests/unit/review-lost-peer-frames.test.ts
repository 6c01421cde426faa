/**
 * Once a peer's stream is given up — found CORRUPT, or a switch whose frames never came — nothing
 * more from it is matched, even when the verdict came from elsewhere than the channel that still
 * delivers its frames (the ordered inbound layer replaying a frame after a switch of transports,
 * the drain watchdog). The engine refuses the peer's next frame (it throws the verdict back at the
 * transport, which closes that channel), so an ANY_SOURCE receive never takes such a frame. A peer
 * that merely died (the launcher says so) is different: the frames it finished writing are intact,
 * and still delivered — but a frame it was still writing when the loss was reported is abandoned:
 * the transport delivering it is told to stop before the receive settles (the compliance suite
 * checks every transport does).
 */
import { describe, expect, it } from 'vitest';
import type { FrameSink, Transport } from '../../lib/backend.js';
import { ANY_SOURCE, ANY_TAG } from '../../lib/constants.js';
import type { Engine } from '../../lib/engine.js';
import { VmcommError } from '../../lib/errors.js';
import type { PostedRecv } from '../../lib/matching.js';
import { OrderedInbound } from '../../lib/migration/ordered-inbound.js';
import { FrameKind } from '../../lib/protocol.js';
import { createRequest } from '../../lib/request.js';
import { deliver, deliverLater, fakeTransport, frame, marker, readyEngine } from './migration/inbound-fakes.js';

const CONTEXT = 0;

/** An engine of rank 1 of 3 whose channels accept everything. */
const engine = (): Engine => readyEngine(1, 3);

/** An eager message from `peer` (its world rank, also its communicator rank) with sequence number `seq`. */
const message = (peer: number, seq: number, tag = 5) => frame(FrameKind.EAGER, tag, [seq & 0xff], { source: peer, seq });

/** Posts an ANY_SOURCE receive on `e` (with source and tag); returns its request. */
function anySource(e: Engine) {
  const [request, control] = createRequest<{ source: number; tag: number; data: unknown }>(undefined);
  const recv: PostedRecv = { source: ANY_SOURCE, tag: ANY_TAG, mode: 'message', bytes: undefined, control };
  e.receive(CONTEXT, recv, (r) => r);
  return request;
}

/** The engine behind an ordered inbound layer whose loss reports reach the engine, as in a world. */
function world() {
  const e = engine();
  const [a, b] = [fakeTransport('a', 50), fakeTransport('b', 10)];
  const inbound = new OrderedInbound(e, 3, {
    switched: () => undefined,
    step: () => undefined,
    lost: (_t, peer, error) => e.lost(peer, error),
    transportNamed: (name) => [a, b].find((t) => t.name === name),
  });
  inbound.start([a, a, a]);
  const sinks = new Map<Transport, FrameSink>([a, b].map((t) => [t, inbound.sinkFor(() => t)]));
  return { e, a, b, inbound, sink: (t: Transport) => sinks.get(t)! };
}

describe('frames from a lost peer', () => {
  it('a CORRUPT verdict from elsewhere: the peer’s next frame is refused with it and matches nothing', () => {
    const e = engine();
    const verdict = new VmcommError('CORRUPT', 'rank 0 sent message number 3 after number 5', { peer: 0 });
    e.lost(0, verdict);
    const r = anySource(e);
    expect(() => e.begin(0, message(0, 0).header)).toThrow(verdict);
    expect(r.state).toBe('pending');
    // Another peer's message still matches it.
    deliver(e, 2, message(2, 0, 9));
    expect(r.value).toMatchObject({ source: 2, tag: 9 });
  });

  it('a stream given up for another reason (the drain watchdog: frames that never came) is refused too', () => {
    const e = engine();
    e.lost(0, new VmcommError('PEER_LOST', 'the switch marker never came', { peer: 0 }), true);
    expect(() => e.begin(0, message(0, 0).header)).toThrow(expect.objectContaining({ code: 'PEER_LOST' }));
  });

  it('a peer that died (the launcher says so): what it finished writing is still delivered, a receive posted for it alone fails', () => {
    const e = engine();
    e.lost(0, new VmcommError('PEER_LOST', 'rank 0 was lost: killed by SIGKILL', { peer: 0 }));
    const r = anySource(e);
    deliver(e, 0, message(0, 0, 4));
    expect(r.value).toMatchObject({ source: 0, tag: 4 });
    const [request, control] = createRequest<unknown>(undefined);
    e.receive(CONTEXT, { source: 0, tag: ANY_TAG, mode: 'value', bytes: undefined, control }, (x) => x);
    expect(request.error).toMatchObject({ code: 'PEER_LOST' });
  });

  it('a loss reported from elsewhere while a frame is half in: its transport is told to stop before the receive settles; none in progress, nothing to stop', () => {
    const calls: string[] = [];
    const [request, control] = createRequest<unknown>(undefined);
    const e = readyEngine(1, 3, undefined, {
      peerLost: (peer) => calls.push(`lost ${peer}`),
      abandonFrame: (peer, error) => calls.push(`abandon ${peer} ${error.code}, receive ${request.state}`),
    });
    const into = new Uint8Array(4);
    e.receive(CONTEXT, { source: 0, tag: 5, mode: 'buffer', bytes: into, control }, (x) => x);
    deliverLater(e, 0, frame(FrameKind.EAGER, 5, [1, 2, 3, 4], { source: 0, seq: 0 })); // begun, payload still coming
    deliver(e, 2, message(2, 0, 9)); // peer 2's frames are whole
    e.lost(0, new VmcommError('PEER_LOST', 'rank 0 was lost: killed', { peer: 0 }));
    e.lost(2, new VmcommError('PEER_LOST', 'rank 2 was lost: killed', { peer: 2 }));
    expect(calls).toEqual(['abandon 0 PEER_LOST, receive pending', 'lost 0', 'lost 2']);
    expect(request.error).toMatchObject({ code: 'PEER_LOST' });
  });

  it('a frame begun after the peer was lost, given up on a later report (its transport’s own): its receive settles instead of waiting forever', () => {
    const [request, control] = createRequest<unknown>(undefined);
    const e = engine();
    e.lost(0, new VmcommError('PEER_LOST', 'rank 0 was lost: killed', { peer: 0 }));
    // What rank 0 finished writing is still delivered: this ANY_SOURCE receive takes its message…
    e.receive(CONTEXT, { source: ANY_SOURCE, tag: 5, mode: 'buffer', bytes: new Uint8Array(4), control }, (x) => x);
    deliverLater(e, 0, frame(FrameKind.EAGER, 5, [1, 2, 3, 4], { source: 0, seq: 0 }));
    // …whose payload never ends: the transport reports the pair broken.
    e.lost(0, new Error('the ring broke mid-record'));
    expect(request.state).toBe('pending'); // back to waiting for the other senders
    deliver(e, 2, frame(FrameKind.EAGER, 5, [9, 9, 9, 9], { source: 2, seq: 0 }));
    expect(request.value).toMatchObject({ source: 2, tag: 5 });
  });

  it('forgetting a lost peer stops the transport of its frame in progress, before the loss is reported (the replay verdict, the drain watchdog)', () => {
    const { a, inbound, sink } = world();
    const abandoned: string[] = [];
    a.abandonFrame = (peer, error) => abandoned.push(`a ${peer}: ${error.message}`);
    deliverLater(sink(a), 0, frame(FrameKind.EAGER, 5, [1, 2, 3, 4], { source: 0, seq: 0 }));
    inbound.forget(0, new Error('verdict'));
    expect(abandoned).toEqual(['a 0: verdict']);
  });

  it('the ordered inbound layer passes the abandon to the transport whose frame went straight to the engine, not for held frames', () => {
    const { e, a, b, sink, inbound } = world();
    const abandoned: string[] = [];
    a.abandonFrame = (peer) => abandoned.push(`a ${peer}`);
    b.abandonFrame = (peer) => abandoned.push(`b ${peer}`);
    const [, control] = createRequest<unknown>(undefined);
    e.receive(CONTEXT, { source: 0, tag: 5, mode: 'buffer', bytes: new Uint8Array(4), control }, (x) => x);
    deliverLater(sink(a), 0, frame(FrameKind.EAGER, 5, [1, 2, 3, 4], { source: 0, seq: 0 }));
    deliverLater(sink(b), 2, message(2, 0)); // held: b is not rank 2's transport yet
    inbound.abandonLive(2, new Error('x'));
    inbound.abandonLive(0, new Error('x'));
    inbound.abandonLive(0, new Error('x')); // once: the frame is no longer live
    expect(abandoned).toEqual(['a 0']);
  });

  it('a frame found corrupt when replayed after a switch ends the peer, and the new channel’s later frames are refused', () => {
    const { e, a, b, sink } = world();
    deliver(sink(a), 0, message(0, 0));
    expect(anySource(e).value).toMatchObject({ source: 0, tag: 5 }); // what came before the loss is received
    // Rank 0 moves to b: its frames there are held until a's marker says so. One of them repeats
    // sequence number 0 (a frame delivered twice): CORRUPT when it is replayed.
    deliver(sink(b), 0, message(0, 0));
    deliver(sink(a), 0, marker(1, 'b'));
    expect(e.lostError(0)).toMatchObject({ code: 'CORRUPT', message: expect.stringContaining('delivered twice or out of order') });
    const r = anySource(e);
    // b stays open (the loss came from the replay, not from b), so rank 0's next frame arrives
    // through it: refused, thrown at b (which then closes its channel), and not matched.
    expect(() => deliver(sink(b), 0, message(0, 1))).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
    expect(r.state).toBe('pending');
    // Held and negotiation frames of the peer are refused as well.
    expect(() => deliver(sink(a), 0, message(0, 2))).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
    expect(() => deliver(sink(a), 0, marker(2, 'a'))).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
    // Peer 2 is not concerned.
    deliver(sink(a), 2, message(2, 0, 9));
    expect(r.value).toMatchObject({ source: 2, tag: 9 });
  });
});
