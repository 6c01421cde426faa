// A 1-double allreduce built from point-to-point messages (recursive doubling, with the usual fold of
// the ranks beyond a power of two), timed per call: what an application's own exchange pattern costs
// through send/recv when ranks outnumber cores. Issue 4 measured its "8 ranks on 2 cores" target
// with it until the collectives landed (now `bench/collectives.ts`):
//   npx vmcomm run -n 8 bench/allreduce-p2p.ts
// Reference measured on this machine (issue 4): Open MPI (yielding) 98 µs, MPICH (busy-polling) 60,000 µs.
import { init } from 'vmcomm';
import { warmUpRanks } from './warm-up.js';

const comm = await init();
const { rank, size } = comm;
const quick = process.argv.includes('--quick');
const TAG = 11;

/** Sum of `x` over all ranks, every rank gets it; bit-identical everywhere (same order of additions). */
async function allreduce(x: number): Promise<number> {
  let pof2 = 1;
  while (pof2 * 2 <= size) pof2 *= 2;
  const extra = size - pof2;
  // Fold: ranks pof2… send to rank − pof2 and wait for the result.
  if (rank >= pof2) {
    await comm.send(x, rank - pof2, TAG);
    return comm.recv<number>(rank - pof2, TAG);
  }
  let v = x;
  if (rank < extra) v = v + (await comm.recv<number>(rank + pof2, TAG));
  for (let mask = 1; mask < pof2; mask <<= 1) {
    const peer = rank ^ mask;
    const other = await comm.sendrecv<number>(v, peer, peer, TAG, TAG);
    v = rank < peer ? v + other : other + v; // lower rank's value first: the same order on both
  }
  if (rank < extra) await comm.send(v, rank + pof2, TAG);
  return v;
}

const expected = (size * (size + 1)) / 2;
// At least 0.5 s (0.2 s with --quick) of a rank's estimated time on a core, then until the time per
// call settles.
await warmUpRanks(comm, quick ? 200 : 500, () => allreduce(rank + 1));
const rounds = quick ? 3 : 7;
const iters = quick ? 100 : 500;
const perRound: number[] = [];
for (let r = 0; r < rounds; r++) {
  await comm.barrier();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iters; i++) {
    const s = await allreduce(rank + 1);
    if (s !== expected) throw new Error(`rank ${rank}: allreduce gave ${s}, expected ${expected}`);
  }
  perRound.push(Number(process.hrtime.bigint() - t0) / 1e3 / iters);
}
if (rank === 0) {
  const sorted = [...perRound].sort((a, b) => a - b);
  const transports = [...new Set(Array.from({ length: size }, (_, p) => comm.transportOf(p)).filter((t) => t !== 'self'))].join('+');
  console.log(`allreduce of 1 double, ${size} ranks over ${transports}, p2p recursive doubling: median ${sorted[sorted.length >> 1].toFixed(1)} µs per call (rounds ${sorted[0].toFixed(1)}–${sorted[sorted.length - 1].toFixed(1)}); Open MPI here: 98 µs`);
}
await comm.finalize();
