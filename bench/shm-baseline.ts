// The shm backend's yardstick: two processes, OSU-style patterns — latency: the half round trip of
// 8 B (mean over all iterations, and "typical": the median of the per-block medians over blocks of
// 100 iterations); bandwidth: a window of 64 messages of 1 MiB from one buffer into one buffer (as
// osu_bw), then a 4-byte ack. Rounds of the two
// are interleaved after a time-based warm-up (≥ 0.5 s) of each. Rank r is pinned to CPU r mod nproc.
// shm is not a built-in transport yet, so the bench plugs it in itself; run it once per configuration:
//   npx vmcomm run -n 2 bench/shm-baseline.ts [--quick]                          shm, single copy
//   VMCOMM_CMA=0 npx vmcomm run -n 2 bench/shm-baseline.ts [--quick]             shm, through the ring
//   VMCOMM_BACKENDS=tcp npx vmcomm run -n 2 bench/shm-baseline.ts [--quick]      tcp, for comparison
// Reference (MPICH ch4 shm on this machine, osu_latency / osu_bw): 8 B 0.69 µs mean, 0.65 µs typical;
// 1 MiB 18.9 GB/s. Targets: typical ≤ 1.5 × MPICH's; 1 MiB ≥ 0.75 × MPICH's (single copy).
import { availableParallelism } from 'node:os';
import { init } from 'vmcomm';
import { warmUp } from './warm-up.js';
import { shm, type ShmTransport } from '../dist/backends/shm/index.js';
import { tryLoadNative } from '../dist/backends/native/native.js';

const MPICH = { meanUs: 0.69, typicalUs: 0.65, bandwidthMBs: 18_900 };

const made: ShmTransport[] = [];
const base = shm();
const factory = Object.assign((c: Parameters<typeof base>[0]) => {
  const t = base(c) as ShmTransport;
  made.push(t);
  return t;
}, { transportName: 'shm' as const });
const comm = await init({ backends: [factory] });
if (comm.size !== 2) throw new Error('run with -n 2');
const peer = 1 - comm.rank;
const quick = process.argv.includes('--quick');
const WINDOW = 64;
const BLOCK = 100;
const ROUNDS = quick ? 3 : 7;
const WARMUP_MS = quick ? 500 : 1000;

const addon = tryLoadNative().addon;
const nproc = availableParallelism();
const cpu = comm.rank % nproc;
addon?.setAffinity([cpu], 'process');

async function latency(bytes: number, iters: number, samples?: Float64Array): Promise<number> {
  const buf = new Uint8Array(bytes);
  const t0 = process.hrtime.bigint();
  let last = t0;
  for (let i = 0; i < iters; i++) {
    if (comm.rank === 0) {
      await comm.sendBuffer(buf, peer, 2);
      await comm.recvBuffer(buf, peer, 2);
    } else {
      await comm.recvBuffer(buf, peer, 2);
      await comm.sendBuffer(buf, peer, 2);
    }
    if (samples !== undefined) {
      const now = process.hrtime.bigint();
      samples[i] = Number(now - last) / 1e3 / 2;
      last = now;
    }
  }
  return Number(process.hrtime.bigint() - t0) / 1e3 / iters / 2; // µs, half round trip
}

// As osu_bw (where MPICH's number comes from): one send buffer and one receive buffer for the whole
// window, allocated once.
const window = new Uint8Array(1 << 20).fill(1);
const ack = new Uint8Array(4);

async function bandwidth(bytes: number, iters: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iters; i++) {
    if (comm.rank === 0) {
      const view = window.subarray(0, bytes);
      const sends = [];
      for (let w = 0; w < WINDOW; w++) sends.push(comm.sendBuffer(view, peer, 3));
      await Promise.all(sends);
      await comm.recvBuffer(ack, peer, 4);
    } else {
      const view = window.subarray(0, bytes);
      const recvs = [];
      for (let w = 0; w < WINDOW; w++) recvs.push(comm.recvBuffer(view, peer, 3));
      await Promise.all(recvs);
      await comm.sendBuffer(ack, peer, 4);
    }
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return (bytes * WINDOW * iters) / s / 1e6; // MB/s, MB = 10^6 B
}

const warm = (fn: () => Promise<unknown>) => warmUp(comm, peer, WARMUP_MS, fn);

const median = (xs: ArrayLike<number>) => Array.from(xs).sort((a, b) => a - b)[xs.length >> 1];
const spread = (xs: number[]) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;

const latIters = (quick ? 5 : 20) * BLOCK;
const bwIters = quick ? 4 : 16;
await warm(() => latency(8, 1000));
await warm(() => bandwidth(1 << 20, 2));
const means: number[] = [];
const typicals: number[] = [];
const bws: number[] = [];
const samples = new Float64Array(latIters);
for (let r = 0; r < ROUNDS; r++) {
  means.push(await latency(8, latIters, samples));
  const blockMedians: number[] = [];
  for (let b = 0; b < latIters; b += BLOCK) blockMedians.push(median(samples.subarray(b, b + BLOCK)));
  typicals.push(median(blockMedians));
  bws.push(await bandwidth(1 << 20, bwIters));
}

if (comm.rank === 0) {
  const transport = comm.transportOf(peer);
  const t = made[0];
  const copy = transport !== 'shm' ? '' : t?.singleCopyTo(peer) ? ', single copy (CMA) for ≥ 64 KiB' : ', through the ring (no single copy)';
  const mean = median(means);
  const typical = median(typicals);
  const bw = median(bws);
  console.log(`vmcomm ${transport}${copy}; two processes pinned to CPUs 0 and ${1 % nproc}; ${ROUNDS} interleaved rounds (median of rounds, min–max)`);
  console.log(`  8 B half round trip: mean ${mean.toFixed(2)} µs (${spread(means)}), typical ${typical.toFixed(2)} µs (${spread(typicals)}); ` +
    `typical / MPICH typical ${(typical / MPICH.typicalUs).toFixed(2)} (target ≤ 1.5)`);
  console.log(`  1 MiB bandwidth (window ${WINDOW}): ${bw.toFixed(0)} MB/s (${spread(bws)}); / MPICH ${(bw / MPICH.bandwidthMBs).toFixed(2)} (target ≥ 0.75 with single copy)`);
  if (t !== undefined && transport === 'shm') console.log(`  single copy: ${JSON.stringify(t.singleCopyCounts)}`);
}
await comm.finalize();
