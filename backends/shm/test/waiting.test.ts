// Waiting: a rank with nothing to do sleeps in a futex wait on its doorbell (on the addon's waiter
// thread), a send from another process wakes it, and a pending receive never holds the event loop.
import { beforeAll, describe, expect, it } from 'vitest';
import { lines, vmcomm } from '../../../tests/helpers/processes.js';
import { addon, ensureDist, finalizeAll, startJob } from './helpers.js';

describe.skipIf(addon === undefined)('shm waiting', () => {
  beforeAll(ensureDist, 120_000);

  it('a rank asleep in its futex is woken by a send from another process; its timers ran meanwhile', async () => {
    const out = await vmcomm(['run', '-n', '2', 'tests/fixtures/shm/with-shm.ts', 'tests/fixtures/shm/wake.ts']);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const [r0] = lines(out.stdout).filter((l) => l.startsWith('rank 0:'));
    const [r1] = lines(out.stdout).filter((l) => l.startsWith('rank 1:'));
    // The sender rang the futex (the receiver's waiter flag was up), the receiver went to sleep and woke.
    expect(r0).toMatch(/^rank 0: sent; futex wakes [1-9]\d*$/);
    const m = /^rank 1: got late; timer ticks while waiting (\d+); sleeps (\d+); wakes (\d+); state \w+$/.exec(r1);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    expect(Number(m![2])).toBeGreaterThan(0);
    expect(Number(m![3])).toBeGreaterThan(0);
  }, 60_000);

  it('a pending receive does not block the event loop: a timer fires during it, and sends the message', async () => {
    const job = await startJob(2);
    try {
      const [a, b] = job.comms;
      const pending = b.recv(0, 5);
      let fired = false;
      await new Promise<void>((resolve) =>
        setTimeout(() => {
          fired = true;
          void a.send('from the timer', 1, 5).then(() => resolve());
        }, 30),
      );
      expect(fired).toBe(true);
      expect(await pending).toBe('from the timer');
      const w = job.transports[1].waiting!;
      expect(w.counts.turns).toBeGreaterThan(0);
    } finally {
      await finalizeAll(job);
    }
  });

  it('chooses to yield when the host has more ranks than cores', async () => {
    const job = await startJob(2, { waitMode: 'yield' });
    const spin = await startJob(2, { waitMode: 'spin' });
    try {
      expect(job.transports[0].waiting!.yieldOnEmpty).toBe(true);
      expect(spin.transports[0].waiting!.yieldOnEmpty).toBe(false);
      await job.comms[0].send(1, 1, 1);
      expect(await job.comms[1].recv(0, 1)).toBe(1);
    } finally {
      await finalizeAll(job);
      await finalizeAll(spin);
    }
  });
});
