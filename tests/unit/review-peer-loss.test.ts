/**
 * Review: peer loss (DESIGN §2: PEER_LOST for what depends on the lost peer; live peers keep working).
 */
import { describe, expect, it } from 'vitest';
import { ANY_SOURCE } from '../../lib/constants.js';
import type { Communicator } from '../../lib/communicator.js';
import { createLocalJob, reportLocalPeerLost } from '../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../lib/start-world.js';
import { memory } from '../helpers/memory-transport.js';
import { within, sleep } from '../helpers/settle.js';


async function job3() {
  const job = createLocalJob(3);
  const comms: Communicator[] = await Promise.all(job.map((b) => initWithBootstrap(b, { backends: [memory()], only: ['memory'], eagerLimitBytes: 16 })));
  return { job, comms };
}

describe('review: peer loss', () => {
  it('probe(source) on a peer that is already lost rejects PEER_LOST (does not wait forever)', async () => {
    const { job, comms } = await job3();
    try {
      reportLocalPeerLost(job, 2, 'killed');
      // recv(2) rejects at once (Engine.receive checks lostError) but probe(2) registers a waiter
      // and only listens for *future* 'peer:lost' events: it times out instead.
      await expect(comms[0].recv(2, 1)).rejects.toMatchObject({ code: 'PEER_LOST' });
      await expect(comms[0].probe(2, 1, { timeout: 500 })).rejects.toMatchObject({ code: 'PEER_LOST' });
    } finally {
      await Promise.all(comms.slice(0, 2).map((c) => within(c.finalize(), 3000)));
    }
  });

  it('a receive that matches an unexpected RTS of a peer lost since rejects PEER_LOST (does not hang)', async () => {
    const { job, comms } = await job3();
    const [c0, , c2] = comms;
    void within(c2.isendBuffer(new Uint8Array(1024), 0, 5), 60_000); // rendezvous; c0 has not received yet
    while (!c0.iprobe(2, 5)) await sleep(1);
    reportLocalPeerLost(job, 2, 'killed');
    // The RTS stays in c0's unexpected queue; the receive takes it, clearToSend's CTS is dropped
    // (peer lost), the PendingRecv is never failed, and cancel/timeout cannot withdraw it.
    const r = c0.recvBuffer(new Uint8Array(1024), 2, 5, { timeout: 500 });
    expect(await within(r, 1500)).toMatchObject({ status: 'rejected', error: { code: 'PEER_LOST' } });
  });

  it('an ANY_SOURCE receive is not captured by the stale RTS of a lost peer; it gets the live peer’s message', async () => {
    const { job, comms } = await job3();
    const [c0, c1, c2] = comms;
    void within(c2.isendBuffer(new Uint8Array(1024), 0, 6), 60_000);
    while (!c0.iprobe(2, 6)) await sleep(1);
    reportLocalPeerLost(job, 2, 'killed');
    const r = c0.recv(ANY_SOURCE, 6);
    await c1.send('alive', 0, 6);
    expect(await within(r, 1500)).toEqual({ status: 'fulfilled', value: 'alive' });
  });
});
