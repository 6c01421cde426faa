// The ivshmem transport inside real worlds (ranks as worlds of this process): the core's choice with
// shm and tcp as the other candidates — shm wins where it can prove one OS (and ivshmem then leaves
// its region), a full region sends pairs to tcp on both ends, and the same choice at both ends.
import { afterAll, describe, expect, it } from 'vitest';
import { shm } from '../../shm/index.js';
import type { Communicator } from '../../../lib/communicator.js';
import { createLocalJob } from '../../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../../lib/start-world.js';
import { describeRegionFile } from '../admin.js';
import { ivshmem } from '../index.js';
import { addon, regionFile, removeRegionFiles } from './pair.js';

afterAll(removeRegionFiles);

async function world(size: number, only: string[], file: string, withShm = false): Promise<Communicator[]> {
  const backends = [ivshmem({ regions: [file] }), ...(withShm ? [shm()] : [])];
  return Promise.all(createLocalJob(size).map((b) => initWithBootstrap(b, { backends, only })));
}

describe.skipIf(addon === undefined)('ivshmem in a world', () => {
  it('shm proves one OS for every pair: shm wins; finalize leaves nothing in the region', async () => {
    const file = regionFile();
    const comms = await world(3, ['shm', 'ivshmem', 'tcp'], file, true);
    try {
      for (const c of comms) for (let p = 0; p < 3; p++) expect(c.transportOf(p)).toBe(p === c.rank ? 'self' : 'shm');
      // The core calls addPeers only for transports chosen for some pair: ivshmem, chosen for none,
      // keeps its slots and reservations until finalize (it would leave at once on addPeers([])).
      expect(describeRegionFile(file).members.length).toBeLessThanOrEqual(3);
    } finally {
      await Promise.all(comms.map((c) => c.finalize()));
    }
    const d = describeRegionFile(file);
    expect(d.members).toEqual([]);
    expect(d.rings).toEqual([]);
  });

  it('a region too small for every pair: the pairs it cannot hold use tcp, on both ends; all pairs exchange data', async () => {
    const file = regionFile(1 << 20, { maxBlocks: 7 });
    const n = 4;
    const comms = await world(n, ['ivshmem', 'tcp'], file);
    try {
      const kinds = new Set<string>();
      for (let a = 0; a < n; a++) {
        for (let b = 0; b < n; b++) {
          if (a === b) continue;
          expect(comms[a].transportOf(b)).toBe(comms[b].transportOf(a));
          kinds.add(comms[a].transportOf(b));
        }
      }
      expect(kinds).toEqual(new Set(['ivshmem', 'tcp']));
      const ivshmemPairs = comms.flatMap((c, a) => Array.from({ length: n }, (_, b) => b).filter((b) => b > a && c.transportOf(b) === 'ivshmem')).length;
      // Both rings of every ivshmem pair (more only where a rank got no ivshmem pair at all: the core
      // does not call its addPeers, so it keeps its reservations until finalize).
      const live = describeRegionFile(file).rings.filter((r) => r.state === 'live');
      expect(live.length).toBeGreaterThanOrEqual(2 * ivshmemPairs);
      const got = await Promise.all(
        comms.map(async (c) => {
          const sends = comms.map((_, p) => (p === c.rank ? undefined : c.send({ from: c.rank, to: p }, p, 5))).filter((x) => x !== undefined);
          const recvs: unknown[] = [];
          for (let p = 0; p < n; p++) if (p !== c.rank) recvs.push(await c.recv(p, 5));
          await Promise.all(sends);
          return recvs;
        }),
      );
      got.forEach((recvs, r) => expect(recvs).toEqual(Array.from({ length: n }, (_, p) => p).filter((p) => p !== r).map((p) => ({ from: p, to: r }))));
    } finally {
      await Promise.all(comms.map((c) => c.finalize()));
    }
    const d = describeRegionFile(file);
    expect(d.members).toEqual([]);
    expect(d.rings).toEqual([]);
  });
});
