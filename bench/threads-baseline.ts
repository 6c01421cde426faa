// vmcomm over threads against a bare SharedArrayBuffer spin ring and a MessagePort, between the same
// two worker threads of one process, same run, same patterns (OSU latency: half round trip of 8 B;
// OSU bw: a window of 64 messages of 1 MiB, then a 4-byte ack). Rounds are interleaved (bare, port,
// vmcomm, bare, …) after a time-based warm-up (≥ 0.5 s) of each.
//   npm run build && node --import vmcomm/ts-register bench/threads-baseline.ts [--quick]
// The main thread starts the two thread-ranks itself (runThreadRanks, the programmatic
// `vmcomm run --threads -n 2`), because only their parent can hand them the two ends of a
// MessageChannel. "typical" is the median over blocks of 100 iterations; "mean" is over all of them.
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { MessageChannel, isMainThread, workerData, type MessagePort } from 'node:worker_threads';
// The same bare rings as `vmcomm bench`'s sab-ring baseline (1 MiB each way, spinning).
import { SAB_RINGS_BYTES, sabRingsOf } from './osu/links.js';

if (isMainThread) {
  const { runThreadRanks } = await import('../dist/lib/launch/thread-host.js');
  const { port1, port2 } = new MessageChannel();
  const ports = [port1, port2];
  const rings = new SharedArrayBuffer(SAB_RINGS_BYTES);
  const codes = await runThreadRanks(fileURLToPath(import.meta.url), 2, {
    args: process.argv.slice(2),
    workerData: (rank) => ({ value: { port: ports[rank], rings }, transferList: [ports[rank]] }),
  });
  process.exit(codes.find((c) => c !== 0) ?? 0);
} else {
  await rank();
}

async function rank(): Promise<void> {
  const { init } = await import('vmcomm');
  const comm = await init();
  if (comm.size !== 2) throw new Error('two thread-ranks expected');
  const quick = process.argv.includes('--quick');
  const peer = 1 - comm.rank;
  const WINDOW = 64;
  const BLOCK = 100;
  const ROUNDS = quick ? 3 : 7;
  const WARMUP_MS = 500;
  const { port, rings } = workerData as { port: MessagePort; rings: SharedArrayBuffer };

  // ---- the bare ring: ring 0 carries rank 0 → 1, ring 1 the other way
  const { out, inn } = sabRingsOf(rings, comm.rank);

  // ---- the MessagePort: messages are structured-cloned copies (no transfer: the sender keeps its buffer)
  const inbox: Uint8Array[] = [];
  let waiter: ((m: Uint8Array) => void) | undefined;
  port.on('message', (m: Uint8Array) => {
    const w = waiter;
    waiter = undefined;
    if (w !== undefined) w(m);
    else inbox.push(m);
  });
  const portRecv = (): Promise<Uint8Array> => (inbox.length > 0 ? Promise.resolve(inbox.shift()!) : new Promise((r) => (waiter = r)));

  type Lat = { blocks: number[]; totalNs: number; iters: number };
  const now = () => process.hrtime.bigint();

  /** Half round trips of 8 B in blocks of 100; per block mean in µs. */
  function bareLatency(iters: number): Lat {
    const buf = new Uint8Array(8);
    const blocks: number[] = [];
    const t0 = now();
    for (let b = 0; b < iters / BLOCK; b++) {
      const tb = now();
      for (let i = 0; i < BLOCK; i++) {
        if (comm.rank === 0) {
          out.write(buf);
          inn.read(buf);
        } else {
          inn.read(buf);
          out.write(buf);
        }
      }
      blocks.push(Number(now() - tb) / 1e3 / BLOCK / 2);
    }
    return { blocks, totalNs: Number(now() - t0), iters };
  }

  async function asyncLatency(send: (b: Uint8Array) => unknown, recv: (b: Uint8Array) => Promise<unknown>, iters: number): Promise<Lat> {
    const buf = new Uint8Array(8);
    const blocks: number[] = [];
    const t0 = now();
    for (let b = 0; b < iters / BLOCK; b++) {
      const tb = now();
      for (let i = 0; i < BLOCK; i++) {
        if (comm.rank === 0) {
          await send(buf);
          await recv(buf);
        } else {
          await recv(buf);
          await send(buf);
        }
      }
      blocks.push(Number(now() - tb) / 1e3 / BLOCK / 2);
    }
    return { blocks, totalNs: Number(now() - t0), iters };
  }

  // The bare ring behind an async API (one await per operation, as any promise-based API costs).
  const bareSend = async (b: Uint8Array) => out.write(b);
  const bareRecv = async (b: Uint8Array) => inn.read(b);
  const vmSend = (b: Uint8Array) => comm.sendBuffer(b, peer, 2);
  const vmRecv = (b: Uint8Array) => comm.recvBuffer(b, peer, 2);
  const portSend = (b: Uint8Array) => port.postMessage(b);

  const MiB = 1 << 20;
  const bufs = Array.from({ length: WINDOW }, () => new Uint8Array(MiB).fill(comm.rank + 1));
  const ack = new Uint8Array(4);

  /** MB/s (10^6 B) for `iters` windows. */
  function bareBandwidth(iters: number): number {
    const t0 = now();
    for (let i = 0; i < iters; i++) {
      if (comm.rank === 0) {
        for (const b of bufs) out.write(b);
        inn.read(ack);
      } else {
        for (const b of bufs) inn.read(b);
        out.write(ack);
      }
    }
    return (MiB * WINDOW * iters) / (Number(now() - t0) / 1e9) / 1e6;
  }

  async function vmBandwidth(iters: number): Promise<number> {
    const t0 = now();
    for (let i = 0; i < iters; i++) {
      if (comm.rank === 0) {
        await Promise.all(bufs.map((b) => comm.sendBuffer(b, peer, 3)));
        await comm.recvBuffer(ack, peer, 4);
      } else {
        await Promise.all(bufs.map((b) => comm.recvBuffer(b, peer, 3)));
        await comm.sendBuffer(ack, peer, 4);
      }
    }
    return (MiB * WINDOW * iters) / (Number(now() - t0) / 1e9) / 1e6;
  }

  async function portBandwidth(iters: number): Promise<number> {
    const t0 = now();
    for (let i = 0; i < iters; i++) {
      if (comm.rank === 0) {
        for (const b of bufs) port.postMessage(b);
        await portRecv();
      } else {
        for (let k = 0; k < WINDOW; k++) await portRecv();
        port.postMessage(ack);
      }
    }
    return (MiB * WINDOW * iters) / (Number(now() - t0) / 1e9) / 1e6;
  }

  async function warm(fn: () => unknown): Promise<void> {
    // Both ranks must run the same number of iterations: rank 0 decides when warm-up ends.
    const t0 = Date.now();
    for (;;) {
      await fn();
      const more = comm.rank === 0 ? Date.now() - t0 < WARMUP_MS : true;
      const go = await comm.sendrecv(more, peer, peer, 9, 9);
      if (!(comm.rank === 0 ? more : go)) break;
    }
  }

  const latIters = quick ? 2000 : 10_000;
  await warm(() => bareLatency(1000));
  await warm(() => asyncLatency(bareSend, bareRecv, 1000));
  await warm(() => asyncLatency(portSend, portRecv, 1000));
  await warm(() => asyncLatency(vmSend, vmRecv, 1000));
  const lat = { bare: [] as Lat[], bareAsync: [] as Lat[], port: [] as Lat[], vm: [] as Lat[] };
  for (let r = 0; r < ROUNDS; r++) {
    await comm.barrier();
    lat.bare.push(bareLatency(latIters));
    await comm.barrier();
    lat.bareAsync.push(await asyncLatency(bareSend, bareRecv, latIters));
    await comm.barrier();
    lat.port.push(await asyncLatency(portSend, portRecv, latIters));
    await comm.barrier();
    lat.vm.push(await asyncLatency(vmSend, vmRecv, latIters));
  }

  const bwIters = quick ? 4 : 8;
  await warm(() => bareBandwidth(1));
  await warm(() => portBandwidth(1));
  await warm(() => vmBandwidth(1));
  const bw = { bare: [] as number[], port: [] as number[], vm: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    await comm.barrier();
    bw.bare.push(bareBandwidth(bwIters));
    await comm.barrier();
    bw.port.push(await portBandwidth(bwIters));
    await comm.barrier();
    bw.vm.push(await vmBandwidth(bwIters));
  }

  if (comm.rank === 0) {
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
    const spread = (xs: number[]) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;
    const typical = (ls: Lat[]) => median(ls.flatMap((l) => l.blocks));
    const mean = (ls: Lat[]) => ls.reduce((s, l) => s + l.totalNs, 0) / ls.reduce((s, l) => s + l.iters, 0) / 1e3 / 2;
    const lrow = (name: string, ls: Lat[]) => `    ${name.padEnd(22)} typical ${typical(ls).toFixed(3)} µs, mean ${mean(ls).toFixed(3)} µs (round typicals ${spread(ls.map((l) => median(l.blocks)))})`;
    const brow = (name: string, xs: number[]) => `    ${name.padEnd(22)} ${median(xs).toFixed(0)} MB/s (${xs.map((x) => x.toFixed(0)).join(', ')})`;
    console.log(`threads backend vs a bare SAB spin ring and a MessagePort, same two worker threads, ${ROUNDS} interleaved rounds`);
    console.log(`  (${availableParallelism()} cores, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}: spinning baselines suffer most from other load)`);
    console.log(`  8 B half round trip (typical = median of ${BLOCK}-iteration blocks):`);
    console.log(lrow('bare SAB spin ring', lat.bare));
    console.log(lrow('bare ring, awaited', lat.bareAsync));
    console.log(lrow('MessagePort', lat.port));
    console.log(lrow('vmcomm threads', lat.vm));
    console.log(`    ratio vmcomm/bare typical ${(typical(lat.vm) / typical(lat.bare)).toFixed(2)}, vmcomm/bare-awaited ${(typical(lat.vm) / typical(lat.bareAsync)).toFixed(2)} (target ≤ 1.5)`);
    console.log(`  1 MiB bandwidth (window ${WINDOW}, 4-byte ack; median of rounds):`);
    console.log(brow('bare SAB spin ring', bw.bare));
    console.log(brow('MessagePort (copies)', bw.port));
    console.log(brow('vmcomm threads', bw.vm));
    console.log(`    ratio vmcomm/bare ${(median(bw.vm) / median(bw.bare)).toFixed(2)}, vmcomm/MessagePort ${(median(bw.vm) / median(bw.port)).toFixed(2)}`);
  }
  port.close();
  await comm.finalize();
}
