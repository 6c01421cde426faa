// Resident memory per rank as a job grows (issue 4: "rings sized and opened lazily; report resident
// memory per rank at 32 and 64 ranks"). Each rank samples its RSS and this job's /dev/shm files:
//   1. after init() and one barrier       — log2(N) rings per rank (rings open on first send);
//   2. after a ring exchange              — 2 rings per rank (to the next, from the previous);
//   3. after every pair exchanged once    — 2·(N−1) rings per rank: the worst case;
//   4. after an allreduce of 131,072 doubles (collective scratch).
// The baseline is a bare `node` process measured in the same run, so the numbers say what vmcomm
// adds. /dev/shm pages are counted once per job (they are shared: each ring is mapped by both ends,
// and RSS counts a page in every process that touched it).
// Plain JavaScript on purpose: a .ts app also loads ts-node and the TypeScript compiler (about
// 65 MiB more per process here), which says nothing about vmcomm.
//   npx vmcomm run -n 32 bench/memory.mjs      npx vmcomm run --threads -n 32 bench/memory.mjs
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';
import { init, Op } from 'vmcomm';

const comm = await init();
const { rank, size } = comm;
const MiB = 1024 * 1024;
const rss = () => process.memoryUsage().rss / MiB;

/** Bytes of /dev/shm files that belong to vmcomm (this job's rings and tokens). */
function shmBytes() {
  let total = 0;
  try {
    for (const name of readdirSync('/dev/shm')) if (name.startsWith('vmcomm-')) total += statSync(`/dev/shm/${name}`).blocks * 512;
  } catch {
    // No /dev/shm: report 0.
  }
  return total / MiB;
}

const samples = [];
const sample = async (stage) => {
  await comm.barrier();
  samples.push({ stage, rss: rss(), shm: rank === 0 ? shmBytes() : 0 });
};

await sample('init + barrier');
const next = (rank + 1) % size;
const prev = (rank + size - 1) % size;
await comm.sendrecv(new Uint8Array(64), next, prev);
await sample('ring exchange');
// Every ordered pair once, in size−1 rounds (round k: send to rank+k, receive from rank−k).
for (let k = 1; k < size; k++) await comm.sendrecv(new Uint8Array(64), (rank + k) % size, (rank + size - k) % size, 1, 1);
await sample('all pairs');
await comm.allreduce(new Float64Array(131_072).fill(1), Op.SUM);
await sample('allreduce 1 MiB');

const all = await comm.gather(samples.map((s) => s.rss), 0);
if (rank === 0) {
  const bare = Number(execFileSync(process.execPath, ['-e', 'console.log(process.memoryUsage().rss)'], { encoding: 'utf8' })) / MiB;
  const threads = !isMainThread;
  console.log(`vmcomm memory, ${size} ranks (${threads ? 'thread-ranks of one process' : 'one process per rank'}), transport 0→1: ${size > 1 ? comm.transportOf(1) : 'self'}`);
  console.log(`baseline: a bare node process ${bare.toFixed(1)} MiB RSS`);
  console.log('| stage | RSS per rank, median (MiB) | max | over a bare node | /dev/shm, whole job (MiB) |');
  console.log('|---|---|---|---|---|');
  samples.forEach((s, i) => {
    const per = all.map((r) => r[i]).sort((a, b) => a - b);
    const median = per[per.length >> 1];
    // Thread-ranks share one process: its RSS is the whole job's, so per rank is RSS / ranks.
    const perRank = threads ? median / size : median;
    const over = threads ? `${(median - bare).toFixed(1)} for all ${size}` : `+${(median - bare).toFixed(1)}`;
    console.log(`| ${s.stage} | ${perRank.toFixed(1)} | ${(threads ? per[per.length - 1] / size : per[per.length - 1]).toFixed(1)} | ${over} | ${s.shm.toFixed(1)} |`);
  });
}
await comm.finalize();
