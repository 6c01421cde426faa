/**
 * What `vmcomm bench` (`bench-command.ts`) and its rank program (`bench/osu.ts`) say to each other:
 * the plan the command hands each job (one `--plan JSON` argument), and the events rank 0 of the job
 * prints back, one per line, each line {@link BENCH_EVENT_PREFIX} + JSON. Everything else a rank
 * prints is passed on to stderr untouched.
 *
 * The vocabulary is OSU's (Ohio State micro-benchmarks): `latency` is the half round trip of one
 * message (`osu_latency`); `bw` a window of {@link OSU_WINDOW} nonblocking sends followed by a
 * {@link OSU_ACK_BYTES}-byte acknowledgement (`osu_bw`); `bibw` the same window in both directions at
 * once (`osu_bibw`); `mbw_mr` the `bw` pattern on every pair (rank i with rank i + n/2) at once, with
 * the aggregate bandwidth and message rate (`osu_mbw_mr`); `allreduce`, `bcast`, `barrier` the time
 * per call, of the slowest rank (`osu_allreduce`, `osu_bcast`, `osu_barrier`). MB = 10^6 bytes.
 *
 * @module
 */

/** The benchmark patterns, in the order they run. */
export const BENCH_PATTERNS = ['latency', 'bw', 'bibw', 'mbw_mr', 'allreduce', 'bcast', 'barrier'] as const;
/** One benchmark pattern (see the module comment). */
export type BenchPattern = (typeof BENCH_PATTERNS)[number];

/** The vmcomm transports `vmcomm bench` can measure, in the order their jobs run. */
export const BENCH_BACKENDS = ['threads', 'shm', 'ivshmem', 'tcp'] as const;
/** A vmcomm transport `vmcomm bench` can measure. */
export type BenchBackend = (typeof BENCH_BACKENDS)[number];

/**
 * What a Node program can use without vmcomm, measured with the same patterns in the same run:
 * a single-producer single-consumer byte ring in a `SharedArrayBuffer` that both worker threads spin
 * on (the floor for shared memory in JavaScript); the same ring behind calls that return a promise,
 * awaited as vmcomm's are (`sab-ring-awaited`: the floor for any promise-based API — every send and
 * receive returns a settled promise, a window waits for one per message, and nothing else); a
 * `MessagePort` between the two workers
 * (structured clone); a bare `net` socket between the two processes with a 4-byte length prefix.
 */
export const BENCH_BASELINES = ['sab-ring', 'sab-ring-awaited', 'message-port', 'node-tcp'] as const;
/** A baseline (see {@link BENCH_BASELINES}). */
export type BenchBaseline = (typeof BENCH_BASELINES)[number];

/** Messages in flight per window in `bw`, `bibw` and `mbw_mr` (OSU's default). */
export const OSU_WINDOW = 64;
/** The acknowledgement that ends a `bw` window. */
export const OSU_ACK_BYTES = 4;
/** Every event line starts with this. */
export const BENCH_EVENT_PREFIX = '@vmcomm-bench ';
/** Bytes of each direction of the `sab-ring` baseline's ring (a power of two). */
export const SAB_RING_BYTES = 1 << 20;
/** Control bytes before each ring's data (head and tail words on separate cache lines). */
export const SAB_RING_HEADER_BYTES = 128;

/** Which baselines each backend is compared with (first = the one its ratio is against). */
export const BASELINE_OF: { readonly [B in BenchBackend]: readonly BenchBaseline[] } = {
  threads: ['sab-ring', 'sab-ring-awaited', 'message-port'],
  shm: ['sab-ring', 'sab-ring-awaited'],
  ivshmem: ['sab-ring', 'sab-ring-awaited'],
  tcp: ['node-tcp'],
};

/** What one job measures: handed to `bench/osu.ts` as `--plan JSON`. */
export interface BenchPlan {
  /** The vmcomm transport measured (every pair must use it), or undefined for a job of baselines only. */
  readonly backend: BenchBackend | undefined;
  /** Baselines measured in this job, interleaved with the backend (two ranks only). */
  readonly baselines: readonly BenchBaseline[];
  readonly patterns: readonly BenchPattern[];
  /** Message sizes in bytes (`barrier` ignores them; `allreduce` skips those under 4). */
  readonly sizes: readonly number[];
  /** Measurements per size and implementation, interleaved across implementations. */
  readonly rounds: number;
  /**
   * Warm-up per pattern and implementation before any measurement (ms): at least this long, then
   * until the time per iteration has settled ({@link warmUpSettled}), at most {@link warmUpCapMs}.
   */
  readonly warmupMs: number;
  /** The target duration of one measurement (ms); at least one iteration always runs. */
  readonly roundMs: number;
  /** Pin each rank to a core (when ranks ≤ cores and the addon loaded). */
  readonly bindTo: 'core' | 'none';
}

/** One measured cell: an implementation, a pattern and a size. */
export interface BenchResult {
  readonly pattern: BenchPattern;
  /** A backend name (`'shm'`) or a baseline (`'sab-ring'`). */
  readonly impl: string;
  readonly kind: 'vmcomm' | 'baseline';
  /** Message size in bytes (0 for `barrier`). */
  readonly size: number;
  /** `'us'` per call or half round trip (lower is better), or `'MB/s'` (higher is better). */
  readonly unit: 'us' | 'MB/s';
  /** The median over rounds of each round's typical value (median of block medians). */
  readonly typical: number;
  /** Over every iteration of every round. */
  readonly mean: number;
  /** The worst and best round's typical value (for MB/s: lowest, highest). */
  readonly min: number;
  readonly max: number;
  /** `mbw_mr`: messages per second, from the typical value. */
  readonly messageRate?: number;
  readonly rounds: number;
  /** Iterations per round (a window, a round trip or a call each). */
  readonly iterations: number;
  /** Ranks in the job. */
  readonly ranks: number;
}

/** What a job's rank 0 reports. */
export type BenchEvent =
  | {
      readonly type: 'start';
      readonly backend: BenchBackend | undefined;
      readonly ranks: number;
      /** Ranks are threads of one process. */
      readonly threads: boolean;
      /** The transport between ranks 0 and 1, as `comm.transportOf(1)` says. */
      readonly transport: string;
      /** How ranks are bound: `'core'`, or why not. */
      readonly binding: string;
      /** What will be measured. */
      readonly impls: readonly string[];
    }
  | { readonly type: 'skip'; readonly impl: string; readonly reason: string }
  | { readonly type: 'note'; readonly text: string }
  | { readonly type: 'progress'; readonly done: number; readonly total: number; readonly what: string }
  | { readonly type: 'result'; readonly result: BenchResult };

/** The sizes of a full run: 1 B to 4 MiB by powers of two. */
export const DEFAULT_BENCH_SIZES: readonly number[] = Array.from({ length: 23 }, (_, i) => 2 ** i);
/** The sizes of `--quick`. */
export const QUICK_BENCH_SIZES: readonly number[] = [1, 4096, 256 * 1024];

/** `1048576` → `'1 MiB'`, `1000` → `'1000 B'`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let n = bytes;
  let u = 0;
  while (u < units.length - 1 && n >= 1024 && n % 1024 === 0) {
    n /= 1024;
    u++;
  }
  return `${n} ${units[u]}`;
}

/**
 * Parses `--sizes`: a comma-separated list of sizes or ranges, each size a number with an optional
 * K, M or G suffix (powers of 1024, an optional trailing `B` or `iB`), a range `LO:HI` meaning every
 * power of two from LO to HI. `1:4M` is the default set; `8,1K,64K` three sizes. Returns them sorted,
 * without duplicates; throws an `Error` with a one-line message for anything else.
 */
export function parseSizes(text: string): number[] {
  const out = new Set<number>();
  const one = (part: string): number => {
    const m = /^(\d+)\s*([KMG]?)(?:i?B)?$/i.exec(part.trim());
    if (m === null) throw new Error(`'${part}' is not a size (e.g. 8, 64K, 4M)`);
    const n = Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
    if (!Number.isSafeInteger(n) || n < 1 || n > 1 << 30) throw new Error(`size ${part} is out of range (1 B … 1 GiB)`);
    return n;
  };
  for (const part of text.split(',')) {
    if (part.trim() === '') throw new Error('an empty size in the list');
    const range = part.split(':');
    if (range.length === 2) {
      const lo = one(range[0]);
      const hi = one(range[1]);
      if (lo > hi) throw new Error(`range ${part} is empty`);
      for (let s = 2 ** Math.ceil(Math.log2(lo)); s <= hi; s *= 2) out.add(s);
    } else if (range.length === 1) {
      out.add(one(part));
    } else {
      throw new Error(`'${part}' is neither a size nor a range LO:HI`);
    }
  }
  if (out.size === 0) throw new Error('no sizes');
  return [...out].sort((a, b) => a - b);
}

/** The sizes a pattern runs: `barrier` one (0), `allreduce` those of at least one float32. */
export function sizesOf(pattern: BenchPattern, sizes: readonly number[]): number[] {
  if (pattern === 'barrier') return [0];
  if (pattern === 'allreduce') return sizes.filter((s) => s >= 4);
  return [...sizes];
}

/** The unit a pattern reports in. */
export function unitOf(pattern: BenchPattern): 'us' | 'MB/s' {
  return pattern === 'bw' || pattern === 'bibw' || pattern === 'mbw_mr' ? 'MB/s' : 'us';
}

/** Batches whose time per iteration must agree before a warm-up counts as settled. */
const SETTLED_BATCHES = 3;
/** How far (as a ratio) those batches may spread, and how far the last may be above the best seen. */
const SETTLED_SPREAD = 1.25;

/**
 * The longest a warm-up of at least `warmupMs` goes on waiting for the time per iteration to settle
 * (ms): five times the minimum, and at least 1 s (the JIT needs 0.2–0.3 s here); no wait at all for
 * `--warmup 0`, which asks for no warm-up.
 */
export function warmUpCapMs(warmupMs: number): number {
  return warmupMs <= 0 ? 0 : Math.max(1000, 5 * warmupMs);
}

/**
 * Ranks per core of the host (at least 1): how much longer than its own run time a rank's warm-up
 * takes on the wall clock when the ranks outnumber the cores.
 */
export function ranksPerCore(ranks: number, cores: number): number {
  return Math.max(1, ranks / Math.max(1, cores));
}

/**
 * Whether a warm-up may end (pure; rank 0 decides, so every rank runs the same iterations).
 *
 * Why not time alone: on this 2-core VM the JIT needs 0.2–0.3 s of a ping-pong loop before the code
 * is optimized (8-byte half round trips go 40 → 16 → 7 → 1 → 0.7 µs over the first 16,000
 * iterations), and V8's compiler threads take cores from the ranks meanwhile; a fixed 0.1 s warm-up
 * (`--quick`) then measured 5–180 µs where the settled value is under 1 µs. Interpreted code can be
 * slow for several batches in a row, so "not improving" is not enough: the last
 * {@link SETTLED_BATCHES} batches must agree within {@link SETTLED_SPREAD}× of each other, and the
 * last must be within that of the best batch so far (a plateau before tier-up is well above it once
 * the best batch ran optimized code; a preempted batch breaks agreement for a few batches only).
 *
 * The minimum and the cap are a rank's time on a core, estimated as the wall clock divided by the
 * ranks per core: with more ranks than cores each rank runs a share of the wall clock, and the JIT
 * counts what a rank ran. Eight ranks on this machine's two cores settled only after 2–4 s of wall
 * clock (an 8-rank point-to-point allreduce took 590, 340, 230 and then 215 µs per call over
 * consecutive 2,000-call rounds, TurboFan still compiling the message path in the first), where
 * 0.6 s of wall clock had measured them.
 *
 * @param perIterationMs the time per iteration of each batch so far, oldest first
 * @param elapsedMs the warm-up's wall-clock time so far
 * @param crowding ranks per core ({@link ranksPerCore}): `elapsedMs` counts as `elapsedMs / crowding`
 */
export function warmUpSettled(perIterationMs: readonly number[], elapsedMs: number, warmupMs: number, crowding = 1): boolean {
  const ranMs = elapsedMs / crowding;
  if (ranMs < warmupMs) return false;
  if (ranMs >= warmUpCapMs(warmupMs)) return true;
  const n = perIterationMs.length;
  if (n < SETTLED_BATCHES) return false;
  let lo = Infinity;
  let hi = 0;
  for (let i = n - SETTLED_BATCHES; i < n; i++) {
    lo = Math.min(lo, perIterationMs[i]);
    hi = Math.max(hi, perIterationMs[i]);
  }
  let best = Infinity;
  for (const t of perIterationMs) best = Math.min(best, t);
  return hi <= SETTLED_SPREAD * lo && perIterationMs[n - 1] <= SETTLED_SPREAD * best;
}
