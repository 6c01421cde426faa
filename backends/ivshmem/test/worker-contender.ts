// Runs in a worker thread (see contention.test.ts): one of N contenders on one region. Claims two
// slots, meets the others at a barrier, then allocates and releases rings between its two members as
// fast as it can, marking each block it holds in a shared owner table with a compare-and-swap: a
// block handed to two contenders at once shows up as a failed mark. Reports what it saw.
import { parentPort, workerData } from 'node:worker_threads';
import type { Region } from '../../../lib/ring/region.js';
import { RING_HEADER_BYTES } from '../../../lib/ring/spsc-ring.js';
import type { RingBlock } from '../allocator.js';
import { IvshmemRegion } from '../region.js';

interface Data {
  region: Region;
  control: SharedArrayBuffer;
  owners: SharedArrayBuffer;
  worker: number;
  workers: number;
  iterations: number;
  hold: number;
}
const d = (workerData as { data: Data }).data;
const ctl = new Int32Array(d.control);
const owners = new Int32Array(d.owners);
const me = d.worker + 1;

function id(seed: number): Uint8Array {
  const b = new Uint8Array(16);
  for (let i = 0; i < 16; i++) b[i] = (seed * 131 + i * 17 + 1) & 0xff;
  return b;
}

/** Waits (bounded) until word `at` reaches `value`. */
function waitFor(at: number, value: number): void {
  const deadline = Date.now() + 30_000;
  for (let seen = Atomics.load(ctl, at); seen < value; seen = Atomics.load(ctl, at)) {
    if (Date.now() > deadline) throw new Error(`barrier ${at} stuck at ${seen} of ${value}`);
    Atomics.wait(ctl, at, seen, 50);
  }
}

function arrive(at: number): void {
  Atomics.add(ctl, at, 1);
  Atomics.notify(ctl, at);
}

const region = IvshmemRegion.open(d.region);
const job = id(1000);
arrive(3);
waitFor(0, 1);
const a = region.join({ job, nonce: id(2 * d.worker), rank: 2 * d.worker });
const b = region.join({ job, nonce: id(2 * d.worker + 1), rank: 2 * d.worker + 1 });
arrive(1);
waitFor(1, d.workers);
// Every slot is taken now: one more claim must fail.
const extra = d.worker === 0 ? region.join({ job, nonce: id(9999), rank: 9999 }) : undefined;
arrive(2);
waitFor(2, d.workers);

let allocations = 0;
let full = 0;
let doubles = 0;
let clobbered = 0;
const held: RingBlock[] = [];
let seed = d.worker * 7919 + 1;
const random = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;

function letGo(ring: RingBlock): void {
  const words = new Int32Array(ring.region.sab, ring.region.byteOffset + RING_HEADER_BYTES, 2);
  if (Atomics.load(words, 0) !== me) clobbered++;
  if (Atomics.compareExchange(owners, ring.index, me, 0) !== me) doubles++;
  if (!a!.releaseRing(ring)) doubles++;
  if (!b!.releaseRing(ring)) doubles++;
}

const started = performance.now();
if (a !== undefined && b !== undefined) {
  for (let i = 0; i < d.iterations; i++) {
    const [from, to] = random() < 0.5 ? [a, b] : [b, a];
    const ring = region.rings.allocate(from.ref, to.ref);
    if (ring === undefined) full++;
    else {
      allocations++;
      if (Atomics.compareExchange(owners, ring.index, 0, me) !== 0) doubles++;
      Atomics.store(new Int32Array(ring.region.sab, ring.region.byteOffset + RING_HEADER_BYTES, 2), 0, me);
      held.push(ring);
    }
    while (held.length > d.hold || (held.length > 0 && random() < 0.3)) letGo(held.splice(Math.floor(random() * held.length), 1)[0]);
  }
  while (held.length > 0) letGo(held.pop()!);
}
const slots = [a?.ref.slot, b?.ref.slot];
const finalized = [a?.finalize(), b?.finalize()];
const loopMs = performance.now() - started;
parentPort!.postMessage({ loopMs, slots, extra: extra === undefined ? null : extra.ref.slot, allocations, full, doubles, clobbered, finalized });
