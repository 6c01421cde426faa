import { describe, expect, it } from 'vitest';
import type { LocalityCard } from '../../lib/backend.js';
import { bitmapHas, choosePairTransport, encodeBitmap, type Reachability } from '../../lib/locality.js';

const PRIORITIES = { self: 100, threads: 80, shm: 60, ivshmem: 40, tcp: 0 };

function card(rank: number, names: string[]): LocalityCard {
  const backends: Record<string, {}> = {};
  const priorities: Record<string, number> = {};
  for (const n of names) {
    backends[n] = {};
    priorities[n] = PRIORITIES[n as keyof typeof PRIORITIES];
  }
  return { rank, processNonce: `p${rank}`, hostname: 'h', pid: rank, address: '127.0.0.1', backends, priorities };
}

/** reach[r][name] = peers r proved with name. */
function reachOf(size: number, proofs: Record<number, Record<string, number[]>>): Reachability[] {
  return Array.from({ length: size }, (_, r) => Object.fromEntries(Object.entries(proofs[r] ?? {}).map(([n, peers]) => [n, encodeBitmap(size, (p) => peers.includes(p))])));
}

describe('reachability bitmaps', () => {
  it('round-trips any pattern, for sizes that are not multiples of 8', () => {
    for (const size of [1, 7, 8, 9, 33, 100]) {
      const pattern = (p: number) => (p * 7919) % 3 === 0;
      const b = encodeBitmap(size, pattern);
      for (let p = 0; p < size; p++) expect(bitmapHas(b, p)).toBe(pattern(p));
      expect(bitmapHas(b, size + 8)).toBe(false);
    }
  });
  it('treats garbage as unreachable', () => {
    expect(bitmapHas(undefined, 0)).toBe(false);
    expect(bitmapHas(42 as unknown as string, 0)).toBe(false);
  });
});

describe('per-pair selection', () => {
  it('picks the highest priority proven both ways, identically at both ends', () => {
    const cards = [card(0, ['self', 'shm', 'tcp']), card(1, ['self', 'shm', 'tcp'])];
    const reach = reachOf(2, { 0: { self: [0], shm: [0, 1], tcp: [0, 1] }, 1: { self: [1], shm: [0, 1], tcp: [0, 1] } });
    expect(choosePairTransport(0, 1, cards, reach).transport).toBe('shm');
    expect(choosePairTransport(1, 0, cards, reach).transport).toBe('shm');
    expect(choosePairTransport(0, 0, cards, reach).transport).toBe('self');
  });

  it('falls back when a probe succeeds in one direction only, and both ends agree', () => {
    const cards = [card(0, ['shm', 'tcp']), card(1, ['shm', 'tcp'])];
    // Rank 0 can open rank 1's token, not the other way round (e.g. different /dev/shm).
    const reach = reachOf(2, { 0: { shm: [1], tcp: [1] }, 1: { shm: [], tcp: [0] } });
    const a = choosePairTransport(0, 1, cards, reach);
    const b = choosePairTransport(1, 0, cards, reach);
    expect(a.transport).toBe('tcp');
    expect(b.transport).toBe('tcp');
    expect(a.considered[0]).toMatchObject({ name: 'shm', aReachesB: true, bReachesA: false });
  });

  it('ignores a transport only one card lists, and reports no transport when nothing connects', () => {
    const cards = [card(0, ['shm']), card(1, ['tcp'])];
    const reach = reachOf(2, { 0: { shm: [1] }, 1: { tcp: [0] } });
    const c = choosePairTransport(0, 1, cards, reach);
    expect(c.transport).toBeUndefined();
    expect(c.considered.every((x) => !x.listedByBoth)).toBe(true);
  });

  it('agrees at both ends over random cards and proofs', () => {
    const names = ['self', 'threads', 'shm', 'ivshmem', 'tcp'];
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let trial = 0; trial < 200; trial++) {
      const size = 2 + Math.floor(rnd() * 6);
      const cards = Array.from({ length: size }, (_, r) => card(r, names.filter(() => rnd() < 0.7)));
      const proofs: Record<number, Record<string, number[]>> = {};
      for (let r = 0; r < size; r++) proofs[r] = Object.fromEntries(names.map((n) => [n, Array.from({ length: size }, (_, p) => p).filter(() => rnd() < 0.6)]));
      const reach = reachOf(size, proofs);
      for (let a = 0; a < size; a++) {
        for (let b = 0; b < size; b++) {
          const x = choosePairTransport(a, b, cards, reach).transport;
          expect(choosePairTransport(b, a, cards, reach).transport).toBe(x);
          if (x !== undefined) {
            expect(proofs[a][x]).toContain(b);
            expect(proofs[b][x]).toContain(a);
          }
        }
      }
    }
  });

  it('uses the lower rank’s priorities when cards disagree', () => {
    const c0 = { ...card(0, ['a', 'b']), priorities: { a: 10, b: 5 } };
    const c1 = { ...card(1, ['a', 'b']), priorities: { a: 1, b: 50 } };
    const reach = reachOf(2, { 0: { a: [1], b: [1] }, 1: { a: [0], b: [0] } });
    expect(choosePairTransport(0, 1, [c0, c1], reach).transport).toBe('a');
    expect(choosePairTransport(1, 0, [c0, c1], reach).transport).toBe('a');
  });
});
