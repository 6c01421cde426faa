import { describe, expect, it } from 'vitest';
import { allreduceRabenseifner } from '../../../lib/collectives/allreduce-rabenseifner.js';
import { allreduceRecursiveDoubling } from '../../../lib/collectives/allreduce-recursive-doubling.js';
import { allreduceRing } from '../../../lib/collectives/allreduce-ring.js';
import { bitReverse, foldRanks, splitBlocks } from '../../../lib/collectives/blocks.js';
import type { CollectiveIO, Reducer } from '../../../lib/collectives/io.js';
import { reduceBinomial } from '../../../lib/collectives/reduce-binomial.js';
import { reduceRabenseifner } from '../../../lib/collectives/reduce-rabenseifner.js';
import { reduceScatterRecursiveHalving } from '../../../lib/collectives/reduce-scatter-recursive-halving.js';
import { reduceScatterRing } from '../../../lib/collectives/reduce-scatter-ring.js';
import { scanRecursiveDoubling } from '../../../lib/collectives/scan-recursive-doubling.js';
import { type HarnessOptions, runCollective } from '../../helpers/collective-harness.js';

// ---- Test reducers (written here on purpose: independent of lib/collectives/ops.ts) ----

const f64 = (u: Uint8Array) => new Float64Array(u.buffer, u.byteOffset, u.byteLength / 8);
const i32 = (u: Uint8Array) => new Int32Array(u.buffer, u.byteOffset, u.byteLength / 4);

/** Float64 sum: commutative, but not associative in floating point (so order shows in the bits). */
const sumF64: Reducer = {
  elementBytes: 8,
  commutative: true,
  combine(left, right, into) {
    const a = f64(left), b = f64(right), c = f64(into);
    for (let i = 0; i < c.length; i++) c[i] = a[i] + b[i];
  },
};

/** Int32 sum with wrap-around: commutative and exact. */
const sumI32: Reducer = {
  elementBytes: 4,
  commutative: true,
  combine(left, right, into) {
    const a = i32(left), b = i32(right), c = i32(into);
    for (let i = 0; i < c.length; i++) c[i] = (a[i] + b[i]) | 0;
  },
};

/** 2×2 int32 matrix product mod 2³²: associative, exact, not commutative. */
const matmul: Reducer = {
  elementBytes: 16,
  commutative: false,
  combine(left, right, into) {
    const a = i32(left), b = i32(right), c = i32(into);
    for (let i = 0; i < c.length; i += 4) {
      const [a0, a1, a2, a3, b0, b1, b2, b3] = [a[i], a[i + 1], a[i + 2], a[i + 3], b[i], b[i + 1], b[i + 2], b[i + 3]];
      c[i] = (Math.imul(a0, b0) + Math.imul(a1, b2)) | 0;
      c[i + 1] = (Math.imul(a0, b1) + Math.imul(a1, b3)) | 0;
      c[i + 2] = (Math.imul(a2, b0) + Math.imul(a3, b2)) | 0;
      c[i + 3] = (Math.imul(a2, b1) + Math.imul(a3, b3)) | 0;
    }
  },
};

/**
 * Rank-interval concatenation: element (lo, hi, ok, index) stands for "ranks lo…hi, in order". Combining
 * is only `ok` when left ends right before right starts and both are the same element index, so any
 * reordering, skipped or repeated rank, or misplaced block shows as ok = 0 (stricter than matmul).
 */
const ranks: Reducer = {
  elementBytes: 16,
  commutative: false,
  combine(left, right, into) {
    const a = i32(left), b = i32(right), c = i32(into);
    for (let i = 0; i < c.length; i += 4) {
      const ok = a[i + 2] & b[i + 2] & (a[i + 1] + 1 === b[i] ? 1 : 0) & (a[i + 3] === b[i + 3] ? 1 : 0);
      const [lo, hi, index] = [a[i], b[i + 1], a[i + 3]];
      c[i] = lo;
      c[i + 1] = hi;
      c[i + 2] = ok;
      c[i + 3] = index;
    }
  },
};

const REDUCERS = { sumF64, sumI32, matmul, ranks } as const;
type ReducerName = keyof typeof REDUCERS;
const COMMUTATIVE: ReducerName[] = ['sumF64', 'sumI32'];
const ALL: ReducerName[] = ['sumF64', 'sumI32', 'matmul', 'ranks'];

function rng(seed: number): () => number {
  let s = (seed * 2654435761) >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

/** Rank `rank`'s contribution of `count` elements. */
function contribution(name: ReducerName, rank: number, count: number, seed: number): Uint8Array {
  const r = rng(seed * 1000 + rank + 1);
  const bytes = new Uint8Array(count * REDUCERS[name].elementBytes);
  if (name === 'sumF64') {
    // Wide magnitudes, so that a different order of additions gives different bits.
    const v = f64(bytes);
    for (let i = 0; i < count; i++) v[i] = (r() - 0.5) * 10 ** Math.floor(r() * 12);
  } else if (name === 'sumI32') {
    const v = i32(bytes);
    for (let i = 0; i < count; i++) v[i] = (r() * 0x1_0000_0000) | 0;
  } else if (name === 'matmul') {
    const v = i32(bytes);
    for (let i = 0; i < v.length; i++) v[i] = Math.floor(r() * 7) - 3;
  } else {
    const v = i32(bytes);
    for (let i = 0; i < count; i++) v.set([rank, rank, 1, i], 4 * i);
  }
  return bytes;
}

/** The reduction over `ranks` lo…hi in rank order, sequentially. */
function reference(name: ReducerName, lo: number, hi: number, count: number, seed: number): Uint8Array {
  const acc = contribution(name, lo, count, seed);
  for (let r = lo + 1; r <= hi; r++) REDUCERS[name].combine(acc, contribution(name, r, count, seed), acc);
  return acc;
}

/** Exact for the integer reducers; for float sums, close to the sequential sum (another order). */
function expectResult(name: ReducerName, got: Uint8Array, want: Uint8Array, where: string): void {
  expect(got.byteLength, where).toBe(want.byteLength);
  if (name !== 'sumF64') {
    expect(Buffer.from(got).equals(Buffer.from(want)), where).toBe(true);
    return;
  }
  // Terms reach 1e11, so reordering 9 of them moves the sum by up to a few ulps of 1e11 (~1e-4).
  const g = f64(got), w = f64(want);
  for (let i = 0; i < w.length; i++) {
    if (!(Math.abs(g[i] - w[i]) <= 1e-2)) expect(g[i], `${where}, element ${i}`).toBe(w[i]);
  }
}

const SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9];
const COUNTS = [0, 1, 7, 1000];
/** Seeds and delivery modes: eager, rendezvous over 64 bytes, rendezvous for every non-empty message. */
const RUNS: HarnessOptions[] = [{ seed: 1 }, { seed: 2, rendezvousBytes: 64 }, { seed: 3, rendezvousBytes: 0 }];

type Allreduce = (io: CollectiveIO, data: Uint8Array, reducer: Reducer) => Promise<void>;

async function checkAllreduce(algorithm: Allreduce, name: ReducerName, size: number, count: number, options: HarnessOptions): Promise<void> {
  const seed = options.seed ?? 1;
  const { results } = await runCollective(size, async (io) => {
    const data = contribution(name, io.rank, count, seed);
    await algorithm(io, data, REDUCERS[name]);
    return data;
  }, options);
  const where = `${name}, size ${size}, count ${count}, seed ${seed}`;
  expectResult(name, results[0], reference(name, 0, size - 1, count, seed), where);
  // Determinism: bit-identical on every rank (floats included).
  for (let r = 1; r < size; r++) expect(Buffer.from(results[r]).equals(Buffer.from(results[0])), `${where}: rank ${r} differs from rank 0`).toBe(true);
}

describe.each([
  ['allreduceRecursiveDoubling', allreduceRecursiveDoubling, ALL],
  ['allreduceRabenseifner', allreduceRabenseifner, ALL],
  ['allreduceRing', allreduceRing, COMMUTATIVE],
] as const)('%s', (_, algorithm, reducers) => {
  it.each(SIZES)('matches the sequential reduction, bit-identical on all ranks, at size %i', async (size) => {
    for (const name of reducers) for (const count of COUNTS) for (const options of RUNS) await checkAllreduce(algorithm, name, size, count, options);
  });
});

describe('allreduce on long vectors', () => {
  it.each([
    ['allreduceRecursiveDoubling', allreduceRecursiveDoubling],
    ['allreduceRabenseifner', allreduceRabenseifner],
    ['allreduceRing', allreduceRing],
  ] as const)('%s: 100 000 doubles on 6 ranks', async (_, algorithm) => {
    await checkAllreduce(algorithm, 'sumF64', 6, 100_000, { seed: 4, rendezvousBytes: 4096 });
  });

  it('ring and Rabenseifner move (p−1)/p of the vector per phase; recursive doubling all of it per step', async () => {
    const n = 8 * 1024;
    const sent = async (algorithm: Allreduce, size: number) => (await runCollective(size, async (io) => algorithm(io, contribution('sumF64', io.rank, n / 8, 1), sumF64))).stats.bytes;
    expect(await sent(allreduceRing, 8)).toEqual(new Array(8).fill((2 * 7 * n) / 8));
    expect(await sent(allreduceRabenseifner, 8)).toEqual(new Array(8).fill((2 * 7 * n) / 8));
    expect(await sent(allreduceRecursiveDoubling, 8)).toEqual(new Array(8).fill(3 * n));
    // Six ranks fold onto four: ranks 0 and 2 only send their vector in; 1 and 3 send the result out.
    expect(await sent(allreduceRabenseifner, 6)).toEqual([n, (2 * 3 * n) / 4 + n, n, (2 * 3 * n) / 4 + n, (2 * 3 * n) / 4, (2 * 3 * n) / 4]);
  });
});

describe('commutative-only algorithms', () => {
  it('refuse a non-commutative reducer before sending anything', async () => {
    await expect(runCollective(3, (io) => allreduceRing(io, new Uint8Array(16), matmul))).rejects.toThrow(/commutative/);
    await expect(runCollective(3, (io) => reduceScatterRing(io, new Uint8Array(48), [16, 16, 16], matmul))).rejects.toThrow(/commutative/);
  });
});

type Reduce = (io: CollectiveIO, data: Uint8Array, reducer: Reducer, root: number) => Promise<void>;

describe.each([
  ['reduceBinomial', reduceBinomial],
  ['reduceRabenseifner', reduceRabenseifner],
] as const)('%s', (_, algorithm: Reduce) => {
  it.each(SIZES)('matches the sequential reduction at every root, size %i', async (size) => {
    for (const name of ALL) {
      for (const count of COUNTS) {
        for (const [k, options] of RUNS.entries()) {
          // Every root for short vectors; a few for the long ones.
          const roots = count < 1000 ? Array.from({ length: size }, (_, r) => r) : [...new Set([0, size - 1, (k + 1) % size])];
          for (const root of roots) {
            const seed = (options.seed ?? 1) + 10 * root;
            const { results } = await runCollective(size, async (io) => {
              const data = contribution(name, io.rank, count, seed);
              await algorithm(io, data, REDUCERS[name], root);
              return data;
            }, { ...options, seed });
            expectResult(name, results[root], reference(name, 0, size - 1, count, seed), `${name}, size ${size}, count ${count}, root ${root}`);
          }
        }
      }
    }
  });

  it('reduces 100 000 doubles on 7 ranks to root 5', async () => {
    const { results } = await runCollective(7, async (io) => {
      const data = contribution('sumF64', io.rank, 100_000, 9);
      await algorithm(io, data, sumF64, 5);
      return data;
    }, { seed: 9, rendezvousBytes: 4096 });
    expectResult('sumF64', results[5], reference('sumF64', 0, 6, 100_000, 9), 'long reduce');
  });
});

type ReduceScatter = (io: CollectiveIO, data: Uint8Array, blockBytes: readonly number[], reducer: Reducer) => Promise<Uint8Array>;

/** Per-rank element counts summing to `count`: even, all in one rank, and random (zeros likely). */
function layouts(size: number, count: number, seed: number): number[][] {
  const even = Array.from({ length: size }, (_, r) => Math.floor(count / size) + (r < count % size ? 1 : 0));
  const one = Array.from({ length: size }, (_, r) => (r === (seed % size) ? count : 0));
  const random = new Array<number>(size).fill(0);
  const r = rng(seed + 77);
  for (let left = count; left > 0; ) {
    const take = Math.min(left, 1 + Math.floor(r() * Math.max(1, count / 3)));
    random[Math.floor(r() * size)] += take;
    left -= take;
  }
  return [even, one, random];
}

describe.each([
  ['reduceScatterRecursiveHalving', reduceScatterRecursiveHalving, ALL],
  ['reduceScatterRing', reduceScatterRing, COMMUTATIVE],
] as const)('%s', (_, algorithm: ReduceScatter, reducers) => {
  it.each(SIZES)('returns each rank its block of the sequential reduction, size %i', async (size) => {
    for (const name of reducers) {
      const elementBytes = REDUCERS[name].elementBytes;
      for (const count of COUNTS) {
        for (const options of RUNS) {
          const seed = options.seed ?? 1;
          for (const counts of layouts(size, count, seed)) {
            const blockBytes = counts.map((c) => c * elementBytes);
            const { results } = await runCollective(size, async (io) => {
              const data = contribution(name, io.rank, count, seed);
              const before = data.slice();
              const block = await algorithm(io, data, blockBytes, REDUCERS[name]);
              expect(Buffer.from(data).equals(Buffer.from(before)), 'data is left unchanged').toBe(true);
              return block;
            }, options);
            const full = reference(name, 0, size - 1, count, seed);
            let at = 0;
            for (let r = 0; r < size; r++) {
              expectResult(name, results[r], full.subarray(at, at + blockBytes[r]), `${name}, size ${size}, counts ${counts}, rank ${r}`);
              at += blockBytes[r];
            }
          }
        }
      }
    }
  });
});

describe('scanRecursiveDoubling', () => {
  it.each(SIZES)('gives every rank its inclusive and exclusive prefix in rank order, size %i', async (size) => {
    for (const name of ALL) {
      for (const count of COUNTS) {
        for (const options of RUNS) {
          const seed = options.seed ?? 1;
          for (const exclusive of [false, true]) {
            const { results } = await runCollective(size, async (io) => {
              const data = contribution(name, io.rank, count, seed);
              const defined = await scanRecursiveDoubling(io, data, REDUCERS[name], exclusive);
              return { data, defined };
            }, options);
            for (let r = 0; r < size; r++) {
              const where = `${name}, size ${size}, count ${count}, rank ${r}, ${exclusive ? 'exclusive' : 'inclusive'}`;
              expect(results[r].defined, where).toBe(!exclusive || r > 0);
              if (exclusive && r === 0) expect(Buffer.from(results[r].data).equals(Buffer.from(contribution(name, 0, count, seed))), where).toBe(true);
              else expectResult(name, results[r].data, reference(name, 0, exclusive ? r - 1 : r, count, seed), where);
            }
          }
        }
      }
    }
  });
});

describe('blocks', () => {
  it('splits on element boundaries, leading blocks larger, trailing ones empty when short', () => {
    expect(splitBlocks(7 * 8, 8, 4)).toEqual([0, 16, 32, 48, 56]);
    expect(splitBlocks(2 * 12, 12, 4)).toEqual([0, 12, 24, 24, 24]);
    expect(splitBlocks(0, 4, 3)).toEqual([0, 0, 0, 0]);
  });

  it('folds pairs onto a power of two keeping rank order, and keeps a given root', () => {
    const virtualRanks = (size: number, keep?: number) => Array.from({ length: size }, (_, r) => foldRanks(r, size, keep).newRank);
    expect(virtualRanks(6)).toEqual([-1, 0, -1, 1, 2, 3]);
    expect(virtualRanks(6, 2)).toEqual([-1, 0, 1, -1, 2, 3]);
    expect(virtualRanks(8)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const fold = foldRanks(0, 7, 2);
    expect([0, 1, 2, 3].map((v) => fold.real(v))).toEqual([1, 2, 5, 6]);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((v) => bitReverse(v, 3))).toEqual([0, 4, 2, 6, 1, 5, 3, 7]);
  });
});
