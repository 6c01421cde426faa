/**
 * Review: `sendrecv` argument failures. The contract (errors.ts, DESIGN §2): INVALID_ARGUMENT is
 * "thrown (rejected) at once; nothing was sent" — and a rejected call must leave nothing behind.
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

describe('review: sendrecv with bad arguments', () => {
  it('a sendrecv rejected for a bad dest leaves no receive posted behind (it would steal the next message)', async () => {
    const [a, b] = await world(2);
    await expect(a.sendrecv('x', 5)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await b.send('next', 0, 3);
    // The orphaned irecv(ANY_SOURCE, ANY_TAG) of the failed sendrecv must not take this message.
    expect(await within(a.recv(1, 3), 1000)).toEqual({ status: 'fulfilled', value: 'next' });
  });

  it('a sendrecv rejected because the value cannot be encoded leaves no receive posted behind', async () => {
    const [a, b] = await world(2);
    await expect(a.sendrecv(() => 1, 1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await b.send('next', 0, 4);
    expect(await within(a.recv(1, 4), 1000)).toEqual({ status: 'fulfilled', value: 'next' });
  });

  it('a sendrecv rejected for a bad source or receive tag sends nothing', async () => {
    const [a, b] = await world(2);
    await expect(a.sendrecv('leaked-1', 1, 7)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(a.sendrecv('leaked-2', 1, 0, 0, -5)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await sleep(50);
    // "INVALID_ARGUMENT … nothing was sent": b must have nothing to receive.
    expect(b.iprobe()).toBeUndefined();
  });

  it('a sendrecv whose send part times out does not swallow the message its receive part took', async () => {
    const [a, b] = await world(2);
    // The send part is rendezvous (> 1024 bytes) and b never receives it; b does send the reply.
    const call = within(a.sendrecv(new Uint8Array(4096), 1, 1, 5, 6, { timeout: 100 }), 3000);
    await b.send('reply', 0, 6);
    const r = await call;
    // Acceptable: the call returns the reply, or it fails and the reply can still be had (on the
    // error, or by receiving it again). Today: TIMEOUT, and the reply is consumed and dropped.
    let recovered: unknown;
    if (r.status === 'fulfilled') recovered = r.value;
    else if (r.status === 'rejected' && (r.error as { received?: unknown }).received !== undefined) recovered = (r.error as { received?: unknown }).received;
    else {
      const again = await within(a.recv(1, 6), 500);
      recovered = again.status === 'fulfilled' ? again.value : undefined;
    }
    expect(recovered).toBe('reply');
  });
});
