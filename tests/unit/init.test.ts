import { describe, expect, it } from 'vitest';
import { init, VmcommError } from '../../lib/index.js';

describe('init() without a launcher', () => {
  it('gives a world of one, idempotently, that talks to itself and finalizes', async () => {
    const env = { PATH: process.env.PATH };
    const comm = await init({ env });
    expect(await init()).toBe(comm);
    expect([comm.rank, comm.size]).toEqual([0, 1]);
    expect(comm.transportOf(0)).toBe('self');
    expect(comm.locality().backends).toHaveProperty('tcp');
    const r = comm.irecv(0, 3);
    await comm.send(new Map([['k', 1n]]), 0, 3);
    expect(await r).toEqual(new Map([['k', 1n]]));
    await comm.barrier();
    await comm.finalize();
    await expect(comm.send(1, 0)).rejects.toBeInstanceOf(VmcommError);
    await expect(comm.barrier()).rejects.toMatchObject({ code: 'FINALIZED' });
  });
});
