/**
 * Review: `timeout` on a rendezvous send whose receiver does not answer.
 *
 * On expiry, Communicator.#blocking → Engine.withdrawSend sends RTS_CANCEL and the send only settles
 * when CANCEL_REPLY (or CTS) comes back. A receiver that is alive but not answering — its event loop
 * busy in a long synchronous computation, a stopped process, a channel still dialling — keeps the
 * send pending past its timeout, for as long as the receiver is unresponsive. CallOptions promises
 * "Give up after this many milliseconds with TIMEOUT".
 */
import { describe, expect, it } from 'vitest';
import type { BackendComponents, BackendFactory, CardFields, Channel, FrameSink, LocalityCard, SendDone, Transport } from '../../lib/backend.js';
import { FRAME_HEADER_BYTES } from '../../lib/backend.js';
import { createLocalJob } from '../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../lib/start-world.js';
import { within } from '../helpers/settle.js';


/** An in-memory transport whose delivery to a "frozen" rank is held until it thaws (a busy event loop). */
const buses = new Map<string, { sinks: Map<number, FrameSink>; frozen: Set<number>; held: (() => void)[] }>();
function bus(jobId: string) {
  let b = buses.get(jobId);
  if (!b) buses.set(jobId, (b = { sinks: new Map(), frozen: new Set(), held: [] }));
  return b;
}
function thaw(jobId: string, rank: number): void {
  const b = bus(jobId);
  b.frozen.delete(rank);
  const held = b.held;
  b.held = [];
  for (const f of held) f();
}
function freezable(): BackendFactory {
  return Object.assign(
    (c: BackendComponents): Transport => ({
      name: 'freezable',
      priority: 90,
      role: 'local',
      eagerLimitBytes: 1024,
      eagerCredits: 8,
      async start(): Promise<CardFields> {
        bus(c.jobId).sinks.set(c.rank, c.sink);
        return { bus: c.jobId };
      },
      probe: (peer: LocalityCard) => peer.backends.freezable?.bus === c.jobId,
      addPeers: () => undefined,
      async connect(peer: number): Promise<Channel> {
        const b = bus(c.jobId);
        return {
          send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone) {
            const h = header.slice(0, FRAME_HEADER_BYTES);
            const deliver = () => {
              const sink = b.sinks.get(peer)!;
              const target = sink.begin(c.rank, h);
              if (target && payload) target.set(payload.subarray(0, target.byteLength));
              sink.commit(c.rank);
              done?.();
            };
            setImmediate(() => (b.frozen.has(peer) ? b.held.push(deliver) : deliver()));
          },
          close: async () => undefined,
        };
      },
      stop: async () => undefined,
    }),
    { transportName: 'freezable' },
  );
}

describe('review: send timeout with an unresponsive receiver', () => {
  it('a rendezvous send with { timeout: 50 } settles with TIMEOUT while the receiver is not answering', async () => {
    const job = createLocalJob(2);
    const [a, b] = await Promise.all(job.map((bs) => initWithBootstrap(bs, { backends: [freezable()], only: ['freezable'] })));
    bus(job[0].jobId).frozen.add(1); // rank 1 is busy (say, a long synchronous computation)
    try {
      const send = a.sendBuffer(new Uint8Array(4096), 1, 1, { timeout: 50 });
      expect(await within(send, 1000)).toMatchObject({ status: 'rejected', error: { code: 'TIMEOUT' } });
    } finally {
      thaw(job[0].jobId, 1);
      // (Bounded: finalize also hangs here today — see review-finalize.test.ts, CANCEL_REPLY.)
      await Promise.all([a, b].map((c) => within(c.finalize(), 3000)));
    }
  });
});
