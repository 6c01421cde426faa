// Runs in a worker thread (see lib/ring/test/helpers.ts): rank 1 of a two-rank threads job whose
// rank 0 lives on the test's thread. Posts its card fields, proves rank 0, receives one frame and
// answers with a 3-byte frame, then reports what it saw.
import { hostname } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { CardFields, FrameSink } from '../../../lib/backend.js';
import { emptyHeader, encodeHeader, FRAME_HEADER_BYTES, frameLength } from '../../../lib/protocol.js';
import { threads } from '../index.js';

const { jobId, peerFields } = (workerData as { data: { jobId: string; peerFields: CardFields } }).data;
const got: number[] = [];
let target = new Uint8Array(0);
let delivered!: () => void;
const arrived = new Promise<void>((resolve) => (delivered = resolve));
const sink: FrameSink = {
  begin: (_peer, h) => (target = new Uint8Array(frameLength(h))),
  commit: () => {
    got.push(target.byteLength, target.reduce((x, y) => (x + y) % 65_521, 0));
    delivered();
  },
  lost: () => undefined,
};
const keepAlive = setInterval(() => undefined, 1000);
const t = threads({ ringBytes: 65536 })({ rank: 1, size: 2, jobId, jobSecret: new Uint8Array(32), processNonce: 'w', address: '127.0.0.1', sink });
const fields = await t.start();
parentPort!.postMessage({ card: fields });
const probed = await t.probe({ rank: 0, processNonce: 'p', hostname: hostname(), pid: process.pid, address: '127.0.0.1', backends: { threads: peerFields }, priorities: { threads: 80 } });
t.addPeers([0]);
await arrived;
const channel = await t.connect(0);
channel.send(encodeHeader({ ...emptyHeader(), payloadBytes: 3, messageBytes: 3 }, new Uint8Array(FRAME_HEADER_BYTES)), new Uint8Array(3));
await channel.close();
parentPort!.postMessage({ probed, got });
await t.stop();
clearInterval(keepAlive);
