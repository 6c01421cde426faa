/**
 * Review: CallOptions (`timeout`, `signal`) edge cases in Communicator.#blocking / checkOptions.
 */
import { describe, expect, it } from 'vitest';
import type { Communicator } from '../../lib/communicator.js';
import { createLocalJob } from '../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../lib/start-world.js';
import { memory } from '../helpers/memory-transport.js';
import { within, sleep, finalizeAfterEach } from '../helpers/settle.js';


const track = finalizeAfterEach();
async function world(n: number): Promise<Communicator[]> {
  const plugin = memory({ eagerLimitBytes: 1024, eagerCredits: 4 });
  const comms = await Promise.all(createLocalJob(n).map((b) => initWithBootstrap(b, { backends: [plugin], only: ['memory'] })));
  return track(comms);
}

describe('review: timeouts beyond setTimeout range', () => {
  it('a receive timeout of 2^31 ms (~25 days) is accepted and does not expire at once', async () => {
    const [a, b] = await world(2);
    // checkOptions accepts any finite timeout ≥ 0, but Node's setTimeout clamps delays > 2^31−1 ms
    // to 1 ms (TimeoutOverflowWarning): the call times out immediately.
    const r = b.recv(0, 9, { timeout: 2 ** 31 });
    expect(await within(r, 200)).toEqual({ status: 'pending' });
    await a.send('late', 1, 9);
    expect(await r).toBe('late');
  });

  it('a rendezvous send with a timeout of 2^31 ms is not withdrawn at once', async () => {
    const [a, b] = await world(2);
    const s = within(a.sendBuffer(new Uint8Array(4096), 1, 10, { timeout: 2 ** 31 }), 1500);
    await sleep(100);
    const r = within(b.recvBuffer(new Uint8Array(4096), 0, 10), 1500);
    expect(await s).toEqual({ status: 'fulfilled', value: undefined });
    expect(await r).toMatchObject({ status: 'fulfilled', value: { bytes: 4096 } });
  });
});

describe('review: an already-aborted signal', () => {
  it('an eager send given an aborted signal rejects ABORTED and delivers nothing (as a rendezvous one does)', async () => {
    const [a, b] = await world(2);
    // Rendezvous (> 1024 bytes): withdrawn, rejects ABORTED.
    await expect(a.sendBuffer(new Uint8Array(4096), 1, 11, { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORTED' });
    // Eager: today it is sent and the call resolves — the outcome depends on the message size.
    await expect(a.sendBuffer(new Uint8Array(8), 1, 11, { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORTED' });
    await sleep(50);
    expect(b.iprobe(0, 11)).toBeUndefined();
  });

  it('a receive given an aborted signal rejects ABORTED and does not consume a waiting message', async () => {
    const [a, b] = await world(2);
    await a.send('kept', 1, 12);
    while (!b.iprobe(0, 12)) await sleep(1);
    // With no message waiting this rejects ABORTED; with one waiting it is consumed and returned.
    await expect(b.recv(0, 12, { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORTED' });
    expect(await within(b.recv(0, 12), 500)).toEqual({ status: 'fulfilled', value: 'kept' });
  });
});
