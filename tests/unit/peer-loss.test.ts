import { describe, expect, it } from 'vitest';
import { ANY_SOURCE } from '../../lib/constants.js';
import { createLocalJob, reportLocalPeerLost } from '../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../lib/start-world.js';
import { memory } from '../helpers/memory-transport.js';

describe('peer loss', () => {
  it('fails what waits on the lost peer with PEER_LOST; live peers keep working', async () => {
    const job = createLocalJob(3);
    const comms = await Promise.all(job.map((b) => initWithBootstrap(b, { backends: [memory()], only: ['memory'], eagerLimitBytes: 16 })));
    const [c0, c1] = comms;
    const events: number[] = [];
    c0.on('peer:lost', ({ peer }) => events.push(peer));
    const fromLost = c0.irecv(2, 1);
    const anySource = c0.irecv(ANY_SOURCE, 1);
    const bigToLost = c0.isendBuffer(new Uint8Array(1024), 2, 1); // rendezvous: waits for rank 2
    reportLocalPeerLost(job, 2, 'killed by SIGKILL');
    await expect(fromLost).rejects.toMatchObject({ name: 'VmcommError', code: 'PEER_LOST', peer: 2 });
    await expect(bigToLost).rejects.toMatchObject({ code: 'PEER_LOST' });
    await expect(c0.send('x', 2)).rejects.toMatchObject({ code: 'PEER_LOST' });
    await expect(c0.recv(2)).rejects.toMatchObject({ code: 'PEER_LOST' });
    expect(events).toEqual([2]);
    // ANY_SOURCE still waits for the live peers, and gets their message.
    expect(anySource.test()).toBe(false);
    await c1.send('alive', 0, 1);
    expect(await anySource).toBe('alive');
    await c0.send('back', 1, 4);
    expect(await c1.recv(0, 4)).toBe('back');
  });
});
