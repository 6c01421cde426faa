/**
 * Review: frames that arrive before selection completes (Engine.early, replayed by Engine.ready).
 *
 * FrameSink contract: `begin` … payload copy … `commit`, and the copy may take several socket reads
 * (tcp). When `ready()` runs while an early frame is *between* its begin and its commit, ready()
 * replays it at once — with the payload not yet written — and the transport's later commit(peer)
 * then runs Engine.commit a second time on the replayed header.
 */
import { describe, expect, it } from 'vitest';
import type { BackendComponents, BackendFactory, CardFields, Channel, FrameSink, LocalityCard, SendDone, Transport } from '../../lib/backend.js';
import type { Communicator } from '../../lib/communicator.js';
import { createLocalJob } from '../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../lib/start-world.js';
import { ValueCodec } from '../../lib/codec.js';
import { Engine, type PeerPlan } from '../../lib/engine.js';
import type { PostedRecv } from '../../lib/matching.js';
import { emptyHeader, encodeHeader, FRAME_HEADER_BYTES, FrameKind } from '../../lib/protocol.js';
import { createRequest } from '../../lib/request.js';
import { lateReach } from '../helpers/bootstraps.js';
import { within, sleep } from '../helpers/settle.js';

function fakeTransport(): Transport {
  const channel: Channel = { send: (_h, _p, done) => done?.(), close: async () => undefined };
  return {
    name: 'fake',
    priority: 1,
    role: 'local',
    eagerLimitBytes: 1024,
    eagerCredits: 8,
    start: async () => ({}),
    probe: () => true,
    addPeers: () => undefined,
    connect: async () => channel,
    stop: async () => undefined,
  };
}

function eagerHeader(source: number, tag: number, payload: number): Uint8Array {
  const h = emptyHeader();
  h.kind = FrameKind.EAGER;
  h.source = source;
  h.tag = tag;
  h.payloadBytes = payload;
  h.messageBytes = payload;
  return encodeHeader(h, new Uint8Array(FRAME_HEADER_BYTES));
}

describe('review: early frames', () => {
  it('an early frame whose payload completes after ready() is delivered once, with its payload', async () => {
    const t = fakeTransport();
    const plans: PeerPlan[] = [0, 1].map(() => ({ transport: t, eagerLimitBytes: 1024, eagerCredits: 8 }));
    const engine = new Engine(1, 2, new ValueCodec(), { peerLost: () => undefined });

    // Rank 0 finished selection first and sent a 3-byte message; its header has arrived here.
    const target = engine.begin(0, eagerHeader(0, 5, 3));
    expect(target?.byteLength).toBe(3);
    // Selection finishes here while the payload is still on the wire.
    engine.ready(plans);
    // The rest of the frame arrives: the transport fills the target it was given, then commits.
    target!.set([1, 2, 3]);
    engine.commit(0);

    expect(engine.matching(0).depth.unexpected).toBe(1); // one message, not two
    const [request, control] = createRequest<unknown>(undefined);
    const posted: PostedRecv = { source: 0, tag: 5, mode: 'value', bytes: undefined, control };
    engine.receive(0, posted, (r) => r);
    expect(await request).toEqual(new Uint8Array([1, 2, 3])); // not zeros
  });
});

// ---------------------------------------------------------------- end to end


/** The memory plug-in, except that each payload lands `delayMs` after its header (a frame over several reads). */
const buses = new Map<string, Map<number, FrameSink>>();
class StagedChannel implements Channel {
  private chain: Promise<void> = Promise.resolve();
  constructor(private readonly from: number, private readonly to: FrameSink, private readonly delayMs: number) {}
  send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone): void {
    const h = header.slice(0, FRAME_HEADER_BYTES);
    this.chain = this.chain.then(async () => {
      await new Promise((r) => setImmediate(r));
      const target = this.to.begin(this.from, h);
      if (payload && payload.byteLength > 0) await sleep(this.delayMs);
      if (target && payload) target.set(payload.subarray(0, target.byteLength));
      this.to.commit(this.from);
      done?.();
    });
  }
  async close(): Promise<void> {
    await this.chain;
  }
}
function staged(delayMs: number): BackendFactory {
  return Object.assign(
    (c: BackendComponents): Transport => {
      const bus = () => buses.get(c.jobId) ?? (buses.set(c.jobId, new Map()), buses.get(c.jobId)!);
      const channels = new Map<number, StagedChannel>();
      return {
        name: 'staged',
        priority: 90,
        role: 'local',
        eagerLimitBytes: 4096,
        eagerCredits: 8,
        async start(): Promise<CardFields> {
          bus().set(c.rank, c.sink);
          return { bus: c.jobId };
        },
        probe: (peer: LocalityCard) => peer.backends.staged?.bus === c.jobId,
        addPeers: () => undefined,
        async connect(peer: number) {
          let ch = channels.get(peer);
          if (!ch) channels.set(peer, (ch = new StagedChannel(c.rank, bus().get(peer)!, delayMs)));
          return ch;
        },
        async stop() {
          for (const ch of channels.values()) await ch.close();
          bus().delete(c.rank);
        },
      };
    },
    { transportName: 'staged' },
  );
}

describe('review: early frames, end to end', () => {
  it('a message that reached a rank while it was still selecting arrives intact, once', async () => {
    const [b0, b1] = createLocalJob(2);
    const comms: Communicator[] = await Promise.all([
      initWithBootstrap(b0, { backends: [staged(60)], only: ['staged'] }).then(async (c0) => {
        // Rank 0 is ready first and sends at once; rank 1 gets the header while selecting (early),
        // finishes selecting 30 ms later, and the payload lands 60 ms after the header.
        void within(c0.isend('hello', 1, 3), 5000);
        return c0;
      }),
      initWithBootstrap(lateReach(b1, 30), { backends: [staged(60)], only: ['staged'] }),
    ]);
    try {
      const c1 = comms[1];
      expect(await within(c1.recv(0, 3), 1000)).toEqual({ status: 'fulfilled', value: 'hello' });
      await sleep(100);
      expect(c1.iprobe(0, 3)).toBeUndefined(); // no phantom second copy
    } finally {
      await Promise.all(comms.map((c) => within(c.finalize(), 5000)));
    }
  });
});
