/**
 * Which algorithm a collective uses: one table, read top to bottom, first match wins. The numbers
 * follow MPICH's defaults (Thakur, Rabenseifner, Gropp 2005), checked against this project's
 * benchmarks (`bench/collectives.ts`). A program overrides a choice per call
 * (`{ algorithm: 'ring' }` in the call's options) or per job (`VMCOMM_COLL_ALLREDUCE=ring`); an
 * algorithm that cannot do the call (a ring allreduce with a non-commutative op) is
 * `INVALID_ARGUMENT`.
 *
 * @module
 */

import { VmcommError } from '../errors.js';
import { DEFAULT_PIPELINE_SEGMENT_BYTES } from './bcast-pipeline.js';
import { SHARED_MAX_RANKS } from './shared-memory.js';

/** What the choice depends on. */
export interface CallShape {
  /** Ranks in the communicator. */
  readonly size: number;
  /** Bytes of the whole vector (allgather: the total gathered; alltoall: one block). */
  readonly bytes: number;
  /**
   * Bytes one rank's cell carries where that is not `bytes`: allgather, the largest rank's block
   * (each rank's cell carries its own); alltoall, a rank's whole send array. Absent: `bytes`.
   */
  readonly cellBytes?: number;
  /** Whether the reduction may be reordered. */
  readonly commutative: boolean;
  /**
   * Bytes a shared-memory collective carries on this communicator (`shared-memory.ts`); absent when
   * it has none (its ranks do not all talk through one transport with collective cells).
   */
  readonly sharedBytes?: number;
}

/** The algorithms of each tunable collective. */
export const ALGORITHMS = {
  allreduce: ['recursive-doubling', 'rabenseifner', 'ring', 'shared-memory', 'hierarchical'],
  reduce: ['binomial', 'rabenseifner', 'shared-memory', 'hierarchical'],
  bcast: ['binomial', 'scatter-allgather', 'pipeline', 'shared-memory', 'hierarchical'],
  barrier: ['dissemination', 'shared-memory', 'hierarchical'],
  allgather: ['recursive-doubling', 'bruck', 'ring', 'shared-memory'],
  alltoall: ['bruck', 'pairwise', 'shared-memory'],
  reduceScatter: ['recursive-halving', 'ring'],
} as const;

/** A tunable collective. */
export type TunableCollective = keyof typeof ALGORITHMS;
/** An algorithm of collective `C`. */
export type AlgorithmOf<C extends TunableCollective> = (typeof ALGORITHMS)[C][number];

const isPow2 = (n: number) => (n & (n - 1)) === 0;
/** Whether a shared-memory collective can carry `s` (each rank reads every member's cell, so not for hundreds). */
const sharedFits = (s: CallShape) => s.sharedBytes !== undefined && (s.cellBytes ?? s.bytes) <= s.sharedBytes && s.size <= SHARED_MAX_RANKS;
const PIPELINE_SEGMENT_BYTES = DEFAULT_PIPELINE_SEGMENT_BYTES;

/** The table. `bytes`: allreduce/reduce/bcast/reduceScatter the whole vector; allgather the total gathered; alltoall one block. */
// 'hierarchical' has no row: the communicator decides it first, from the locality groups
// (communicator.ts, hierarchical.ts); what reaches this table is a flat call.
const TABLE: { [C in TunableCollective]: readonly { use: Exclude<AlgorithmOf<C>, 'hierarchical'>; when: (s: CallShape) => boolean }[] } = {
  barrier: [
    { use: 'shared-memory', when: sharedFits },
    { use: 'dissemination', when: () => true },
  ],
  allreduce: [
    // One pass through shared cells, reduced in rank order on every rank (any op).
    { use: 'shared-memory', when: sharedFits },
    // Two ranks too: recursive doubling would move and reduce the whole vector, Rabenseifner half.
    { use: 'recursive-doubling', when: (s) => s.bytes <= 8 * 1024 },
    { use: 'rabenseifner', when: (s) => !s.commutative || s.bytes <= 4 * 1024 * 1024 || isPow2(s.size) },
    { use: 'ring', when: () => true },
  ],
  reduce: [
    // Every member's cell, folded in rank order by the root (any op).
    { use: 'shared-memory', when: sharedFits },
    { use: 'binomial', when: (s) => s.bytes <= 2 * 1024 },
    { use: 'rabenseifner', when: () => true },
  ],
  bcast: [
    // The root's cell, read by every member once all arrived: one pass, no tree of messages.
    { use: 'shared-memory', when: sharedFits },
    { use: 'binomial', when: (s) => s.bytes < 12 * 1024 || s.size <= 2 },
    // A pipelined chain costs ≈ (p − 2 + n/seg)·seg·β: it wins once the message spans a segment per rank.
    { use: 'pipeline', when: (s) => s.bytes > s.size * PIPELINE_SEGMENT_BYTES },
    { use: 'scatter-allgather', when: () => true },
  ],
  allgather: [
    // Every member's block in its cell, read by every member once all arrived.
    { use: 'shared-memory', when: sharedFits },
    { use: 'recursive-doubling', when: (s) => isPow2(s.size) && s.bytes < 512 * 1024 },
    { use: 'bruck', when: (s) => s.bytes < 80 * 1024 },
    { use: 'ring', when: () => true },
  ],
  alltoall: [
    // Every member's whole send array in its cell; each rank reads its block of every cell.
    { use: 'shared-memory', when: sharedFits },
    { use: 'bruck', when: (s) => s.bytes <= 256 && s.size >= 8 },
    { use: 'pairwise', when: () => true },
  ],
  reduceScatter: [
    { use: 'recursive-halving', when: (s) => !s.commutative || s.bytes <= 4 * 1024 * 1024 || isPow2(s.size) },
    { use: 'ring', when: () => true },
  ],
};

/** Algorithms that need a commutative op. */
const NEEDS_COMMUTATIVE = new Set<string>(['allreduce:ring', 'reduceScatter:ring']);

/** The job's `VMCOMM_COLL_<NAME>` overrides, per collective. */
export type EnvChoices = Readonly<Partial<Record<TunableCollective, string>>>;

/**
 * Reads the `VMCOMM_COLL_<NAME>` overrides (`VMCOMM_COLL_REDUCE_SCATTER` for reduceScatter) once:
 * `process.env` is slow to read (each access calls into the runtime), far too slow per call.
 */
export function readEnvChoices(env: Readonly<Record<string, string | undefined>>): EnvChoices {
  const out: Partial<Record<TunableCollective, string>> = {};
  for (const collective of Object.keys(ALGORITHMS) as TunableCollective[]) {
    const v = env[`VMCOMM_COLL_${collective.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`];
    if (v !== undefined && v.trim() !== '') out[collective] = v.trim().toLowerCase();
  }
  return out;
}

/**
 * The algorithm for a call: the caller's override, else the environment's, else the table's. An
 * override that names no algorithm of this collective, or one that cannot do this call, is
 * `INVALID_ARGUMENT` (an environment override that cannot do a call quietly yields to the table,
 * because it applies to every call of the job).
 */
export function chooseAlgorithm<C extends TunableCollective>(collective: C, shape: CallShape, override: string | undefined, env: EnvChoices = {}): Exclude<AlgorithmOf<C>, 'hierarchical'> {
  const known = ALGORITHMS[collective] as readonly string[];
  const usable = (a: string) => (shape.commutative || !NEEDS_COMMUTATIVE.has(`${collective}:${a}`)) && (a !== 'shared-memory' || sharedFits(shape));
  if (override !== undefined) {
    if (!known.includes(override)) throw new VmcommError('INVALID_ARGUMENT', `${collective} has no algorithm "${override}" (known: ${known.join(', ')})`);
    // Neither has anything to do on one rank (or one group): the table's choice, which moves nothing.
    if (override === 'hierarchical' || (override === 'shared-memory' && shape.size < 2)) return chooseAlgorithm(collective, shape, undefined, env);
    if (override === 'shared-memory' && !sharedFits(shape)) {
      const why = shape.sharedBytes === undefined ? 'a communicator whose ranks all talk through one shared-memory transport with collective cells (shm, or threads)' : `at most ${shape.sharedBytes} bytes and ${SHARED_MAX_RANKS} ranks`;
      throw new VmcommError('INVALID_ARGUMENT', `${collective} algorithm "shared-memory" needs ${why}; choose ${known.filter((a) => a !== 'hierarchical' && usable(a)).join(', ')}`);
    }
    if (!usable(override)) throw new VmcommError('INVALID_ARGUMENT', `${collective} algorithm "${override}" needs a commutative op; declare a function op commutative with defineOp(fn, { commute: true }) or choose ${known.filter(usable).join(', ')}`);
    return override as Exclude<AlgorithmOf<C>, 'hierarchical'>;
  }
  const fromEnv = env[collective];
  if (fromEnv !== undefined && fromEnv !== 'hierarchical' && known.includes(fromEnv) && usable(fromEnv)) return fromEnv as Exclude<AlgorithmOf<C>, 'hierarchical'>;
  for (const row of TABLE[collective]) if (row.when(shape)) return row.use;
  /* c8 ignore next */
  throw new Error(`no algorithm row matched for ${collective}`);
}

/** The table as markdown (README, `vmcomm info`). */
export function selectionTableMarkdown(): string {
  const rows = [
    '| collective | algorithm, first that applies |',
    '|---|---|',
    '| barrier, bcast, reduce, allreduce | hierarchical (within each shared-memory group, across the group leaders, back) when the communicator spans several groups, one of them holds several ranks, and the op commutes; else as below |',
    `| allreduce | shared memory if every pair of ranks talks through one transport with cells (shm, or threads), the vector fits a cell (512 B) and ≤ ${SHARED_MAX_RANKS} ranks; recursive doubling if ≤ 8 KiB; Rabenseifner if the op is not commutative, ≤ 4 MiB or a power-of-two size; else ring |`,
    `| reduce | shared memory if every pair of ranks talks through one transport with cells (shm, or threads), the vector fits a cell (512 B) and ≤ ${SHARED_MAX_RANKS} ranks; binomial if ≤ 2 KiB; else Rabenseifner (all keep rank order for non-commutative ops) |`,
    `| bcast | shared memory if every pair of ranks talks through one transport with cells (shm, or threads), the data fits a cell (512 B; a value's encoding 507 B, else its length goes through the cell) and ≤ ${SHARED_MAX_RANKS} ranks; binomial if < 12 KiB or 2 ranks; pipelined chain (128 KiB segments) if larger than size × 128 KiB; else scatter + ring allgather |`,
    `| allgather(v) | shared memory if every pair of ranks talks through one transport with cells (shm, or threads), every rank's block fits a cell (512 B; a value's encoding 507 B, else its length goes through the cell and its bytes follow by the next row's algorithm) and ≤ ${SHARED_MAX_RANKS} ranks; recursive doubling if a power-of-two size and < 512 KiB in all; Bruck if < 80 KiB; else ring |`,
    `| alltoall | shared memory if every pair of ranks talks through one transport with cells (shm, or threads), a rank's whole typed array fits a cell (512 B) and ≤ ${SHARED_MAX_RANKS} ranks; Bruck if blocks ≤ 256 B and ≥ 8 ranks; else pairwise (arrays of values: pairwise) |`,
    '| reduceScatter | recursive halving (keeps rank order) unless the op is commutative, > 4 MiB and the size not a power of two; then ring |',
    `| barrier | shared memory if every pair of ranks talks through one transport with cells (shm, or threads) and ≤ ${SHARED_MAX_RANKS} ranks; else dissemination |`,
    `| gather, gatherv | shared memory (as allgather, the root alone reading the cells) where allgather's row would, whatever VMCOMM_COLL_ALLGATHER says; else: gather a binomial tree, gatherv a binomial tree or linear, whichever a latency/bandwidth model of the actual counts says is cheaper |`,
    `| scatter, scatterv | shared memory if every pair of ranks talks through one transport with cells (shm, or threads), ≤ ${SHARED_MAX_RANKS} ranks and what the root scatters fits its cell (scatter: as the root finds it, 508 B for all its values, each taking 5 bytes more than its encoding and a number 13; else by messages; scatterv: 512 B); else scatter a binomial tree, scatterv a binomial tree or linear, whichever a latency/bandwidth model of the actual counts says is cheaper |`,
    '| alltoallv | pairwise |',
    `| scan, exscan | shared memory if every pair of ranks talks through one transport with cells (shm, or threads), the vector fits a cell (512 B) and ≤ ${SHARED_MAX_RANKS} ranks (every rank folds the cells up to its own, in rank order); else recursive doubling |`,
  ];
  return rows.join('\n');
}
