// The `npm start` job: what vmcomm detected, which transport every pair uses, a ping-pong and an
// allreduce.
//   npx vmcomm run -n 4 examples/tour.ts
import { availableParallelism } from 'node:os';
import { init, Op, type LocalityCard } from 'vmcomm';

const comm = await init();
const { rank, size } = comm;

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
if (size >= 2 && rank < 2) {
  const peer = 1 - rank;
  if (rank === 0) {
    console.log(`\nPing-pong 0 ⇄ 1 over ${comm.transportOf(1)} (half round trip, median of 5 blocks):`);
    const cores = availableParallelism();
    if (size > cores) console.log(`  (${size} ranks share ${cores} cores: waiting ranks yield and sleep early, which costs latency; bench/ has 2-rank numbers)`);
  }
  for (const bytes of [8, 1024, 64 * 1024, 1024 * 1024]) {
    const buf = new Uint8Array(bytes);
    const iters = bytes >= 1024 * 1024 ? 20 : 200;
    const blocks: number[] = [];
    for (let block = 0; block < 6; block++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < iters; i++) {
        if (rank === 0) {
          await comm.sendBuffer(buf, peer, 2);
          await comm.recvBuffer(buf, peer, 2);
        } else {
          await comm.recvBuffer(buf, peer, 2);
          await comm.sendBuffer(buf, peer, 2);
        }
      }
      if (block > 0) blocks.push(Number(process.hrtime.bigint() - t0) / 1000 / iters / 2); // block 0 warms up
    }
    blocks.sort((a, b) => a - b);
    const us = blocks[blocks.length >> 1];
    if (rank === 0) console.log(`  ${String(bytes).padStart(8)} B  ${us.toFixed(2).padStart(9)} µs  ${((bytes / us) * 1e-3).toFixed(3).padStart(9)} GB/s`);
  }
}

// 3. Allreduce: the sum of every rank's vector, bit-identical on every rank; then its time per call.
const mine = Float64Array.from({ length: 4 }, (_, i) => (rank + 1) * 10 ** i);
const sum = await comm.allreduce(mine, Op.SUM);
const sumOfRanks = (size * (size + 1)) / 2;
const ok = sum.every((v, i) => v === sumOfRanks * 10 ** i);
const everywhereOk = await comm.allreduce(ok ? 1 : 0, Op.MIN);
for (let i = 0; i < 200; i++) await comm.allreduce(rank, Op.SUM); // warm-up
await comm.barrier();
const t0 = performance.now();
const calls = 1000;
for (let i = 0; i < calls; i++) await comm.allreduce(rank, Op.SUM);
const perCall = await comm.allreduce(((performance.now() - t0) * 1000) / calls, Op.MAX);
if (rank === 0) {
  console.log(`\nAllreduce (SUM of [r+1, 10(r+1), 100(r+1), 1000(r+1)] over ranks r): [${Array.from(sum).join(', ')}] — ${everywhereOk === 1 ? 'correct on every rank' : 'WRONG on some rank'}`);
  console.log(`Allreduce of one number: ${perCall.toFixed(2)} µs per call (slowest rank, mean of ${calls})`);
  console.log('\nNext (npm start runs it): a short vmcomm bench, every backend beside its baseline; the full suite: npx vmcomm bench; the job itself: npx vmcomm info');
}
if (everywhereOk !== 1) process.exitCode = 1;
await comm.finalize();
