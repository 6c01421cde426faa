// Request: its promise is made only when waited on, so these check both orders — waited on before
// it settles, and after — and that a rejection never surfaces as unhandled on its own.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createRequest, settledRequest, waitAll, type ProgressEngine } from '../../lib/request.js';
import { VmcommError } from '../../lib/errors.js';

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeEach(() => {
  unhandled.length = 0;
  process.on('unhandledRejection', onUnhandled);
});
afterEach(() => {
  process.off('unhandledRejection', onUnhandled);
});

/** Lets pending promise jobs and the unhandled-rejection check run. */
const settle = () => new Promise<void>((r) => setTimeout(r, 5));

describe('Request', () => {
  it('resolves when waited on before and after it settles, with the same promise each time', async () => {
    const [early, c1] = createRequest<number>(undefined);
    const p = early.wait();
    expect(early.state).toBe('pending');
    c1.resolve(7);
    expect(early.wait()).toBe(p);
    await expect(p).resolves.toBe(7);
    expect([early.state, early.value, early.error]).toEqual(['fulfilled', 7, undefined]);

    const [late, c2] = createRequest<string>(undefined);
    c2.resolve('x');
    c2.reject(new Error('too late')); // settles once
    expect(await late).toBe('x');
    expect(late.test()).toBe(true);
  });

  it('rejects waiters, and a rejection nobody looks at is never reported as unhandled', async () => {
    const boom = new VmcommError('PEER_LOST', 'gone');
    const [waited, c1] = createRequest<void>(undefined);
    const p = waited.wait();
    c1.reject(boom);
    await expect(p).rejects.toBe(boom);

    const [ignoredAfter, c2] = createRequest<void>(undefined);
    void ignoredAfter.wait(); // a promise made, then rejected, and dropped
    c2.reject(boom);
    const [ignoredBefore, c3] = createRequest<void>(undefined);
    c3.reject(boom);
    void ignoredBefore.wait(); // rejected before the promise was made
    const [neverWaited, c4] = createRequest<void>(undefined);
    c4.reject(boom);
    void settledRequest<void>({ error: boom });
    await settle();
    expect(unhandled).toEqual([]);
    expect([neverWaited.state, neverWaited.error]).toEqual(['rejected', boom]);
    await expect(ignoredBefore).rejects.toBe(boom);
  });

  it('a blocking wait spins on the engine until its request settles, and not after', async () => {
    let polls = 0;
    const [mine, mc] = createRequest<number>({ polling: true, poll: () => (++polls === 10 ? mc.resolve(polls) : undefined) });
    const p = mine.wait();
    expect(polls).toBe(10); // settled within the spin: no event-loop turn needed
    expect(mine.state).toBe('fulfilled');
    expect(await p).toBe(10);
    mine.wait();
    expect(polls).toBe(10); // a settled request does not poll
    // An engine with nothing to poll is not spun on: the wait returns at once, still pending.
    const [idle, ic] = createRequest<number>({ polling: false, poll: () => void polls++ });
    const q = idle.wait();
    expect([idle.state, polls]).toEqual(['pending', 10]);
    ic.resolve(1);
    expect(await q).toBe(1);
  });

  it('waitAll takes requests and promises alike, and rejects with the first failure', async () => {
    const [a, ca] = createRequest<number>(undefined);
    const [b, cb] = createRequest<number>(undefined);
    const all = waitAll([a, b, Promise.resolve(3), 4]);
    ca.resolve(1);
    cb.resolve(2);
    expect(await all).toEqual([1, 2, 3, 4]);
    const [x, cx] = createRequest<number>(undefined);
    const failed = waitAll([x, Promise.resolve(1)]);
    cx.reject(new VmcommError('TIMEOUT', 'late'));
    await expect(failed).rejects.toMatchObject({ code: 'TIMEOUT' });
  });
});
