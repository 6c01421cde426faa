/**
 * Flow control's last piece: a sender with thousands of rendezvous sends outstanding makes its
 * receiver hold at most `rendezvousWindow` RTS records (the rest wait at the sender, in order), and
 * every message still arrives, in order, with sends queued behind the window withdrawable.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Communicator } from '../../lib/communicator.js';
import { isVmcommError } from '../../lib/errors.js';
import { createLocalJob } from '../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../lib/start-world.js';
import { memory } from '../helpers/memory-transport.js';
import { within } from '../helpers/settle.js';

let worlds: Communicator[] = [];
afterEach(async () => {
  const all = worlds;
  worlds = [];
  await Promise.all(all.map((c) => within(c.finalize(), 5000)));
});

async function pair(window?: number): Promise<Communicator[]> {
  const plugin = memory({ eagerLimitBytes: 1024 });
  const comms = await Promise.all(
    createLocalJob(2).map((b) => initWithBootstrap(b, { backends: [plugin], only: ['memory'], ...(window === undefined ? {} : { rendezvousWindow: window }) })),
  );
  worlds = comms;
  return comms;
}

const settle = () => new Promise((r) => setTimeout(r, 50));

describe('rendezvous window', () => {
  it('3000 rendezvous sends ahead of any receive: the receiver holds at most the window, all arrive in order', async () => {
    const [a, b] = await pair(16);
    const n = 3000;
    const sends = Array.from({ length: n }, (_, i) => a.isendBuffer(new Int32Array(1024).fill(i), 1, 7));
    // Eager messages queue behind them and keep their place.
    const tail = a.isend('last', 1, 7);
    await settle();
    // Every RTS the receiver got is counted as a message received, before any receive matched it.
    expect(b.stats()[0].messagesReceived).toBeLessThanOrEqual(16);
    expect(b.stats()[0].messagesReceived).toBeGreaterThan(0);
    const into = new Int32Array(1024);
    for (let i = 0; i < n; i++) {
      await b.recvBuffer(into, 0, 7);
      if (into[0] !== i || into[1023] !== i) throw new Error(`message ${i} arrived as ${into[0]}`);
    }
    expect(await b.recv(0, 7)).toBe('last');
    await Promise.all([...sends, tail]);
  });

  it('a send waiting behind the window can time out; nothing of it reaches the receiver', async () => {
    const [a, b] = await pair(1);
    const first = a.isendBuffer(new Uint8Array(4096).fill(1), 1, 3);
    const second = a.sendBuffer(new Uint8Array(4096).fill(2), 1, 3, { timeout: 100 }).then(
      () => 'sent',
      (e: unknown) => (isVmcommError(e, 'TIMEOUT') ? 'TIMEOUT' : String(e)),
    );
    expect(await second).toBe('TIMEOUT');
    const third = a.isendBuffer(new Uint8Array(4096).fill(3), 1, 3);
    const got = new Uint8Array(4096);
    await b.recvBuffer(got, 0, 3);
    expect(got[0]).toBe(1);
    await b.recvBuffer(got, 0, 3);
    expect(got[0]).toBe(3);
    await Promise.all([first, third]);
  });

  it('rejects a bad rendezvousWindow', async () => {
    const [b0] = createLocalJob(1);
    await expect(initWithBootstrap(b0, { rendezvousWindow: 0 })).rejects.toThrow(/rendezvousWindow/);
  });
});
