// Runs in a worker thread (see helpers.ts): sends the frames it is given through a ring, flushing
// until all are in, then answers 'sent'.
import { parentPort, workerData } from 'node:worker_threads';
import type { Region } from '../region.js';
import { RingProducer } from '../spsc-ring.js';
import { bytes, header } from './helpers.js';

const { region, frames, seed } = (workerData as { data: { region: Region; frames: number[]; seed: number } }).data;
const p = new RingProducer(region);
frames.forEach((n, i) => p.send(header(n, i), bytes(n, seed + i), undefined));
const deadline = Date.now() + 60_000;
while (p.queued > 0 && Date.now() < deadline) {
  if (p.flush() === 0) await new Promise((r) => setImmediate(r));
}
parentPort!.postMessage(p.queued === 0 ? 'sent' : `stuck with ${p.queued} frames`);
