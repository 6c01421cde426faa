/**
 * Review: finalize with calls outstanding, and calls after finalize (DESIGN §2: calls after it reject
 * FINALIZED; receives posted at finalize reject FINALIZED).
 */
import { describe, expect, it } from 'vitest';
import type { Communicator } from '../../lib/communicator.js';
import { createLocalJob } from '../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../lib/start-world.js';
import { memory } from '../helpers/memory-transport.js';
import { within } from '../helpers/settle.js';


async function world(n: number): Promise<Communicator[]> {
  const plugin = memory({ eagerLimitBytes: 1024, eagerCredits: 4 });
  return Promise.all(createLocalJob(n).map((b) => initWithBootstrap(b, { backends: [plugin], only: ['memory'] })));
}

describe('review: finalize with blocking calls outstanding', () => {
  it('a probe still waiting when the world finalizes rejects FINALIZED (like a posted receive)', async () => {
    const [a, b] = await world(2);
    const recv = within(b.recv(0, 41), 3000);
    // Engine.failEverything rejects posted receives and pending sends, but probe waiters live in
    // Matching.probes and are never settled: the probe hangs forever.
    const probe = within(b.probe(0, 42), 3000);
    await Promise.all([a.finalize(), b.finalize()]);
    expect(await recv).toMatchObject({ status: 'rejected', error: { code: 'FINALIZED' } });
    expect(await probe).toMatchObject({ status: 'rejected', error: { code: 'FINALIZED' } });
  });

  it('finalize already waiting on a rendezvous send that is then withdrawn (signal aborted) completes', async () => {
    const [a, b] = await world(2);
    const ac = new AbortController();
    const send = within(a.sendBuffer(new Uint8Array(4096), 1, 43, { signal: ac.signal }), 3000);
    while (!b.iprobe(0, 43)) await new Promise((r) => setTimeout(r, 1)); // the RTS is at b, unmatched
    // The usual shutdown: abort what is outstanding, then finalize. finalize's sendsDone() waits on
    // the pending send; CANCEL_REPLY removes it from pendingSends without Engine.checkIdle(), so the
    // waiter is never woken.
    ac.abort();
    const fin = within(Promise.all([a.finalize(), b.finalize()]), 2000);
    expect(await send).toMatchObject({ status: 'rejected', error: { code: 'ABORTED' } });
    expect(await fin).toMatchObject({ status: 'fulfilled' });
  });
});
