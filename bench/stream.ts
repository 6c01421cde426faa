// vmcomm/stream throughput against a raw sendBuffer loop (same chunk size and window, same pair
// transport) and against a bare Node TCP socket between the same two processes, same run. Rank 0
// writes, rank 1 reads and counts; each figure is the best of interleaved rounds; ratios at the end.
//   npx vmcomm run -n 2 [--backends tcp | --threads] bench/stream.ts [--quick] [--mib 256] [--rounds 3]
//     [--write-kib 1024] [--chunk-kib 1024] [--window 4] [--whwm-kib K]
// --write-kib: the writer's write size (stream and socket); --chunk-kib, --window: the stream's
// chunkBytes and windowChunks, and the raw loop's message size and window; --whwm-kib: the stream's
// writableHighWaterMark. Performance is not asserted anywhere: this prints figures and ratios.
import { once } from 'node:events';
import { init } from 'vmcomm';
import { bareSocket } from './bare-socket.js';
import { DEFAULT_CHUNK_BYTES, DEFAULT_WINDOW_CHUNKS, openStream } from 'vmcomm/stream';

const comm = await init();
if (comm.size !== 2) throw new Error('run with -n 2');
const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(name);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const quick = process.argv.includes('--quick');
const MIB = arg('--mib', quick ? 64 : 256);
const ROUNDS = arg('--rounds', quick ? 2 : 3);
const TOTAL = MIB * 1024 * 1024;
const WRITE_BYTES = arg('--write-kib', 1024) * 1024;
const peer = 1 - comm.rank;
const block = Buffer.alloc(WRITE_BYTES, 0x5a);
const CHUNK = arg('--chunk-kib', DEFAULT_CHUNK_BYTES / 1024) * 1024;
const WINDOW = arg('--window', DEFAULT_WINDOW_CHUNKS);
const WHWM = arg('--whwm-kib', 0) * 1024;

/** Seconds for TOTAL bytes, measured at the reader (from the writer's start signal to the last byte). */
async function timed(run: () => Promise<void>): Promise<number> {
  await comm.barrier();
  const t = performance.now();
  await run();
  const seconds = (performance.now() - t) / 1000;
  // The reader's clock decides (it sees the last byte); the writer learns it.
  return comm.bcast(seconds, 1);
}

// ---- vmcomm/stream
let tag = 1;
async function streamRound(): Promise<number> {
  const s = openStream(comm, peer, { tag: tag++, chunkBytes: CHUNK, windowChunks: WINDOW, ...(WHWM ? { writableHighWaterMark: WHWM } : {}) });
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  await once(s, 'connect');
  const seconds = await timed(async () => {
    if (comm.rank === 0) {
      for (let sent = 0; sent < TOTAL; sent += WRITE_BYTES) if (!s.write(block)) await once(s, 'drain');
      s.end();
      s.resume();
      await once(s, 'end');
    } else {
      let got = 0;
      s.on('data', (c: Buffer) => (got += c.length));
      await once(s, 'end');
      if (got !== TOTAL) throw new Error(`stream delivered ${got} bytes`);
      s.end();
    }
  });
  await closed;
  return seconds;
}

// ---- raw sendBuffer loop: the same message size and window as the stream's defaults
const side = comm.sideContext();
async function rawRound(): Promise<number> {
  const chunk = CHUNK;
  const count = Math.ceil(TOTAL / chunk);
  const buffers = Array.from({ length: WINDOW }, () => new Uint8Array(chunk));
  const message = new Uint8Array(chunk).fill(0x5a);
  return timed(async () => {
    if (comm.rank === 0) {
      const inFlight: PromiseLike<void>[] = [];
      for (let i = 0; i < count; i++) {
        if (inFlight.length >= WINDOW) await inFlight.shift();
        inFlight.push(side.isendBuffer(message, peer, 1_000_000));
      }
      await Promise.all(inFlight);
    } else {
      const posted: PromiseLike<unknown>[] = [];
      for (let i = 0; i < count; i++) {
        if (posted.length >= WINDOW) await posted.shift();
        posted.push(side.irecvBuffer(buffers[i % buffers.length], peer, 1_000_000));
      }
      await Promise.all(posted);
    }
  });
}

// ---- a bare TCP socket between the same processes
const bare = await bareSocket(comm);
// One listener for the socket's whole life: a flowing socket drops data nobody listens to.
let tcpGot = 0;
let tcpWant = Infinity;
let tcpDone: (() => void) | undefined;
bare.on('data', (c: Buffer) => {
  tcpGot += c.length;
  if (tcpGot >= tcpWant) tcpDone?.();
});
async function tcpRound(): Promise<number> {
  // Rank 0 waits for a one-byte ack, rank 1 for every byte.
  tcpGot = 0;
  tcpWant = comm.rank === 0 ? 1 : TOTAL;
  const arrived = new Promise<void>((resolve) => (tcpDone = resolve));
  return timed(async () => {
    if (comm.rank === 0) {
      for (let sent = 0; sent < TOTAL; sent += WRITE_BYTES) if (!bare.write(block)) await once(bare, 'drain');
      await arrived;
    } else {
      await arrived;
      bare.write('k');
    }
  });
}

const best = { stream: Infinity, raw: Infinity, tcp: Infinity };
await streamRound(); // warm-up
await rawRound();
for (let r = 0; r < ROUNDS; r++) {
  best.stream = Math.min(best.stream, await streamRound());
  best.raw = Math.min(best.raw, await rawRound());
  best.tcp = Math.min(best.tcp, await tcpRound());
}
bare.destroy();
if (comm.rank === 0) {
  const rate = (s: number) => MIB / s;
  const t = comm.transportOf(peer);
  console.log(`vmcomm/stream over ${t}, ${MIB} MiB in ${WRITE_BYTES / 1024} KiB writes, best of ${ROUNDS}:`);
  console.log(`  stream          ${rate(best.stream).toFixed(0).padStart(6)} MiB/s`);
  console.log(`  raw sendBuffer  ${rate(best.raw).toFixed(0).padStart(6)} MiB/s  (${CHUNK / 1024} KiB messages, window ${WINDOW})  stream/raw ${(best.raw / best.stream).toFixed(2)}`);
  console.log(`  Node TCP socket ${rate(best.tcp).toFixed(0).padStart(6)} MiB/s  stream/tcp ${(best.tcp / best.stream).toFixed(2)}`);
}
await comm.finalize();
