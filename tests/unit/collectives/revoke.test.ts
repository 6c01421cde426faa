import { afterEach, describe, expect, it } from 'vitest';
import type { Communicator } from '../../../lib/communicator.js';
import { Op } from '../../../lib/constants.js';
import { createLocalJob, reportLocalPeerLost } from '../../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../../lib/start-world.js';
import type { Bootstrap } from '../../../lib/bootstrap.js';
import { memory } from '../../helpers/memory-transport.js';
import { outcomes } from '../../helpers/settle.js';

let open: Communicator[] = [];
async function job(size: number, eagerLimitBytes?: number): Promise<{ comms: Communicator[]; boots: Bootstrap[] }> {
  const boots = createLocalJob(size);
  const comms = await Promise.all(boots.map((b) => initWithBootstrap(b, { backends: [memory()], only: ['memory'], eagerLimitBytes })));
  open = comms;
  return { comms, boots };
}
afterEach(async () => {
  await Promise.all(open.map((c) => c.finalize().catch(() => undefined)));
  open = [];
});


describe('collectives: ranks that disagree, fail or time out never hang the others', () => {
  it('different counts: INVALID_ARGUMENT on every rank, then REVOKED; point-to-point still works', async () => {
    const { comms } = await job(4);
    const got = await outcomes(comms.map((c) => c.allreduce(new Float64Array(c.rank === 2 ? 3 : 4), Op.SUM)));
    expect(got).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
    expect(await outcomes(comms.map((c) => c.barrier()))).toEqual(['REVOKED', 'REVOKED', 'REVOKED', 'REVOKED']);
    await comms[0].send('still here', 3, 5);
    expect(await comms[3].recv(0, 5)).toBe('still here');
  });

  it('different ops, large messages (rendezvous): INVALID_ARGUMENT everywhere', async () => {
    const { comms } = await job(3, 64);
    const got = await outcomes(comms.map((c) => c.allreduce(new Float64Array(1000).fill(1), c.rank === 0 ? Op.MAX : Op.SUM)));
    expect(got).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
  });

  it('different roots: every rank fails on this call or its next collective', async () => {
    const { comms } = await job(3);
    const first = await Promise.allSettled(comms.map((c) => c.bcast(c.rank === 0 ? 'a' : c.rank === 2 ? 'b' : undefined, c.rank === 2 ? 2 : 0, { timeout: 5_000 })));
    const second = await outcomes(comms.map((c, r) => (first[r].status === 'rejected' ? Promise.reject(first[r].reason) : c.barrier({ timeout: 5_000 }))));
    expect(second.every((code) => code === 'INVALID_ARGUMENT' || code === 'REVOKED')).toBe(true);
  });

  it('a rank that never calls: the others time out (TIMEOUT), and it finds the communicator revoked', async () => {
    const { comms } = await job(3);
    const waiting = await outcomes([comms[0].barrier({ timeout: 100 }), comms[1].barrier({ timeout: 2_000 })]);
    expect(waiting[0]).toBe('TIMEOUT');
    expect(['TIMEOUT', 'REVOKED']).toContain(waiting[1]);
    await expect(comms[2].barrier()).rejects.toMatchObject({ code: 'REVOKED' });
  });

  it('a peer lost inside a collective: REVOKED on every survivor', async () => {
    const { comms, boots } = await job(4);
    const calls = comms.slice(0, 3).map((c) => c.allreduce(c.rank, Op.SUM));
    reportLocalPeerLost(boots, 3, 'killed by SIGKILL');
    expect(await outcomes(calls)).toEqual(['REVOKED', 'REVOKED', 'REVOKED']);
    open = comms.slice(0, 3);
  });

  it('an op that throws: the thrower sees its own error, the others REVOKED', async () => {
    const { comms } = await job(3);
    const boom = (a: number, b: number) => {
      if (a + b > 0 && comms.length) throw new RangeError('op refused');
      return a + b;
    };
    const got = await Promise.allSettled(comms.map((c) => c.allreduce(c.rank === 0 ? 0 : 1, boom)));
    const kinds = got.map((s) => (s.status === 'rejected' ? (s.reason instanceof RangeError ? 'own' : (s.reason as { code: string }).code) : 'ok'));
    expect(kinds).toContain('own');
    expect(kinds.every((k) => k === 'own' || k === 'REVOKED')).toBe(true);
  });

  it('arguments refused by one rank alone: INVALID_ARGUMENT on every rank (the others do not wait for it)', async () => {
    const { comms } = await job(3);
    // Rank 0 passes a root that does not exist; the others wait in bcast until rank 0's refusal reaches
    // them. (Ranks that only send complete, and learn it at their next collective.)
    const got = await outcomes(comms.map((c) => c.bcast('x', c.rank === 0 ? 7 : 0)));
    expect(got).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
    expect(await outcomes(comms.map((c) => c.barrier()))).toEqual(['REVOKED', 'REVOKED', 'REVOKED']);
  });

  it('counts of the wrong length on one rank, an unknown algorithm, an op that does not fit: every rank hears of it', async () => {
    for (const bad of [
      (c: Communicator) => c.allgatherv(Int32Array.of(1), c.rank === 1 ? [1, 1] : [1, 1, 1]),
      (c: Communicator) => c.allreduce(Float64Array.of(1), Op.SUM, c.rank === 2 ? { algorithm: 'nope' } : undefined),
      (c: Communicator) => c.allreduce(Float64Array.of(1), c.rank === 0 ? Op.BAND : Op.SUM),
      (c: Communicator) => c.allreduce(Float64Array.of(1), c.rank === 0 ? (a: Float64Array) => a : Op.SUM, c.rank === 0 ? { algorithm: 'ring' } : undefined),
    ]) {
      const { comms } = await job(3);
      expect(await outcomes(comms.map((c) => bad(c)))).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
      await Promise.all(comms.map((c) => c.finalize()));
    }
  });

  it('different roots where both ranks send (bcast of a large value): INVALID_ARGUMENT on both, found on arrival', async () => {
    const { comms } = await job(2, 64);
    const big = 'v'.repeat(100_000);
    expect(await outcomes(comms.map((c) => c.bcast(big, c.rank)))).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
  });

  it('alltoallv counts that disagree between a pair (one side 0): INVALID_ARGUMENT, not a hang', async () => {
    const { comms } = await job(2);
    // Rank 1 sends rank 0 nothing; rank 0 expects one element from it.
    const got = await outcomes(comms.map((c) => c.alltoallv(Int32Array.of(1, 2), c.rank === 0 ? [1, 1] : [0, 1], new Int32Array(2), [1, 1])));
    // Rank 0 finds the empty block where it expected one element; rank 1 got all it expected and
    // learns of it through the revoke (at the latest at its next collective).
    expect(got[0]).toBe('INVALID_ARGUMENT');
    expect(['ok', 'INVALID_ARGUMENT']).toContain(got[1]);
    // A barrier already waiting when the notice arrives fails with its cause; later ones with REVOKED.
    for (const code of await outcomes(comms.map((c) => c.barrier()))) expect(['REVOKED', 'INVALID_ARGUMENT']).toContain(code);
  });

  it('a Buffer given to allreduce is not overwritten; alltoallv refuses overlapping buffers', async () => {
    const { comms } = await job(2);
    const inputs = comms.map(() => Buffer.from([1, 2, 3]));
    const outs = await Promise.all(comms.map((c, r) => c.allreduce(inputs[r], Op.SUM)));
    expect(inputs.map((b) => [...b])).toEqual([[1, 2, 3], [1, 2, 3]]);
    expect(outs.map((b) => [...b])).toEqual([[2, 4, 6], [2, 4, 6]]);
    const shared = new Int32Array(4);
    await expect(comms[0].alltoallv(shared.subarray(0, 2), [1, 1], shared.subarray(1, 3), [1, 1])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('collectives started together keep their order, and communicators do not mix', async () => {
    const { comms } = await job(3);
    const dups = await Promise.all(comms.map((c) => c.dup()));
    const results = await Promise.all(comms.map((c, r) => Promise.all([c.allreduce(1, Op.SUM), dups[r].allreduce(10, Op.SUM), c.allreduce(100, Op.SUM), c.bcast(r === 1 ? 'x' : undefined, 1)])));
    for (const r of results) expect(r).toEqual([3, 30, 300, 'x']);
    await Promise.all(dups.map((d) => d.free()));
  });
});
