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
