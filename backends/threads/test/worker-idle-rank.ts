// Runs in a worker thread (see lib/ring/test/helpers.ts): rank 1 of a two-rank threads job whose
// rank 0 lives on the test's thread. Posts its card fields, proves rank 0, then reads nothing (no
// addPeers, so no poller) and runs until it is terminated (the test then checks what its peer sees).
import { hostname } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { CardFields } from '../../../lib/backend.js';
import { threads } from '../index.js';

const { jobId, peerFields } = (workerData as { data: { jobId: string; peerFields: CardFields } }).data;
setInterval(() => undefined, 1000);
const t = threads()({
  rank: 1,
  size: 2,
  jobId,
  jobSecret: new Uint8Array(32),
  processNonce: 'w',
  address: '127.0.0.1',
  sink: { begin: () => undefined, commit: () => undefined, lost: () => undefined },
});
const fields = await t.start();
parentPort!.postMessage({ card: fields });
const probed = await t.probe({ rank: 0, processNonce: 'p', hostname: hostname(), pid: process.pid, address: '127.0.0.1', backends: { threads: peerFields }, priorities: { threads: 80 } });
parentPort!.postMessage({ probed });
