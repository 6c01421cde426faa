/**
 * Review: the window between FrameSink.begin and FrameSink.commit of an EAGER frame.
 *
 * The backend contract allows (and tcp does) `begin` when the header arrives and `commit` after the
 * payload arrived, several socket reads later. Engine.begin matches the frame against the posted
 * receives *at begin*; if none matched, Engine.commit appends it to the unexpected queue *without
 * looking at the posted queue again*. A receive posted inside the window is then never matched by
 * this message (it waits forever, or takes a later message: overtaking).
 *
 * The transport below is the memory plug-in with one change: the payload of each frame "arrives"
 * `delayMs` after its header, like a tcp frame spanning reads.
 */
import { describe, expect, it } from 'vitest';
import type { BackendComponents, BackendFactory, CardFields, Channel, FrameSink, LocalityCard, SendDone, Transport } from '../../lib/backend.js';
import { FRAME_HEADER_BYTES } from '../../lib/backend.js';
import type { Communicator } from '../../lib/communicator.js';
import { ANY_SOURCE } from '../../lib/constants.js';
import { createLocalJob, reportLocalPeerLost } from '../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../lib/start-world.js';
import { within, sleep, finalizeAfterEach } from '../helpers/settle.js';


const buses = new Map<string, Map<number, FrameSink>>();

class StagedChannel implements Channel {
  private chain: Promise<void> = Promise.resolve();
  constructor(
    private readonly from: number,
    private readonly to: FrameSink,
    private readonly delayMs: number,
  ) {}
  send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone): void {
    const h = header.slice(0, FRAME_HEADER_BYTES);
    this.chain = this.chain.then(async () => {
      await new Promise((r) => setImmediate(r));
      const target = this.to.begin(this.from, h); // the header is here…
      if (payload && payload.byteLength > 0) await sleep(this.delayMs); // …the payload takes a while
      if (target && payload) target.set(payload.subarray(0, target.byteLength));
      this.to.commit(this.from);
      done?.();
    });
  }
  async close(): Promise<void> {
    await this.chain;
  }
}

class StagedTransport implements Transport {
  readonly name = 'staged';
  readonly priority = 90;
  readonly role = 'local' as const;
  readonly eagerLimitBytes = 4096;
  readonly eagerCredits = 8;
  private readonly channels = new Map<number, StagedChannel>();
  constructor(
    private readonly c: BackendComponents,
    private readonly delayMs: number,
  ) {}
  private get bus(): Map<number, FrameSink> {
    let b = buses.get(this.c.jobId);
    if (!b) buses.set(this.c.jobId, (b = new Map()));
    return b;
  }
  async start(): Promise<CardFields> {
    this.bus.set(this.c.rank, this.c.sink);
    return { bus: this.c.jobId };
  }
  probe(peer: LocalityCard): boolean {
    return peer.backends[this.name]?.bus === this.c.jobId;
  }
  addPeers(): void {}
  async connect(peer: number): Promise<Channel> {
    let ch = this.channels.get(peer);
    if (!ch) this.channels.set(peer, (ch = new StagedChannel(this.c.rank, this.bus.get(peer)!, this.delayMs)));
    return ch;
  }
  async stop(): Promise<void> {
    for (const ch of this.channels.values()) await ch.close();
    this.bus.delete(this.c.rank);
  }
}

function staged(delayMs: number): BackendFactory {
  return Object.assign((c: BackendComponents) => new StagedTransport(c, delayMs), { transportName: 'staged' });
}

const track = finalizeAfterEach();
async function world(n: number, delayMs: number): Promise<Communicator[]> {
  const comms = await Promise.all(createLocalJob(n).map((b) => initWithBootstrap(b, { backends: [staged(delayMs)], only: ['staged'] })));
  return track(comms);
}

describe('review: a receive posted while an eager frame is between begin and commit', () => {
  it('is matched by that message', async () => {
    const [a, b] = await world(2, 60);
    expect(a.transportOf(1)).toBe('staged');
    void within(a.isend('hello', 1, 7), 5000);
    await sleep(20); // b has begun the frame (no receive posted then); the payload is on its way
    const r = b.irecv(0, 7);
    expect(await within(r, 1000)).toEqual({ status: 'fulfilled', value: 'hello' });
  });

  it('keeps non-overtaking order: the first message is not overtaken by the second', async () => {
    const [a, b] = await world(2, 60);
    void within(a.isend('first', 1, 8), 5000);
    void within(a.isend('second', 1, 8), 5000);
    await sleep(20); // inside 'first''s begin→commit window
    const r1 = b.irecv(0, 8);
    const r2 = b.irecv(0, 8);
    expect(await within(r1, 1000)).toEqual({ status: 'fulfilled', value: 'first' });
    expect(await within(r2, 1000)).toEqual({ status: 'fulfilled', value: 'second' });
  });
});

describe('review: a peer lost while its eager frame is between begin and commit', () => {
  it('an ANY_SOURCE receive that frame had taken keeps waiting for live peers (as a posted ANY_SOURCE receive does)', async () => {
    const job = createLocalJob(3);
    const comms = await Promise.all(job.map((b) => initWithBootstrap(b, { backends: [staged(60)], only: ['staged'] })));
    track(comms.slice(0, 2)); // rank 2 is "lost": not finalized with the others
    const [c0, c1, c2] = comms;
    const r = c0.irecv(ANY_SOURCE, 9);
    void within(c2.isend('from-2', 0, 9), 5000);
    await sleep(20); // c0 began rank 2's frame: Engine.begin took the ANY_SOURCE receive
    reportLocalPeerLost(job, 2, 'killed');
    // Engine.lost rejects the receive held by the in-progress frame, ANY_SOURCE or not.
    await c1.send('from-1', 0, 9);
    expect(await within(r, 1000)).toEqual({ status: 'fulfilled', value: 'from-1' });
  });
});
