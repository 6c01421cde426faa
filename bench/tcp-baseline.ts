// vmcomm over tcp against a bare Node TCP socket between the same two processes, same run, same
// patterns (OSU latency: half round trip; OSU bw: a window of 64 messages, then a 4-byte ack).
// Rounds are interleaved (bare, vmcomm, bare, vmcomm …) after a time-based warm-up of each.
//   npx vmcomm run -n 2 bench/tcp-baseline.ts [--quick]
// The full OSU-style suite is `vmcomm bench` (issue 8); this is the tcp backend's own yardstick.
import { init } from 'vmcomm';
import { bareSocket } from './bare-socket.js';
import { warmUp } from './warm-up.js';

// This is the tcp backend's yardstick: keep every pair on tcp even where shared memory would win.
const comm = await init({ only: ['tcp'] });
if (comm.size !== 2) throw new Error('run with -n 2');
const quick = process.argv.includes('--quick');
const peer = 1 - comm.rank;
const WINDOW = 64;
const ROUNDS = quick ? 3 : 7;
const WARMUP_MS = quick ? 200 : 500;

// ---- a bare socket between the same two processes, length-prefixed like any framed protocol
const bare = await bareSocket(comm);
bare.setNoDelay(true);

// Reads one length-prefixed message into `into`, copying each chunk once, straight to its place (what a
// careful user of a bare socket would do: no concatenation).
const chunks: Buffer[] = [];
let waiter: (() => void) | undefined;
bare.on('data', (chunk: Buffer) => {
  chunks.push(chunk);
  waiter?.();
});
async function take(into: Uint8Array, n: number): Promise<void> {
  let got = 0;
  while (got < n) {
    if (chunks.length === 0) {
      await new Promise<void>((r) => (waiter = r));
      waiter = undefined;
      continue;
    }
    const c = chunks[0];
    const k = Math.min(c.length, n - got);
    if (got < into.length) into.set(c.subarray(0, Math.min(k, into.length - got)), got);
    got += k;
    if (k === c.length) chunks.shift();
    else chunks[0] = c.subarray(k);
  }
}
const head = new Uint8Array(4);
async function bareRecv(into: Uint8Array): Promise<void> {
  await take(head, 4);
  await take(into, new DataView(head.buffer).getUint32(0, true));
}
function bareSend(data: Uint8Array): Promise<void> {
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32LE(data.byteLength, 0);
  bare.cork();
  bare.write(head);
  const p = new Promise<void>((r) => bare.write(data, () => r()));
  bare.uncork();
  return p;
}

type Ops = { send(b: Uint8Array): Promise<void>; recv(b: Uint8Array): Promise<unknown> };
const vm: Ops = { send: (b) => comm.sendBuffer(b, peer, 2), recv: (b) => comm.recvBuffer(b, peer, 2) };
const raw: Ops = { send: bareSend, recv: bareRecv };

async function latency(ops: Ops, bytes: number, iters: number): Promise<number> {
  const buf = new Uint8Array(bytes);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iters; i++) {
    if (comm.rank === 0) {
      await ops.send(buf);
      await ops.recv(buf);
    } else {
      await ops.recv(buf);
      await ops.send(buf);
    }
  }
  return Number(process.hrtime.bigint() - t0) / 1e3 / iters / 2; // µs, half round trip
}

async function bandwidth(ops: Ops, bytes: number, iters: number): Promise<number> {
  const bufs = Array.from({ length: WINDOW }, () => new Uint8Array(bytes));
  const ack = new Uint8Array(4);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iters; i++) {
    if (comm.rank === 0) {
      await Promise.all(bufs.map((b) => ops.send(b)));
      await ops.recv(ack);
    } else {
      for (const b of bufs) await ops.recv(b);
      await ops.send(ack);
    }
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return (bytes * WINDOW * iters) / s / 1e6; // MB/s, MB = 10^6 B
}

const warm = (fn: () => Promise<unknown>) => warmUp(comm, peer, WARMUP_MS, fn);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const spread = (xs: number[]) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;

const latIters = quick ? 500 : 2000;
const bwIters = quick ? 4 : 16;
await warm(() => latency(raw, 8, 200));
await warm(() => latency(vm, 8, 200));
const lat = { raw: [] as number[], vm: [] as number[] };
for (let r = 0; r < ROUNDS; r++) {
  lat.raw.push(await latency(raw, 8, latIters));
  lat.vm.push(await latency(vm, 8, latIters));
}
await warm(() => bandwidth(raw, 1 << 20, 2));
await warm(() => bandwidth(vm, 1 << 20, 2));
const bw = { raw: [] as number[], vm: [] as number[] };
for (let r = 0; r < ROUNDS; r++) {
  bw.raw.push(await bandwidth(raw, 1 << 20, bwIters));
  bw.vm.push(await bandwidth(vm, 1 << 20, bwIters));
}

if (comm.rank === 0) {
  console.log(`tcp backend vs bare Node TCP, same two processes, ${ROUNDS} interleaved rounds (median, min–max)`);
  console.log(`  8 B half round trip: bare ${median(lat.raw).toFixed(2)} µs (${spread(lat.raw)}), vmcomm ${median(lat.vm).toFixed(2)} µs (${spread(lat.vm)}), ratio ${(median(lat.vm) / median(lat.raw)).toFixed(3)} (target ≤ 1.15)`);
  console.log(`  1 MiB bandwidth (window ${WINDOW}): bare ${median(bw.raw).toFixed(0)} MB/s (${spread(bw.raw)}), vmcomm ${median(bw.vm).toFixed(0)} MB/s (${spread(bw.vm)}), ratio ${(median(bw.vm) / median(bw.raw)).toFixed(3)} (target ≥ 1)`);
}
bare.destroy();
await comm.finalize();
