// The `npm start` job: what vmcomm detected, which transport every pair uses, and a ping-pong.
//   npx vmcomm run -n 4 examples/tour.ts
import { availableParallelism } from 'node:os';
import { init, type LocalityCard } from 'vmcomm';

const comm = await init();
const { rank, size } = comm;

// 1. Each rank's locality card, gathered at rank 0 (point-to-point; collectives arrive later).
const card = comm.locality();
const matrixRow = Array.from({ length: size }, (_, p) => comm.transportOf(p));
if (rank === 0) {
  const cards: LocalityCard[] = [card];
  const rows: string[][] = [matrixRow];
  for (let r = 1; r < size; r++) {
    const m = await comm.recv<{ card: LocalityCard; row: string[] }>(r, 1);
    cards[r] = m.card;
    rows[r] = m.row;
  }
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
} else {
  await comm.send({ card, row: matrixRow }, 0, 1);
}

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

await comm.barrier();
if (rank === 0) console.log('\nAllreduce: not yet available (collectives land with issue 6); the tour will show it then.');
await comm.finalize();
