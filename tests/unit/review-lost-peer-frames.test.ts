/**
 * Once a peer is lost, nothing more from it is matched. A loss can come from elsewhere than the
 * channel that still delivers the peer's frames: the launcher, a frame the ordered inbound layer
 * found corrupt when it replayed it after a switch of transports, a drain that timed out. The
 * engine then refuses the peer's next frame (it throws the loss back at the transport, which closes
 * that channel), so an ANY_SOURCE receive never takes a frame of a stream already given up.
 */
import { describe, expect, it } from 'vitest';
import type { Channel, FrameSink, Transport } from '../../lib/backend.js';
import { ValueCodec } from '../../lib/codec.js';
import { ANY_SOURCE, ANY_TAG } from '../../lib/constants.js';
import { Engine, type PeerPlan } from '../../lib/engine.js';
import { VmcommError } from '../../lib/errors.js';
import type { PostedRecv } from '../../lib/matching.js';
import { OrderedInbound } from '../../lib/migration/ordered-inbound.js';
import { FrameKind } from '../../lib/protocol.js';
import { createRequest } from '../../lib/request.js';
import { deliver, fakeTransport, frame, marker } from './migration/inbound-fakes.js';

const CONTEXT = 0;

/** An engine of rank 1 of 3 whose channels accept everything. */
function engine(): Engine {
  const channel: Channel = { send: (_h, _p, done) => done?.(), close: async () => undefined };
  const t: Transport = { ...fakeTransport('fake', 1, async () => channel) };
  const plans: PeerPlan[] = [0, 1, 2].map(() => ({ transport: t, eagerLimitBytes: 64, eagerCredits: 8 }));
  const e = new Engine(1, 3, new ValueCodec(), { peerLost: () => undefined });
  e.ready(plans);
  return e;
}

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
  return { e, a, b, sink: (t: Transport) => sinks.get(t)! };
}

describe('frames from a lost peer', () => {
  it('after the launcher reported the peer lost, its next frame is refused with that loss and matches nothing', () => {
    const e = engine();
    const loss = new VmcommError('PEER_LOST', 'rank 0 was lost: killed by SIGKILL', { peer: 0 });
    e.lost(0, loss);
    const r = anySource(e);
    expect(() => e.begin(0, message(0, 0).header)).toThrow(loss);
    expect(r.state).toBe('pending');
    // Another peer's message still matches it.
    const target = e.begin(2, message(2, 0, 9).header);
    target?.set([42]);
    e.commit(2);
    expect(r.value).toMatchObject({ source: 2, tag: 9 });
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
    // Held and negotiation frames of the lost peer are refused as well.
    expect(() => deliver(sink(a), 0, message(0, 2))).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
    // Peer 2 is not concerned.
    deliver(sink(a), 2, message(2, 0, 9));
    expect(r.value).toMatchObject({ source: 2, tag: 9 });
  });
});
