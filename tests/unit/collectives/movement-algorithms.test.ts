import { describe, expect, it } from 'vitest';
import { allgatherBruck } from '../../../lib/collectives/allgather-bruck.js';
import { allgatherRecursiveDoubling } from '../../../lib/collectives/allgather-recursive-doubling.js';
import { allgatherRing } from '../../../lib/collectives/allgather-ring.js';
import { alltoallBruck } from '../../../lib/collectives/alltoall-bruck.js';
import { alltoallPairwise } from '../../../lib/collectives/alltoall-pairwise.js';
import { alltoallvPairwise } from '../../../lib/collectives/alltoallv-pairwise.js';
import { bcastBinomial } from '../../../lib/collectives/bcast-binomial.js';
import { bcastPipeline } from '../../../lib/collectives/bcast-pipeline.js';
import { bcastScatterAllgather } from '../../../lib/collectives/bcast-scatter-allgather.js';
import { gatherBinomial, gathervBinomial } from '../../../lib/collectives/gather-binomial.js';
import { gatherv, gathervLinear, gathervTreeWins } from '../../../lib/collectives/gatherv.js';
import type { CollectiveIO } from '../../../lib/collectives/io.js';
import { displacements, relativeIO, rotated } from '../../../lib/collectives/layout.js';
import { scatterBinomial, scattervBinomial } from '../../../lib/collectives/scatter-binomial.js';
import { scatterv, scattervLinear } from '../../../lib/collectives/scatterv.js';
import { concatBytes as concat } from '../../helpers/bytes.js';
import { runCollective } from '../../helpers/collective-harness.js';
import type { HarnessOptions } from '../../helpers/collective-harness.js';

// ------------------------------------------------------------------------------------------ fixtures

const SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9];
const BLOCK_BYTES = [0, 1, 7, 1000];
/** Eager (default), rendezvous above 64 bytes, and every non-empty message rendezvous. */
const RUNS: HarnessOptions[] = [{ seed: 1 }, { seed: 2, rendezvousBytes: 64 }, { seed: 3, rendezvousBytes: 0 }];
const MB = 1 << 20;

/** Roots worth trying at `size`: first, last and middle. */
const roots = (size: number) => [...new Set([0, size - 1, size >> 1])];

/** Bytes that differ by owner, salt and position, so a misplaced or stale byte shows. */
function pattern(owner: number, salt: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (Math.imul(owner + 1, 0x9e3779b1) ^ Math.imul(i + 1 + salt * 7919, 0x85ebca6b)) >>> 23;
  return bytes;
}

/** Small deterministic generator for uneven counts. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 0x1_0000_0000;
  };
}

/** Uneven per-rank counts including zeros: a few shapes per size. */
function unevenCounts(size: number): number[][] {
  const random = lcg(size * 101);
  const menu = [0, 1, 3, 7, 0, 64, 100, 250];
  const shapes = [
    Array.from({ length: size }, () => menu[Math.floor(random() * menu.length)]),
    Array.from({ length: size }, (_, r) => (r % 2 === 0 ? 0 : 5 + r)),
    Array.from({ length: size }, (_, r) => (r === size - 1 ? 3000 : 2)),
    new Array<number>(size).fill(0),
  ];
  return shapes;
}

/**
 * Byte-exact comparison that stays fast for megabyte buffers (vitest's deep equality walks elements
 * one by one and its diff of a large array is unreadable); on a mismatch, names the first bad byte.
 */
function expectBytes(actual: Uint8Array | undefined, expected: Uint8Array, label = ''): void {
  expect(actual, label).toBeInstanceOf(Uint8Array);
  const a = Buffer.from(actual!.buffer, actual!.byteOffset, actual!.byteLength);
  const e = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength);
  if (a.equals(e)) return;
  let i = 0;
  while (i < Math.min(a.length, e.length) && a[i] === e[i]) i++;
  expect.fail(`${label}: ${a.length} bytes where ${e.length} expected; first difference at byte ${i} (${a[i]} ≠ ${e[i]})`);
}

type Body<T> = (io: CollectiveIO) => Promise<T>;
const run = <T>(size: number, body: Body<T>, options: HarnessOptions = {}) => runCollective(size, body, options).then((r) => r.results);

// ------------------------------------------------------------------------------------------ layout

describe('collective layout helpers', () => {
  it('computes displacements, rotations and relative ranks', async () => {
    expect(displacements([])).toEqual([0]);
    expect(displacements([3, 0, 2])).toEqual([0, 3, 3, 5]);
    expect(rotated([10, 11, 12, 13], 1)).toEqual([11, 12, 13, 10]);
    expect(rotated([10, 11, 12], 0)).toEqual([10, 11, 12]);
    const seen = await run(4, async (io) => {
      const rio = relativeIO(io, 3);
      const got: number[] = [];
      // Relative rank v sends its relative rank to v + 1: the physical ring shifted by the root.
      const next = (rio.rank + 1) % rio.size;
      const prev = (rio.rank + rio.size - 1) % rio.size;
      const b = new Uint8Array(1);
      await rio.waitAll([rio.recv(prev, b), rio.send(next, new Uint8Array([rio.rank]))]);
      got.push(rio.rank, b[0]);
      return got;
    });
    expect(seen).toEqual([
      [1, 0],
      [2, 1],
      [3, 2],
      [0, 3],
    ]);
  });
});

// ------------------------------------------------------------------------------------------ broadcast

type Bcast = (io: CollectiveIO, data: Uint8Array, root: number) => Promise<void>;

const BCASTS: [string, Bcast][] = [
  ['bcastBinomial', bcastBinomial],
  ['bcastScatterAllgather', bcastScatterAllgather],
  ['bcastPipeline (chain, default segment)', (io, d, r) => bcastPipeline(io, d, r)],
  // Short segments: 143 of 7 bytes for 1000 bytes; 200 for the 1 MB case, to keep it quick.
  ['bcastPipeline (chain, short segments)', (io, d, r) => bcastPipeline(io, d, r, Math.max(7, Math.ceil(d.byteLength / 200)))],
  ['bcastPipeline (binary, short segments)', (io, d, r) => bcastPipeline(io, d, r, Math.max(64, Math.ceil(d.byteLength / 200)), 'binary')],
];

async function checkBcast(bcast: Bcast, size: number, root: number, bytes: number, options: HarnessOptions): Promise<void> {
  const message = pattern(root, bytes, bytes);
  const results = await run(size, async (io) => {
    const data = io.rank === root ? message.slice() : pattern(io.rank + 50, 1, bytes); // junk off-root
    await bcast(io, data, root);
    return data;
  }, options);
  results.forEach((data, rank) => expectBytes(data, message, `rank ${rank}`));
}

describe.each(BCASTS)('%s', (_name, bcast) => {
  it.each(SIZES)('matches the root at size %i, all roots, lengths and delivery modes', async (size) => {
    for (const root of roots(size)) for (const bytes of BLOCK_BYTES) for (const options of RUNS) await checkBcast(bcast, size, root, bytes, options);
  });
  it('matches the root at every size up to 33', async () => {
    for (let size = 10; size <= 33; size++) await checkBcast(bcast, size, (size * 7 + 3) % size, 333, { seed: size, rendezvousBytes: 16 });
  });
  it('moves ~1 MB from a non-zero root', async () => {
    await checkBcast(bcast, 6, 4, MB + 13, { seed: 5 });
  });
});

describe('broadcast specifics', () => {
  it('binomial sends size − 1 messages; scatter-allgather sends log + ring; pipeline sends each segment once per edge', async () => {
    const data = (io: CollectiveIO, root: number) => (io.rank === root ? pattern(0, 0, 1000) : new Uint8Array(1000));
    const total = async (size: number, body: Body<void>) => (await runCollective(size, body)).stats.messages.reduce((a, b) => a + b, 0);
    expect(await total(7, (io) => bcastBinomial(io, data(io, 2), 2))).toBe(6);
    // Chain with 100-byte segments: 10 segments over 6 edges.
    expect(await total(7, (io) => bcastPipeline(io, data(io, 2), 2, 100))).toBe(60);
    // Binary tree: also one message per segment per edge.
    expect(await total(7, (io) => bcastPipeline(io, data(io, 2), 2, 100, 'binary'))).toBe(60);
    // Scatter: 6 messages (every rank gets a non-empty chunk); ring: 7 ranks × 6 steps.
    expect(await total(7, (io) => bcastScatterAllgather(io, data(io, 2), 2))).toBe(6 + 42);
  });
  it('rejects a bad segment size', async () => {
    await expect(bcastPipeline({ rank: 0, size: 1 } as CollectiveIO, new Uint8Array(1), 0, 0)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(bcastPipeline({ rank: 0, size: 1 } as CollectiveIO, new Uint8Array(1), 0, 1.5)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

// ------------------------------------------------------------------------------------------ gather / scatter

type Gatherv = (io: CollectiveIO, block: Uint8Array, out: Uint8Array | undefined, counts: readonly number[], root: number) => Promise<void>;
type Scatterv = (io: CollectiveIO, inp: Uint8Array | undefined, block: Uint8Array, counts: readonly number[], root: number) => Promise<void>;

async function checkGatherv(gather: Gatherv, size: number, root: number, counts: number[], options: HarnessOptions): Promise<void> {
  const blocks = counts.map((c, r) => pattern(r, c, c));
  const results = await run(size, async (io) => {
    const block = blocks[io.rank].slice();
    const out = io.rank === root ? pattern(99, 0, counts.reduce((a, b) => a + b, 0)) : undefined;
    await gather(io, block, out, counts, root);
    expectBytes(block, blocks[io.rank], 'input'); // untouched
    return out;
  }, options);
  expectBytes(results[root], concat(blocks), 'root');
}

async function checkScatterv(scatter: Scatterv, size: number, root: number, counts: number[], options: HarnessOptions): Promise<void> {
  const blocks = counts.map((c, r) => pattern(r, c + 1, c));
  const packed = concat(blocks);
  const results = await run(size, async (io) => {
    const inp = io.rank === root ? packed.slice() : undefined;
    const block = pattern(io.rank + 77, 0, counts[io.rank]);
    await scatter(io, inp, block, counts, root);
    if (inp) expectBytes(inp, packed, 'input'); // untouched
    return block;
  }, options);
  results.forEach((block, rank) => expectBytes(block, blocks[rank], `rank ${rank}`));
}

const GATHERVS: [string, Gatherv][] = [
  ['gatherBinomial', (io, block, out, _counts, root) => gatherBinomial(io, block, out, root)],
  ['gathervBinomial', gathervBinomial],
  ['gathervLinear', gathervLinear],
  ['gatherv (auto)', (io, block, out, counts, root) => gatherv(io, block, out, counts, root)],
];
const SCATTERVS: [string, Scatterv][] = [
  ['scatterBinomial', (io, inp, block, _counts, root) => scatterBinomial(io, inp, block, root)],
  ['scattervBinomial', scattervBinomial],
  ['scattervLinear', scattervLinear],
  ['scatterv (auto)', (io, inp, block, counts, root) => scatterv(io, inp, block, counts, root)],
];
/** Equal counts for the equal-block variants, uneven ones too for the v-variants. */
const countsFor = (name: string, size: number) => [...BLOCK_BYTES.map((b) => new Array<number>(size).fill(b)), ...(/v/.test(name) ? unevenCounts(size) : [])];

/** For the sweeps over larger sizes: uneven (with zeros) for the v-variants. */
const largeCounts = (name: string, size: number) => Array.from({ length: size }, (_, r) => (/v/.test(name) ? (r * 7) % 5 : 5));

describe.each(GATHERVS)('%s', (name, gather) => {
  it.each(SIZES)('matches the reference at size %i', async (size) => {
    for (const root of roots(size)) for (const counts of countsFor(name, size)) for (const options of RUNS) await checkGatherv(gather, size, root, counts, options);
  });
  it('matches the reference at every size up to 33', async () => {
    for (let size = 10; size <= 33; size++) await checkGatherv(gather, size, (size * 7 + 3) % size, largeCounts(name, size), { seed: size, rendezvousBytes: 16 });
  });
  it('moves ~1 MB to a non-zero root', async () => {
    await checkGatherv(gather, 6, 5, new Array<number>(6).fill(Math.ceil(MB / 6)), { seed: 5 });
  });
});

describe.each(SCATTERVS)('%s', (name, scatter) => {
  it.each(SIZES)('matches the reference at size %i', async (size) => {
    for (const root of roots(size)) for (const counts of countsFor(name, size)) for (const options of RUNS) await checkScatterv(scatter, size, root, counts, options);
  });
  it('matches the reference at every size up to 33', async () => {
    for (let size = 10; size <= 33; size++) await checkScatterv(scatter, size, (size * 7 + 3) % size, largeCounts(name, size), { seed: size, rendezvousBytes: 16 });
  });
  it('moves ~1 MB from a non-zero root', async () => {
    await checkScatterv(scatter, 6, 5, new Array<number>(6).fill(Math.ceil(MB / 6)), { seed: 5 });
  });
});

describe('gatherv / scatterv algorithm choice', () => {
  it('prefers the tree for balanced counts and linear when one big block sits deep in the tree', () => {
    expect(gathervTreeWins(new Array<number>(8).fill(100), 0)).toBe(true);
    expect(gathervTreeWins(new Array<number>(8).fill(1 << 20), 3)).toBe(true);
    // Rank 7 is three hops from root 0: a 1 MB block would be forwarded three times.
    const skewed = [0, 0, 0, 0, 0, 0, 0, 1 << 20];
    expect(gathervTreeWins(skewed, 0)).toBe(false);
    // With root 7 that block is the root's own: the tree is free again.
    expect(gathervTreeWins(skewed, 7)).toBe(true);
    expect(gathervTreeWins([5], 0)).toBe(true);
  });
  it('auto follows that choice (bytes on the wire show which ran)', async () => {
    // Every rank sends (empty blocks too, so disagreeing counts are caught): linear costs 7 latencies,
    // which a block of 200 kB forwarded three times by the tree outweighs.
    const skewed = [0, 0, 0, 0, 0, 0, 0, 200_000];
    const wire = async (body: Body<void>) => (await runCollective(8, body)).stats.bytes.reduce((a, b) => a + b);
    const gatherBody = (g: Gatherv, counts: number[]) => (io: CollectiveIO) => g(io, new Uint8Array(counts[io.rank]), io.rank === 0 ? new Uint8Array(200_000) : undefined, counts, 0);
    expect(await wire(gatherBody(gathervBinomial, skewed))).toBe(600_000); // 7 → 6 → 4 → 0
    expect(await wire(gatherBody(gatherv, skewed))).toBe(200_000);
    const scatterBody = (s: Scatterv, counts: number[]) => (io: CollectiveIO) => s(io, io.rank === 0 ? new Uint8Array(200_000) : undefined, new Uint8Array(counts[io.rank]), counts, 0);
    expect(await wire(scatterBody(scattervBinomial, skewed))).toBe(600_000);
    expect(await wire(scatterBody(scatterv, skewed))).toBe(200_000);
    const even = new Array<number>(8).fill(10);
    expect(await wire(gatherBody(gatherv, even))).toBe(120); // the tree: subtrees forwarded whole
  });
  it('binomial: the root talks to log2 p children, and subtrees are forwarded whole', async () => {
    const counts = new Array<number>(8).fill(10);
    const gather = async (g: Gatherv) => (await runCollective(8, (io) => g(io, pattern(io.rank, 0, 10), io.rank === 1 ? new Uint8Array(80) : undefined, counts, 1))).stats;
    const scatter = async (s: Scatterv) => (await runCollective(8, (io) => s(io, io.rank === 1 ? new Uint8Array(80) : undefined, new Uint8Array(10), counts, 1))).stats;
    // Linear: every non-root sends its 10 bytes once. Tree: relative ranks 1…7 send subtrees of
    // 1, 2, 1, 4, 1, 2, 1 blocks.
    expect((await gather(gathervLinear)).bytes.reduce((a, b) => a + b)).toBe(70);
    expect((await gather(gathervBinomial)).bytes.reduce((a, b) => a + b)).toBe(120);
    expect((await scatter(scattervLinear)).messages[1]).toBe(7);
    expect((await scatter(scattervBinomial)).messages[1]).toBe(3);
  });
});

// ------------------------------------------------------------------------------------------ allgather

type Allgather = (io: CollectiveIO, out: Uint8Array, counts: readonly number[]) => Promise<void>;
const ALLGATHERS: [string, Allgather][] = [
  ['allgatherRing', allgatherRing],
  ['allgatherRecursiveDoubling', allgatherRecursiveDoubling],
  ['allgatherBruck', allgatherBruck],
];

async function checkAllgather(allgather: Allgather, size: number, counts: number[], options: HarnessOptions): Promise<number[]> {
  const blocks = counts.map((c, r) => pattern(r, c + 3, c));
  const expected = concat(blocks);
  const d = displacements(counts);
  const { results, stats } = await runCollective(size, async (io) => {
    const out = pattern(io.rank + 40, 9, d[size]); // junk everywhere but the own block
    out.set(blocks[io.rank], d[io.rank]);
    await allgather(io, out, counts);
    return out;
  }, options);
  results.forEach((out, rank) => expectBytes(out, expected, `rank ${rank}`));
  return stats.messages;
}

describe.each(ALLGATHERS)('%s', (_name, allgather) => {
  it.each(SIZES)('matches the reference at size %i, equal and uneven counts', async (size) => {
    const all = [...BLOCK_BYTES.map((b) => new Array<number>(size).fill(b)), ...unevenCounts(size)];
    for (const counts of all) for (const options of RUNS) await checkAllgather(allgather, size, counts, options);
  });
  it('matches the reference for every size up to 33 (non-powers of two)', async () => {
    for (let size = 10; size <= 33; size++) await checkAllgather(allgather, size, Array.from({ length: size }, (_, r) => (r * 7) % 5), { seed: size, rendezvousBytes: 8 });
  });
  it('moves ~1 MB in all', async () => {
    await checkAllgather(allgather, 6, [MB / 4, 0, MB / 8, MB / 4, 17, MB / 4], { seed: 5 });
  });
});

describe('allgather message counts', () => {
  it('ring p − 1, recursive doubling log2 p (powers of two), Bruck ⌈log2 p⌉ per rank', async () => {
    expect(await checkAllgather(allgatherRing, 6, new Array<number>(6).fill(4), {})).toEqual(new Array<number>(6).fill(5));
    expect(await checkAllgather(allgatherRecursiveDoubling, 8, new Array<number>(8).fill(4), {})).toEqual(new Array<number>(8).fill(3));
    expect(await checkAllgather(allgatherBruck, 6, new Array<number>(6).fill(4), {})).toEqual(new Array<number>(6).fill(3));
  });
});

// ------------------------------------------------------------------------------------------ alltoall

type Alltoall = (io: CollectiveIO, send: Uint8Array, recv: Uint8Array, blockBytes: number) => Promise<void>;
const ALLTOALLS: [string, Alltoall][] = [
  ['alltoallPairwise', alltoallPairwise],
  ['alltoallBruck', alltoallBruck],
  ['alltoallvPairwise (uniform counts)', (io, send, recv, b) => alltoallvPairwise(io, send, new Array<number>(io.size).fill(b), recv, new Array<number>(io.size).fill(b))],
];

/** Block from rank i to rank j: distinct content for every ordered pair. */
const pairBlock = (i: number, j: number, bytes: number) => pattern(i * 64 + j, bytes, bytes);

async function checkAlltoallv(size: number, counts: number[][], options: HarnessOptions, alltoall?: Alltoall): Promise<number[]> {
  // counts[i][j]: bytes rank i sends to rank j.
  const { results, stats } = await runCollective(size, async (io) => {
    const me = io.rank;
    const sendCounts = counts[me];
    const recvCounts = counts.map((row) => row[me]);
    const send = concat(sendCounts.map((c, j) => pairBlock(me, j, c)));
    const original = send.slice();
    const recv = pattern(me + 30, 2, recvCounts.reduce((a, b) => a + b, 0));
    if (alltoall) await alltoall(io, send, recv, sendCounts[0]);
    else await alltoallvPairwise(io, send, sendCounts, recv, recvCounts);
    expectBytes(send, original, 'send buffer'); // untouched
    return recv;
  }, options);
  results.forEach((recv, me) => expectBytes(recv, concat(counts.map((row, i) => pairBlock(i, me, row[me]))), `rank ${me}`));
  return stats.messages;
}

describe.each(ALLTOALLS)('%s', (_name, alltoall) => {
  it.each(SIZES)('matches the reference at size %i', async (size) => {
    for (const b of BLOCK_BYTES) for (const options of RUNS) await checkAlltoallv(size, Array.from({ length: size }, () => new Array<number>(size).fill(b)), options, alltoall);
  });
  it('matches the reference at every size up to 33', async () => {
    for (let size = 10; size <= 33; size++) await checkAlltoallv(size, Array.from({ length: size }, () => new Array<number>(size).fill(3)), { seed: size, rendezvousBytes: 16 }, alltoall);
  });
  it('moves ~1 MB per rank', async () => {
    await checkAlltoallv(5, Array.from({ length: 5 }, () => new Array<number>(5).fill(Math.ceil(MB / 5))), { seed: 5 }, alltoall);
  });
});

describe('alltoallvPairwise with uneven counts', () => {
  it.each(SIZES)('matches the reference at size %i', async (size) => {
    for (let shape = 0; shape < 4; shape++) {
      const random = lcg(size * 13 + shape);
      const counts = Array.from({ length: size }, (_, i) =>
        Array.from({ length: size }, (_, j) => {
          if (shape === 0) return [0, 1, 7, 100, 0][Math.floor(random() * 5)];
          if (shape === 1) return (i + j) % 3 === 0 ? 0 : i * 10 + j; // sparse, asymmetric
          if (shape === 2) return i === j ? 5 : 0; // only self
          return j === 0 ? 2000 : 1; // everyone to rank 0
        }),
      );
      for (const options of RUNS) await checkAlltoallv(size, counts, options);
    }
  });
});

describe('alltoall message counts', () => {
  it('pairwise p − 1, Bruck ⌈log2 p⌉ per rank', async () => {
    const uniform = (p: number, b: number) => Array.from({ length: p }, () => new Array<number>(p).fill(b));
    expect(await checkAlltoallv(9, uniform(9, 3), {}, alltoallPairwise)).toEqual(new Array<number>(9).fill(8));
    expect(await checkAlltoallv(9, uniform(9, 3), {}, alltoallBruck)).toEqual(new Array<number>(9).fill(4));
  });
});
