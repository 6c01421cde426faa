// The rank program behind `vmcomm bench` (lib/launch/bench-command.ts runs it as a job, once per
// backend, with `--plan JSON`: `vmcomm run -n N bench/osu.ts` for rank processes, `bench/osu.ts
// --thread-ranks N` for thread-ranks; see lib/launch/bench-protocol.ts for the plan, the events rank 0
// prints, and the patterns). It measures one vmcomm transport and, interleaved with it in the same
// job, the baselines that fit the job: in a job of two thread-ranks the bare SharedArrayBuffer ring
// (as it is, and behind awaited calls) and the MessagePort (whose shared memory and port the parent
// hands each worker as workerData); in a job of two processes a bare Node TCP socket.
//
// Method: per pattern and implementation a time-based warm-up; per size, iterations calibrated so a
// round lasts about `roundMs`; then `rounds` rounds with the implementations interleaved (a barrier
// before each); a round's typical value is the median of its block medians, the result the median of
// the rounds' typicals with their range and the overall mean. Point-to-point patterns report rank 0's
// time; collectives and mbw_mr the slowest rank's.
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { MessageChannel, isMainThread, workerData, type MessagePort } from 'node:worker_threads';
import { init, Op, type Communicator } from 'vmcomm';
import { hostCores } from '../dist/lib/launch/binding.js';
import {
  BENCH_EVENT_PREFIX,
  OSU_WINDOW,
  formatBytes,
  ranksPerCore,
  sizesOf,
  unitOf,
  type BenchBaseline,
  type BenchEvent,
  type BenchPattern,
  type BenchPlan,
  type BenchResult,
} from '../dist/lib/launch/bench-protocol.js';
import { SAB_RINGS_BYTES, awaitedLink, messagePortLink, nodeTcpLink, sabRingLink, vmcommLink, type PairLink } from './osu/links.js';
import { calibrate, summarize, timeRound, warmUp, type Round } from './osu/measure.js';
import { bytesPerIteration, iterationOf, partnerOf, slowestRankCounts, type Impl } from './osu/patterns.js';

/** What the parent of a job of thread-ranks gives each worker for the baselines. */
interface ThreadBaselines {
  readonly rings: SharedArrayBuffer;
  readonly port: MessagePort;
}

function readPlan(argv: readonly string[]): BenchPlan {
  const i = argv.indexOf('--plan');
  if (i === -1 || argv[i + 1] === undefined) throw new Error('bench/osu.ts runs under `vmcomm bench` (it needs --plan JSON)');
  return JSON.parse(argv[i + 1]) as BenchPlan;
}

const plan = readPlan(process.argv);

// Started by `vmcomm bench` as `osu.ts --thread-ranks N`: host N thread-ranks of this program, handing
// each the baselines' shared ring and its end of a MessageChannel (only their parent can).
const hostIndex = process.argv.indexOf('--thread-ranks');
if (isMainThread && hostIndex !== -1) {
  const n = Number(process.argv[hostIndex + 1]);
  const { runThreadRanks } = await import('../dist/lib/launch/thread-host.js');
  const rings = new SharedArrayBuffer(SAB_RINGS_BYTES);
  const { port1, port2 } = new MessageChannel();
  const ports = [port1, port2];
  const codes = await runThreadRanks(fileURLToPath(import.meta.url), n, {
    args: ['--plan', JSON.stringify(plan)],
    ...(n === 2 ? { workerData: (rank: number) => ({ value: { rings, port: ports[rank] }, transferList: [ports[rank]] }) } : {}),
  });
  process.exit(codes.find((c) => c !== 0) ?? 0);
}

const comm = await init();
const { rank, size } = comm;
const threads = !isMainThread;
const given = (threads ? workerData : undefined) as ThreadBaselines | undefined;
const emit = (e: BenchEvent): void => {
  if (rank === 0) process.stdout.write(`${BENCH_EVENT_PREFIX}${JSON.stringify(e)}\n`);
};

// ---- binding (as MPI benchmarks do: each rank on a core of its own, when there are enough)
let binding = 'none';
if (plan.bindTo === 'core') {
  const cores = availableParallelism();
  if (size > cores) binding = `not bound: ${size} ranks on ${cores} cores`;
  else {
    const { tryLoadNative } = await import('../dist/backends/native/native.js');
    const loaded = tryLoadNative();
    if (loaded.addon === undefined) binding = `not bound: the native addon did not load (${loaded.reason ?? 'no reason given'})`;
    else {
      loaded.addon.setAffinity([rank % cores], threads ? 'thread' : 'process');
      binding = 'core';
    }
  }
}

// ---- which implementations this job measures
const impls: Impl[] = [];
const links: PairLink[] = [];
/** The bare rings' link, shared by `sab-ring` and `sab-ring-awaited`. */
let ring: PairLink | undefined;
const pairPeer = rank === 0 ? 1 : rank === 1 ? 0 : undefined;
const partner = partnerOf(rank, size);

if (plan.backend !== undefined) {
  const backend = plan.backend;
  let mine = true;
  for (let p = 0; p < size; p++) if (p !== rank && comm.transportOf(p) !== backend) mine = false;
  const everywhere = size > 1 && (await comm.allreduce(mine ? 1 : 0, Op.MIN)) === 1;
  if (everywhere) {
    impls.push({
      name: backend,
      kind: 'vmcomm',
      pair: pairPeer === undefined ? undefined : vmcommLink(comm, pairPeer, backend, 100),
      partner: partner === undefined ? undefined : vmcommLink(comm, partner.peer, backend, 101),
    });
  } else {
    const why = await whyNot(comm, backend);
    emit({ type: 'skip', impl: backend, reason: why });
  }
}

for (const baseline of plan.baselines) {
  const reason = baselineUnavailable(baseline);
  if (reason !== undefined) {
    emit({ type: 'skip', impl: baseline, reason });
    continue;
  }
  let link: PairLink;
  if (baseline === 'sab-ring' || baseline === 'sab-ring-awaited') {
    // One ring link for both: a ring's positions live in its link, and the two never run at once.
    if (ring === undefined) links.push((ring = sabRingLink(given!.rings, rank)));
    link = baseline === 'sab-ring' ? ring : awaitedLink(ring, baseline);
  } else links.push((link = baseline === 'message-port' ? messagePortLink(given!.port) : await nodeTcpLink(comm, 1 - rank)));
  impls.push({ name: baseline, kind: 'baseline', pair: link, partner: link });
}

emit({ type: 'start', backend: plan.backend, ranks: size, threads, transport: size > 1 ? comm.transportOf(rank === 0 ? 1 : 0) : 'self', binding, impls: impls.map((i) => i.name) });

// ---- the measurements
// With more ranks than cores, each rank runs part of the time: its warm-up takes that much longer.
// (`vmcomm bench` starts every rank of a job on this host.)
const crowding = ranksPerCore(size, hostCores());
const total = plan.patterns.reduce((n, p) => n + sizesOf(p, plan.sizes).length * impls.length, 0);
let done = 0;
for (const pattern of plan.patterns) {
  if (impls.length === 0) break;
  const sizes = sizesOf(pattern, plan.sizes);
  if (sizes.length === 0) continue;
  if (pattern === 'mbw_mr' && size < 2) continue;
  // Warm-up on the smallest size and a middle one (all code paths of small and large messages).
  const mid = sizes.find((s) => s >= 65536) ?? sizes[sizes.length - 1];
  for (const impl of impls) await warmUp(comm, [iterationOf(comm, pattern, impl, sizes[0]), iterationOf(comm, pattern, impl, mid)], plan.warmupMs, crowding);
  for (const bytes of sizes) {
    emit({ type: 'progress', done, total, what: `${pattern}${pattern === 'barrier' ? '' : ` ${formatBytes(bytes)}`}` });
    const steps = impls.map((impl) => iterationOf(comm, pattern, impl, bytes));
    const iterations: number[] = [];
    for (const step of steps) iterations.push(await calibrate(comm, step, plan.roundMs));
    const rounds: Round[][] = impls.map(() => []);
    for (let r = 0; r < plan.rounds; r++) {
      for (let k = 0; k < impls.length; k++) {
        await comm.barrier();
        rounds[k].push(await timeRound(steps[k], iterations[k]));
      }
    }
    for (let k = 0; k < impls.length; k++) {
      const s = summarize(rounds[k]);
      const all = await comm.gather([s.typicalUs, s.meanUs, s.minUs, s.maxUs], 0);
      if (all !== undefined) emit({ type: 'result', result: resultOf(pattern, impls[k], bytes, all, s.iterations) });
      done++;
    }
  }
}
emit({ type: 'progress', done, total, what: 'done' });

for (const l of links) l.close();
await comm.finalize();

// ---------------------------------------------------------------------------------------------------

/** Rank 0: the result of one cell from every rank's [typical, mean, min, max] (µs per iteration). */
function resultOf(pattern: BenchPattern, impl: Impl, bytes: number, all: number[][], iterations: number): BenchResult {
  let [typ, mean, min, max] = all[0];
  if (slowestRankCounts(pattern)) {
    // The slowest participating rank (a rank with nothing to do reports ~0).
    for (const row of all) if (row[0] > typ) [typ, mean, min, max] = row;
  }
  const unit = unitOf(pattern);
  const common = { pattern, impl: impl.name, kind: impl.kind, size: pattern === 'barrier' ? 0 : bytes, unit, rounds: plan.rounds, iterations, ranks: size };
  if (unit === 'us') {
    // latency: an iteration is a round trip; report half of it.
    const f = pattern === 'latency' ? 0.5 : 1;
    return { ...common, typical: typ * f, mean: mean * f, min: min * f, max: max * f };
  }
  const moved = bytesPerIteration(pattern, bytes, size);
  const result: BenchResult = { ...common, typical: moved / typ, mean: moved / mean, min: moved / max, max: moved / min };
  if (pattern !== 'mbw_mr') return result;
  return { ...result, messageRate: ((size >> 1) * OSU_WINDOW * 1e6) / typ };
}

/** Why `baseline` cannot run in this job, or undefined when it can. */
function baselineUnavailable(baseline: BenchBaseline): string | undefined {
  if (size !== 2) return `baselines run between two ranks; this job has ${size}`;
  if (baseline === 'node-tcp') return undefined;
  if (!threads || given === undefined) return `${baseline} needs two worker threads of one process (a job of thread-ranks started by vmcomm bench)`;
  return undefined;
}

/** Why the pairs of this job do not all use `backend`: each rank's reason, as its `describe()` says. */
async function whyNot(comm: Communicator, backend: string): Promise<string> {
  const d = comm.describe();
  let mine: string | undefined = d.unavailable[backend];
  if (mine === undefined) {
    for (let p = 0; p < comm.size && mine === undefined; p++) {
      const pair = d.pairs[p];
      if (p === comm.rank || pair.transport === backend) continue;
      const c = pair.considered.find((x) => x.name === backend);
      const why =
        c === undefined ? 'it is not offered'
        : !c.listedByBoth ? 'it is not available on both'
        : !c.reachesPeer ? `rank ${comm.rank} could not prove it reaches rank ${p}`
        : !c.peerReaches ? `rank ${p} could not prove it reaches rank ${comm.rank}`
        : `a higher-priority transport (${String(pair.transport)}) won`;
      mine = `ranks ${comm.rank} and ${p} use ${String(pair.transport)}: ${why}`;
    }
  }
  // The same reason on several ranks is said once.
  const all = await comm.allgather(mine ?? null);
  const byReason = new Map<string, number[]>();
  all.forEach((reason, rank) => {
    if (reason !== null) byReason.set(reason, [...(byReason.get(reason) ?? []), rank]);
  });
  if (byReason.size === 0) return `${backend} is not used between every pair`;
  return [...byReason].slice(0, 3).map(([reason, ranks]) => `${ranks.length === 1 ? 'rank' : 'ranks'} ${ranks.join(', ')}: ${reason}`).join('; ');
}
