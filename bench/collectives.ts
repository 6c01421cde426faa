// Collective latency, OSU-style (osu_allreduce, osu_bcast, osu_barrier, osu_reduce, osu_allgather,
// osu_gather): per call, after a warm-up until the time per call settles (`warmUpRanks` in
// bench/warm-up.ts); "typical" is the median of per-block medians (blocks of 100 calls for small
// messages, 10 for large), reported as the median over rounds with the min–max of rounds; by default
// each case runs all its rounds in turn, as OSU runs each size (`--order interleaved`: round by
// round). Every rank checks what it receives against the exact expected value (integers in float64).
//   npx vmcomm run -n 2 bench/collectives.ts [--quick]         2 ranks (shm between processes)
//   npx vmcomm run -n 8 bench/collectives.ts [--quick]         8 ranks on this 2-core machine
//   VMCOMM_COLL_ALLREDUCE=ring npx vmcomm run -n 4 …           force an algorithm
//   … bench/collectives.ts --reference FILE                    ratios against an MPI run of this session
//                                                               (FILE from bench/mpi-reference.mjs --json)
//   … bench/collectives.ts --json FILE                         also write the results as JSON
// References measured on this machine (issue 6): MPICH allreduce 1 double 0.97 µs, 131,072 doubles
// 245 µs (2 ranks); 8 ranks on 2 cores, 1 double: Open MPI 98 µs, MPICH 60,000 µs (busy polling).
// Targets: 2 ranks ≤ 3× MPICH (1 double), ≤ 1.5× MPICH (131,072 doubles); 8 ranks ≤ Open MPI's.
import { readFileSync, writeFileSync } from 'node:fs';
import { init, Op } from 'vmcomm';
import { tryLoadNative } from '../dist/backends/native/native.js';
import { BIND_CPUS, hostCores } from '../dist/lib/launch/binding.js';
import { warmUpRanks } from './warm-up.js';

const comm = await init();
const { rank, size } = comm;
const quick = process.argv.includes('--quick');
// The host's cores, not this process's affinity (one core already under `vmcomm run --bind-to core`).
const nproc = hostCores();
// Pin only when every rank gets a core of its own (as MPICH and Open MPI do by default then), and
// only here when `vmcomm run --bind-to core` has not pinned the rank already (to its own CPU list).
const pinned = size <= nproc;
if (pinned && process.env[BIND_CPUS] === undefined) tryLoadNative().addon?.setAffinity([rank % nproc], 'process');

const optionAfter = (flag: string): string | undefined => {
  const i = process.argv.indexOf(flag);
  return i < 0 ? undefined : process.argv[i + 1];
};
const jsonFile = optionAfter('--json');
const referenceFile = optionAfter('--reference');

interface Reference {
  small: number | undefined;
  large: number | undefined;
  by: string;
}
/** An MPI run of this session (bench/mpi-reference.mjs --json) with as many ranks, else the values measured when issue 6 was filed. */
function reference(): Reference | undefined {
  if (referenceFile !== undefined) {
    const doc = JSON.parse(readFileSync(referenceFile, 'utf8')) as { mpi: string; ranks: number; results: { case: string; typical: number }[] };
    if (doc.ranks !== size) throw new Error(`${referenceFile} was measured with ${doc.ranks} ranks, this job has ${size}`);
    const at = (name: string) => doc.results.find((r) => r.case === name)?.typical;
    return { small: at('allreduce 1 double'), large: at('allreduce 131072 doubles'), by: `${doc.mpi}, same session` };
  }
  return size === 2 ? { small: 0.97, large: 245, by: 'MPICH, filed' } : size === 8 ? { small: 98, large: undefined, by: 'Open MPI, filed' } : undefined;
}
const REF = reference();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

interface Case {
  name: string;
  block: number;
  iters: number;
  run: () => Promise<void>;
}

const one = Float64Array.of(rank + 1);
const oneOut = new Float64Array(1);
/** What bcastBuffer broadcasts (as osu_bcast: one buffer of the caller's, made once). */
const cast = new Float64Array(1);
const big = new Float64Array(131_072).map((_, i) => (i % 7) + rank);
const bigOut = new Float64Array(131_072);
const bigSum = (i: number) => size * (i % 7) + (size * (size - 1)) / 2;
/** What the gathers collect: rank r's r + 1. */
const ones = new Array<number>(size).fill(1);
const gathered = new Float64Array(size);
/** Whether every rank's r + 1 arrived (a buffer of the caller's is cleared, so the next call must write it again). */
const gatheredRight = (all: ArrayLike<number>) => {
  // A plain loop: Array.from over an array-like took over 1 µs here, more than the call it checks.
  let right = all.length === size;
  for (let r = 0; r < size; r++) right &&= all[r] === r + 1;
  if (all instanceof Float64Array) all.fill(0);
  return right;
};
const cases: Case[] = [
  {
    name: 'allreduce 1 double',
    block: 100,
    iters: quick ? 400 : 2000,
    run: async () => {
      const s = await comm.allreduce(rank + 1, Op.SUM);
      if (s !== (size * (size + 1)) / 2) throw new Error(`allreduce gave ${s}`);
    },
  },
  {
    name: 'allreduceBuffer 1 double',
    block: 100,
    iters: quick ? 400 : 2000,
    // As osu_allreduce calls it: into a buffer of the caller's, made once.
    run: async () => {
      await comm.allreduceBuffer(one, oneOut, Op.SUM);
      if (oneOut[0] !== (size * (size + 1)) / 2) throw new Error(`allreduceBuffer gave ${oneOut[0]}`);
    },
  },
  {
    name: 'allreduce 131072 doubles',
    block: 10,
    iters: quick ? 40 : 200,
    run: async () => {
      const out = await comm.allreduce(big, Op.SUM);
      if (out[12345] !== bigSum(12345)) throw new Error(`allreduce gave ${out[12345]}`);
    },
  },
  {
    // As osu_allreduce measures it: the result into a buffer of the caller's (no allocation per call).
    name: 'allreduceBuffer 131072 doubles',
    block: 10,
    iters: quick ? 40 : 200,
    run: async () => {
      await comm.allreduceBuffer(big, bigOut, Op.SUM);
      if (bigOut[12345] !== bigSum(12345)) throw new Error(`allreduceBuffer gave ${bigOut[12345]}`);
    },
  },
  { name: 'barrier', block: 100, iters: quick ? 400 : 2000, run: () => comm.barrier() },
  {
    name: 'bcastBuffer 1 double',
    block: 100,
    iters: quick ? 400 : 2000,
    run: async () => {
      cast[0] = rank === 0 ? 42.5 : 0;
      await comm.bcastBuffer(cast, 0);
      if (cast[0] !== 42.5) throw new Error(`bcastBuffer gave ${cast[0]}`);
    },
  },
  {
    name: 'bcast 1 double',
    block: 100,
    iters: quick ? 400 : 2000,
    run: async () => {
      const v = await comm.bcast(rank === 0 ? 42.5 : undefined, 0);
      if (v !== 42.5) throw new Error(`bcast gave ${v}`);
    },
  },
  {
    name: 'reduce 1 double',
    block: 100,
    iters: quick ? 400 : 2000,
    run: async () => {
      const s = await comm.reduce(rank + 1, Op.SUM, 0);
      if (rank === 0 && s !== (size * (size + 1)) / 2) throw new Error(`reduce gave ${s}`);
    },
  },
  {
    // As osu_allgather calls MPI_Allgather: one double per rank into an array of the caller's.
    name: 'allgatherv 1 double',
    block: 100,
    iters: quick ? 400 : 2000,
    run: async () => {
      await comm.allgatherv(one, ones, gathered);
      if (!gatheredRight(gathered)) throw new Error(`allgatherv gave ${Array.from(gathered)}`);
    },
  },
  {
    // The value form: a new array of numbers.
    name: 'allgather 1 double',
    block: 100,
    iters: quick ? 400 : 2000,
    run: async () => {
      const all = await comm.allgather(rank + 1);
      if (!gatheredRight(all)) throw new Error(`allgather gave ${all}`);
    },
  },
  {
    name: 'gather 1 double',
    block: 100,
    iters: quick ? 400 : 2000,
    run: async () => {
      const all = await comm.gather(rank + 1, 0);
      if (rank === 0 && !gatheredRight(all!)) throw new Error(`gather gave ${all}`);
    },
  },
];

/**
 * Warm-up of one case: at least 0.6 s (0.2 s with --quick) of a rank's estimated time on a core, then
 * until the time per call settles (with eight ranks on two cores: 2.4–12 s of wall clock).
 */
const warmUp = (c: Case): Promise<void> => warmUpRanks(comm, quick ? 200 : 600, c.run);

/** One round of a case: the slowest rank's median of block medians, µs per call. */
async function measure(c: Case): Promise<number> {
  await comm.barrier();
  const blockMedians: number[] = [];
  for (let b = 0; b < c.iters; b += c.block) {
    const samples: number[] = [];
    for (let i = 0; i < c.block; i++) {
      const t0 = performance.now();
      await c.run();
      samples.push((performance.now() - t0) * 1000);
    }
    blockMedians.push(median(samples));
  }
  // A call's time is the slowest rank's: take the maximum over ranks of each rank's typical.
  return comm.allreduce(median(blockMedians), Op.MAX);
}

// The order of measurement. `case` (the default, OSU's): each case warms up, then runs all its
// rounds. `interleaved`: every case warms up, then each round runs every case in turn — which also
// times what follows a switch between cases: V8 re-optimizes code that the other case's paths made
// it give up (a few thousand calls at several times the steady cost after a large allreduce).
const order = optionAfter('--order') ?? 'case';
if (order !== 'case' && order !== 'interleaved') throw new Error(`--order takes case or interleaved, not ${order}`);
const ROUNDS = quick ? 3 : 5;
const results = new Map<string, number[]>(cases.map((c) => [c.name, []]));
if (order === 'case') {
  for (const c of cases) {
    await warmUp(c);
    for (let round = 0; round < ROUNDS; round++) results.get(c.name)!.push(await measure(c));
  }
} else {
  for (const c of cases) await warmUp(c);
  for (let round = 0; round < ROUNDS; round++) for (const c of cases) results.get(c.name)!.push(await measure(c));
}

if (rank === 0) {
  const transports = [...new Set(Array.from({ length: size }, (_, p) => comm.transportOf(p)).filter((t) => t !== 'self'))].join('+') || 'self';
  console.log(`vmcomm collectives: ${size} ranks over ${transports}, ${nproc} cores${pinned ? ', pinned' : ', not pinned (more ranks than cores)'}; typical µs per call (median of ${ROUNDS} rounds, ${order === 'case' ? 'case by case' : 'cases interleaved'}, min–max), slowest rank`);
  for (const [name, xs] of results) {
    const m = median(xs);
    const ref = name.includes('131072') ? REF?.large : name.includes('1 double') && name.startsWith('allreduce') ? REF?.small : undefined;
    const vs = ref ? `  ${(m / ref).toFixed(2)}× ${REF!.by} (${ref.toFixed(2)} µs)` : '';
    console.log(`  ${name.padEnd(26)} ${m.toFixed(2).padStart(9)} µs  (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})${vs}`);
  }
}
if (rank === 0 && jsonFile !== undefined) {
  const out = [...results].map(([name, rounds]) => ({ case: name, unit: 'us', ranks: size, rounds, typical: median(rounds) }));
  writeFileSync(jsonFile, JSON.stringify({ ranks: size, pinned, cores: nproc, measuredAt: new Date().toISOString(), results: out }, null, 2) + '\n');
}
await comm.finalize();
