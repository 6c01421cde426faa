// Runs in a worker thread (see helpers.ts): announces `count` descriptors (a u32 sequence number
// each) into an inbox, retrying while it is full, then answers 'done'.
import { parentPort, workerData } from 'node:worker_threads';
import { InboxSender } from '../inbox.js';
import type { Region } from '../region.js';

const { region, from, count } = (workerData as { data: { region: Region; from: number; count: number } }).data;
const inbox = new InboxSender(region);
const d = new Uint8Array(8);
const view = new DataView(d.buffer);
const deadline = Date.now() + 60_000;
let i = 0;
while (i < count && Date.now() < deadline) {
  view.setUint32(0, i, true);
  if (inbox.announce(from, d)) i++;
  else await new Promise((r) => setImmediate(r));
}
parentPort!.postMessage(i === count ? 'done' : `stopped at ${i}`);
