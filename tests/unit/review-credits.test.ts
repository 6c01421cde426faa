/**
 * Review: eager credits are per pair, but each end takes its window from its *own* options
 * (PeerPlan.eagerCredits). The receiver returns credits in batches of half *its* window
 * (Engine.returnCredit: creditsOwed ≥ creditsMax >> 1); a sender with a smaller window runs dry
 * before a batch is ever due, and every later small message goes rendezvous — for good.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Communicator } from '../../lib/communicator.js';
import { createLocalJob } from '../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../lib/start-world.js';
import { memory } from '../helpers/memory-transport.js';
import { within } from '../helpers/settle.js';


let worlds: Communicator[][] = [];
afterEach(async () => {
  const all = worlds;
  worlds = [];
  await Promise.all(all.flat().map((c) => within(c.finalize(), 5000)));
});

/** With no receive posted, an eager send completes; a rendezvous one times out and is withdrawn. */
async function stillEager(a: Communicator, dest: number, b: Communicator, tag: number): Promise<boolean> {
  const r = await within(a.sendBuffer(new Uint8Array(8), dest, tag, { timeout: 100 }), 2000);
  if (r.status === 'fulfilled') await b.recvBuffer(new Uint8Array(8), a.rank, tag);
  return r.status === 'fulfilled';
}

describe('review: credit windows', () => {
  it('a stream from a rank configured with fewer eager credits than its receiver stays eager once consumed', async () => {
    const plugin = memory({ eagerLimitBytes: 1024 });
    const [b0, b1] = createLocalJob(2);
    const comms = await Promise.all([
      initWithBootstrap(b0, { backends: [plugin], only: ['memory'], eagerCredits: 2 }),
      initWithBootstrap(b1, { backends: [plugin], only: ['memory'], eagerCredits: 64 }),
    ]);
    worlds.push(comms);
    const [a, b] = comms;
    for (let i = 0; i < 50; i++) {
      const r = b.irecv(0, 1);
      await a.send(i, 1, 1);
      expect(await r).toBe(i);
    }
    // Every message was consumed at once; the sender must have its credits back.
    expect(await stillEager(a, 1, b, 2)).toBe(true);
  });
});

describe('review: the window a sender advertises per peer', () => {
  // Engine.sendNow reuses the last header but for its sequence number when a message looks like the
  // last one; the window it advertises (the header's aux) is per peer, so a message to a peer with
  // another window must not take the last one's. Rank 0 has a window of 2 towards rank 1 and 64
  // towards rank 2; ranks 1 and 2 keep 64. If rank 1 read 64 as rank 0's window, it would return
  // credits in batches of 32, rank 0 would run dry after two messages and stay rendezvous.
  it('a message like the last one but to a peer with another window carries that peer\'s window', async () => {
    // Both with the fast path (Channel.trySend), which sendNow needs.
    const narrow = memory({ name: 'narrow', priority: 90, eagerLimitBytes: 1024, trySend: true, reaches: (self, peer) => self + peer === 1 });
    const wide = memory({ name: 'wide', priority: 10, eagerLimitBytes: 1024, trySend: true });
    const [b0, b1, b2] = createLocalJob(3);
    const comms = await Promise.all([
      initWithBootstrap(b0, { backends: [narrow, wide], only: ['narrow', 'wide'], eagerCredits: { narrow: 2, wide: 64 } }),
      initWithBootstrap(b1, { backends: [narrow, wide], only: ['narrow', 'wide'], eagerCredits: 64 }),
      initWithBootstrap(b2, { backends: [narrow, wide], only: ['narrow', 'wide'], eagerCredits: 64 }),
    ]);
    worlds.push(comms);
    const [a, b, c] = comms;
    expect(a.transportOf(1)).toBe('narrow');
    expect(a.transportOf(2)).toBe('wide');
    const into = new Uint8Array(8);
    for (let i = 0; i < 20; i++) {
      const atC = c.irecvBuffer(new Uint8Array(8), 0, 1);
      const atB = b.irecvBuffer(into, 0, 1);
      // Same length, tag, context and kind: only the peer (and its window) differs.
      await a.sendBuffer(new Uint8Array(8), 2, 1);
      await a.sendBuffer(new Uint8Array(8), 1, 1);
      await Promise.all([atB, atC]);
    }
    // The messages above went by sendNow's fast path (else nothing here tested its reused header): all
    // but the first to each peer, sent while its channel opened.
    const fast = (f: typeof narrow) => f.instances.find((t) => t.rank === 0)!.fastSends;
    expect(fast(narrow)).toBeGreaterThanOrEqual(19);
    expect(fast(wide)).toBeGreaterThanOrEqual(19);
    expect(await stillEager(a, 1, b, 2)).toBe(true);
  });
});
