import { afterEach, describe, expect, it } from 'vitest';
import type { Worker } from 'node:worker_threads';
import { runTsWorker } from '../../../lib/ring/test/helpers.js';
import { IvshmemRegion } from '../region.js';
import { memoryRegion } from './helpers.js';

interface Report {
  loopMs: number;
  slots: (number | undefined)[];
  extra: number | null;
  allocations: number;
  full: number;
  doubles: number;
  clobbered: number;
  finalized: ({ rings: number; slot: boolean } | undefined)[];
}

const workers: Worker[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
});

describe('ivshmem region under contention (worker threads, one SharedArrayBuffer)', () => {
  it('hands every slot and every block to one contender at a time', async () => {
    const N = 4;
    const region = memoryRegion(2 ** 18);
    const r = IvshmemRegion.format(region, { slots: 2 * N, ringDataBytes: 256, maxBlocks: 20 });
    const control = new SharedArrayBuffer(64);
    const owners = new SharedArrayBuffer(4 * r.layout.blocks);
    const runs = Array.from({ length: N }, (_, worker) =>
      runTsWorker<Report>('backends/ivshmem/test/worker-contender.ts', { region, control, owners, worker, workers: N, iterations: 4000, hold: 6 }),
    );
    workers.push(...runs.map((x) => x.worker));
    // Start them together once all have loaded, so the claims really race.
    const ready = Date.now() + 50_000;
    while (Atomics.load(new Int32Array(control), 3) < N && Date.now() < ready) await new Promise((resolve) => setTimeout(resolve, 20));
    Atomics.store(new Int32Array(control), 0, 1);
    Atomics.notify(new Int32Array(control), 0);
    const reports = await Promise.all(runs.map((x) => x.result));

    const slots = reports.flatMap((x) => x.slots);
    expect(slots.every((s) => s !== undefined)).toBe(true);
    expect(new Set(slots).size).toBe(2 * N);
    expect(reports[0].extra).toBeNull();
    for (const x of reports) {
      expect(x.doubles).toBe(0);
      expect(x.clobbered).toBe(0);
      expect(x.allocations).toBeGreaterThan(0);
      expect(x.finalized).toEqual([{ rings: 0, slot: true }, { rings: 0, slot: true }]);
    }
    const total = reports.reduce((n, x) => n + x.allocations, 0);
    const full = reports.reduce((n, x) => n + x.full, 0);
    // 4 contenders holding up to 7 of 20 blocks each: the region filled up, and that was not an error.
    expect(full).toBeGreaterThan(0);
    expect(total + full).toBe(N * 4000);
    expect(r.rings.list().every((b) => b.state === 'free')).toBe(true);
    expect(r.members.list().every((s) => s.state === 'free')).toBe(true);
    expect(r.status().ringEpoch).toBe(3 * total);
  });
});
