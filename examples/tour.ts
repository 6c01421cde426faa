// The `npm start` job: what vmcomm detected, which transport every pair uses, a ping-pong and an
// allreduce.
//   npx vmcomm run -n 4 examples/tour.ts
import { availableParallelism } from 'node:os';
import { init, Op, type Communicator, type LocalityCard } from 'vmcomm';

const comm = await init();
const { rank, size } = comm;

/**
 * Calls `step` in batches of 100 until `ms` have passed on rank 0 of `c`, which tells the others when
 * to stop (every rank makes the same calls). Timing the first calls would time V8 compiling the loop:
 * it needs a few thousand iterations, 0.2–0.3 s here, before the code is optimized.
 */
async function warmUp(c: Communicator, ms: number, step: () => Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  for (let go = true; go; ) {
    for (let i = 0; i < 100; i++) await step();
    go = await c.bcast(c.rank === 0 ? performance.now() - t0 < ms : undefined, 0);
  }
}

// What the JIT counts is a rank's own run time: with more ranks than cores each runs only part of the
// wall clock, so the warm-ups last that much longer (4 ranks on 2 cores: 0.8 s).
const cores = availableParallelism();
const WARM_UP_MS = 400 * Math.max(1, size / cores);
const warmUpSeconds = (WARM_UP_MS / 1000).toFixed(1);

// 1. Each rank's locality card and its row of the transport matrix, gathered at rank 0.
const card = comm.locality();
const matrixRow = Array.from({ length: size }, (_, p) => comm.transportOf(p));
const gathered = await comm.gather({ card, row: matrixRow }, 0);
if (gathered) {
  const cards = gathered.map((g) => g.card);
  const rows = gathered.map((g) => g.row);
  console.log(`vmcomm tour: ${size} ranks\n`);
  console.log('Locality cards (what each rank published; nonces prove co-location, names do not):');
  for (const c of cards) {
    const backends = Object.entries(c.backends)
      .map(([name, fields]) => `${name}${Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : ''}`)
      .join(', ');
    console.log(`  rank ${c.rank}: host ${c.hostname}, pid ${c.pid}, process ${c.processNonce.slice(0, 8)}…, address ${c.address}; transports: ${backends}`);
  }
  console.log('\nTransport matrix (row = rank, column = peer):');
  const w = Math.max(...rows.flat().map((s) => s.length), 4);
  console.log(`        ${Array.from({ length: size }, (_, p) => String(p).padStart(w)).join(' ')}`);
  rows.forEach((row, r) => console.log(`  ${String(r).padStart(4)}  ${row.map((s) => s.padStart(w)).join(' ')}`));
}

// Shared-memory groups (what splitByLocality('os') proved), as the locality-aware collectives see them.
const near = await comm.splitByLocality('os');
const members = await near.allgather(rank);
const groups = await comm.gather(near.rank === 0 ? members : undefined, 0);
if (groups) console.log(`\nShared-memory groups (one OS each): ${groups.filter((g): g is number[] => g !== undefined).map((g) => `[${g.join(' ')}]`).join(' ')}`);
await near.free();

// 2. Ping-pong between rank 0 and rank 1: half round-trip time for a few sizes.
const pair = await comm.split(size >= 2 && rank < 2 ? 0 : undefined);
if (pair !== undefined) {
  const peer = 1 - rank;
  /** One round trip of `buf` over the world communicator, as a program would send. */
  const pingPong = async (buf: Uint8Array): Promise<void> => {
    if (rank === 0) {
      await comm.sendBuffer(buf, peer, 2);
      await comm.recvBuffer(buf, peer, 2);
    } else {
      await comm.recvBuffer(buf, peer, 2);
      await comm.sendBuffer(buf, peer, 2);
    }
  };
  // The pair communicator only decides when the warm-up stops.
  const small = new Uint8Array(8);
  await warmUp(pair, WARM_UP_MS, () => pingPong(small));
  if (rank === 0) {
    console.log(`\nPing-pong 0 ⇄ 1 over ${comm.transportOf(1)} (half round trip, median of 5 blocks, after a ${warmUpSeconds} s warm-up):`);
    if (size > cores) console.log(`  (${size} ranks share ${cores} cores: waiting ranks yield and sleep early, which costs latency; bench/ has 2-rank numbers)`);
  }
  for (const bytes of [8, 1024, 64 * 1024, 1024 * 1024]) {
    const buf = new Uint8Array(bytes);
    const iters = bytes >= 1024 * 1024 ? 20 : 200;
    const blocks: number[] = [];
    for (let block = 0; block < 6; block++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < iters; i++) await pingPong(buf);
      if (block > 0) blocks.push(Number(process.hrtime.bigint() - t0) / 1000 / iters / 2); // block 0 warms up
    }
    blocks.sort((a, b) => a - b);
    const us = blocks[blocks.length >> 1];
    if (rank === 0) console.log(`  ${String(bytes).padStart(8)} B  ${us.toFixed(2).padStart(9)} µs  ${((bytes / us) * 1e-3).toFixed(3).padStart(9)} GB/s`);
  }
  await pair.free();
}

// 3. Allreduce: the sum of every rank's vector, bit-identical on every rank; then its time per call.
const mine = Float64Array.from({ length: 4 }, (_, i) => (rank + 1) * 10 ** i);
const sum = await comm.allreduce(mine, Op.SUM);
const sumOfRanks = (size * (size + 1)) / 2;
const ok = sum.every((v, i) => v === sumOfRanks * 10 ** i);
const everywhereOk = await comm.allreduce(ok ? 1 : 0, Op.MIN);
await warmUp(comm, WARM_UP_MS, () => comm.allreduce(rank, Op.SUM));
// 10 blocks of 100 calls; a block's time is its slowest rank's (one elementwise MAX at the end), and
// the median block is reported, as for the ping-pong: on 2 shared cores one preemption (milliseconds)
// would otherwise dominate the mean.
const blocks = 10;
const callsPerBlock = 100;
const blockUs = new Float64Array(blocks);
await comm.barrier();
for (let b = 0; b < blocks; b++) {
  const t0 = performance.now();
  for (let i = 0; i < callsPerBlock; i++) await comm.allreduce(rank, Op.SUM);
  blockUs[b] = ((performance.now() - t0) * 1000) / callsPerBlock;
}
const slowest = Array.from(await comm.allreduce(blockUs, Op.MAX)).sort((a, b) => a - b);
const perCall = slowest[blocks >> 1];
if (rank === 0) {
  console.log(`\nAllreduce (SUM of [r+1, 10(r+1), 100(r+1), 1000(r+1)] over ranks r): [${Array.from(sum).join(', ')}] — ${everywhereOk === 1 ? 'correct on every rank' : 'WRONG on some rank'}`);
  console.log(`Allreduce of one number: ${perCall.toFixed(2)} µs per call (slowest rank, median of ${blocks} blocks of ${callsPerBlock}, after a ${warmUpSeconds} s warm-up)`);
  console.log('\nNext (npm start runs it): a short vmcomm bench, every backend beside its baseline; the full suite: npx vmcomm bench; the job itself: npx vmcomm info');
}
if (everywhereOk !== 1) process.exitCode = 1;
await comm.finalize();
