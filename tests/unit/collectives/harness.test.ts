import { describe, expect, it } from 'vitest';
import { runCollective } from '../../helpers/collective-harness.js';

describe('collective harness', () => {
  it('delivers in FIFO order per pair and reports leftovers and mismatched lengths', async () => {
    const { results } = await runCollective(3, async (io) => {
      const next = (io.rank + 1) % io.size;
      const prev = (io.rank + io.size - 1) % io.size;
      const sends = [1, 2, 3].map((k) => io.send(next, new Uint8Array([io.rank, k])));
      const got: number[] = [];
      for (let k = 0; k < 3; k++) {
        const b = new Uint8Array(2);
        await io.recv(prev, b);
        got.push(b[1]);
      }
      await io.waitAll(sends);
      return got;
    }, { seed: 7 });
    expect(results).toEqual([[1, 2, 3], [1, 2, 3], [1, 2, 3]]);
    await expect(runCollective(2, async (io) => {
      if (io.rank === 0) await io.send(1, new Uint8Array(4));
    })).rejects.toThrow(/never received/);
    await expect(runCollective(2, async (io) => {
      if (io.rank === 0) await io.send(1, new Uint8Array(4));
      else await io.recv(0, new Uint8Array(8));
    })).rejects.toThrow(/expected 8 bytes/);
    await expect(runCollective(2, async (io) => {
      if (io.rank === 1) await io.recv(0, new Uint8Array(8));
    }, { timeoutMs: 200 })).rejects.toThrow(/rank 1 waits on 1 message/);
  });
});
