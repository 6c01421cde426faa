// One rank of the soak (issue 9): random point-to-point traffic of every size to random peers
// (itself included), received with ANY_SOURCE/ANY_TAG, interleaved with collectives whose results
// are checked exactly, for `--seconds S`. Every message carries (source, sequence number, length,
// checksum) and a payload that depends on them, so the receiver counts what was lost, duplicated,
// reordered (messages of one sender must arrive in the order sent: they all match the same kind of
// receive) or corrupted. At the end the ranks exchange how many messages each sent to each, and
// wait for every one. Prints one `SOAK {json}` line per rank.
import { ANY_SOURCE, ANY_TAG, init, Op, type Request, type Status } from 'vmcomm';
import { HEADER_BYTES, Ledger, makeMessage } from './ledger.js';

const comm = await init();
const { rank, size } = comm;
const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const seconds = arg('--seconds', 30);
const seed = arg('--seed', 1);
const MAX_BYTES = 4 * 1024 * 1024;

function xorshift(s: number): () => number {
  let x = s >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}
const mine = xorshift(seed * 7919 + rank * 104729 + 1);
const shared = xorshift(seed * 15485863 + 3); // the same sequence on every rank: collective choices

/** A size: mostly small, some medium, a few large (up to 4 MiB), log-uniform within each class. */
function messageBytes(): number {
  const c = mine();
  const [lo, hi] = c < 0.7 ? [HEADER_BYTES, 256] : c < 0.9 ? [256, 64 * 1024] : [64 * 1024, MAX_BYTES];
  const n = Math.floor(Math.exp(Math.log(lo) + mine() * (Math.log(hi) - Math.log(lo))));
  return Math.max(HEADER_BYTES, n & ~3);
}

// ------------------------------------------------------------ receiving
const ledger = new Ledger(size);
const stats = { collectives: 0, collectiveErrors: 0, rounds: 0, sent: 0 };
const inbox = new Uint8Array(MAX_BYTES);
let pending: Request<Status> | undefined;
let stopping = false;

async function receiveLoop(): Promise<void> {
  while (!stopping) {
    pending = comm.irecvBuffer(inbox, ANY_SOURCE, ANY_TAG);
    let st: Status;
    try {
      st = await pending;
    } catch (e) {
      if (stopping) return; // cancelled at the end
      throw e;
    }
    ledger.record(inbox.subarray(0, st.bytes), st.source);
  }
}
const receiving = receiveLoop();

// ------------------------------------------------------------ rounds
const sentTo = new Int32Array(size);
const deadline = performance.now() + seconds * 1000;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

async function collective(round: number): Promise<void> {
  const kind = Math.floor(shared() * 6);
  const root = Math.floor(shared() * size);
  stats.collectives++;
  let ok = true;
  switch (kind) {
    case 0: {
      const r = await comm.allreduce(Float64Array.of(rank, 1, round), Op.SUM);
      ok = r[0] === (size * (size - 1)) / 2 && r[1] === size && r[2] === round * size;
      break;
    }
    case 1: {
      const n = 1 + Math.floor(shared() * 200_000);
      const v = await comm.bcast(rank === root ? Int32Array.from({ length: n }, (_, i) => i ^ round) : undefined, root);
      ok = v.length === n && v[n - 1] === ((n - 1) ^ round) && v[n >> 1] === ((n >> 1) ^ round);
      break;
    }
    case 2: {
      const g = await comm.allgather({ rank, round });
      ok = g.every((x, i) => x.rank === i && x.round === round);
      break;
    }
    case 3: {
      const a = await comm.alltoall(Int32Array.from(range(size), (to) => rank * 1000 + to));
      ok = a.every((x, from) => x === from * 1000 + rank);
      break;
    }
    case 4:
      await comm.barrier();
      break;
    default: {
      const s = await comm.scan(BigInt(rank + 1), Op.SUM);
      ok = s === BigInt(((rank + 1) * (rank + 2)) / 2);
    }
  }
  if (!ok) stats.collectiveErrors++;
}

for (let round = 0; ; round++) {
  stats.rounds++;
  const sends: Promise<void>[] = [];
  const n = Math.floor(mine() * 5);
  for (let i = 0; i < n; i++) {
    const dest = Math.floor(mine() * size);
    const seq = sentTo[dest]++;
    const bytes = messageBytes();
    sends.push(comm.sendBuffer(makeMessage(rank, seq, bytes), dest, Math.floor(mine() * 8)));
    stats.sent++;
  }
  await Promise.all(sends);
  await collective(round);
  // Everyone stops at the same round: when any rank's time is up.
  const stop = await comm.allreduce(performance.now() > deadline ? 1 : 0, Op.MAX);
  if (stop) break;
}

// Every rank learns how many messages each other rank sent it, and waits for all of them.
const expected = await comm.alltoall(sentTo);
const waitUntil = performance.now() + 60_000;
while (range(size).some((s) => ledger.received(s) < expected[s]) && performance.now() < waitUntil) await new Promise((r) => setTimeout(r, 5));
stopping = true;
pending?.cancel();
await receiving;

const transports: Record<string, number> = {};
for (let p = 0; p < size; p++) transports[comm.transportOf(p)] = (transports[comm.transportOf(p)] ?? 0) + 1;
const { messages, bytes, duplicated, reordered, corrupt } = ledger;
console.log(`SOAK ${JSON.stringify({ rank, transports, messages, bytes, lost: ledger.lost(expected), duplicated, reordered, corrupt, ...stats })}`);
await comm.finalize();
