// Helpers for the ring tests: regions, headers, a sink that records what it got, and TypeScript modules
// run in real worker threads (ts-node's ESM hooks registered inside the worker).
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { FrameSink } from '../../backend.js';
import { emptyHeader, encodeHeader, FRAME_HEADER_BYTES, frameLength } from '../../protocol.js';
import type { Region } from '../region.js';
import { initRing, RING_HEADER_BYTES, ringDataBytes, ringRegionBytes } from '../spsc-ring.js';

export const ROOT = path.resolve(import.meta.dirname, '../../..');

/** A fresh ring region of `dataBytes` at offset 64 of its own buffer (offset 0 is never special). */
export function ringRegion(dataBytes: number): Region {
  const byteLength = ringRegionBytes(dataBytes);
  const region = { sab: new SharedArrayBuffer(64 + byteLength + 64), byteOffset: 64, byteLength };
  initRing(region);
  return region;
}

/** Moves a fresh ring's head and tail to stream position `at` (as if `at` bytes had passed). */
export function startAt(region: Region, at: number): void {
  const ctl = new Int32Array(region.sab, region.byteOffset, 128);
  Atomics.store(ctl, 32, at | 0);
  Atomics.store(ctl, 64, at | 0);
  // A stream that got to `at` left the next record's stamp word clear.
  const dataBytes = ringDataBytes(region.byteLength);
  new Int32Array(region.sab, region.byteOffset + RING_HEADER_BYTES + (at & (dataBytes - 1)), 1)[0] = 0;
}

/** A header announcing `payloadBytes`, with `tag` = `id` so frames can be told apart. */
export function header(payloadBytes: number, id = 0): Uint8Array {
  return encodeHeader({ ...emptyHeader(), tag: id, payloadBytes, messageBytes: payloadBytes }, new Uint8Array(FRAME_HEADER_BYTES));
}

/** Payload bytes that depend on `seed`. */
export function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed * 31 + (i >> 8)) & 0xff;
  return b;
}

export interface Received {
  peer: number;
  id: number;
  length: number;
  data: Uint8Array;
}

/**
 * A sink that records frames. `targetFor(length)` chooses the target: default a buffer of the frame's
 * length; return a shorter buffer or undefined to test discarding.
 */
export function recordingSink(targetFor: (length: number) => Uint8Array | undefined = (n) => new Uint8Array(n)): FrameSink & {
  frames: Received[];
  begins: number;
  losses: Error[];
} {
  let current: Received | undefined;
  const sink = {
    frames: [] as Received[],
    begins: 0,
    losses: [] as Error[],
    begin(peer: number, h: Uint8Array): Uint8Array | undefined {
      if (current !== undefined) throw new Error('begin before commit');
      sink.begins++;
      const length = frameLength(h);
      const id = new DataView(h.buffer, h.byteOffset, FRAME_HEADER_BYTES).getInt32(12, true);
      const target = targetFor(length);
      current = { peer, id, length, data: target ?? new Uint8Array(0) };
      return target;
    },
    commit(peer: number): void {
      if (current === undefined || current.peer !== peer) throw new Error('commit without begin');
      sink.frames.push(current);
      current = undefined;
    },
    lost(_peer: number, error: Error): void {
      sink.losses.push(error);
    },
  };
  return sink;
}

/** Runs the TypeScript module `file` (relative to the repository) in a worker; resolves with its message. */
export function runTsWorker<T>(file: string, workerData: unknown): { result: Promise<T>; worker: Worker } {
  const code = `
    const { register } = require('node:module');
    const { workerData } = require('node:worker_threads');
    register('ts-node/esm', workerData.parent);
    import(workerData.module);
  `;
  const worker = new Worker(code, {
    eval: true,
    workerData: { parent: pathToFileURL(ROOT + path.sep).href, module: pathToFileURL(path.join(ROOT, file)).href, data: workerData },
    env: { ...process.env, TS_NODE_TRANSPILE_ONLY: 'true', TS_NODE_PROJECT: path.join(ROOT, 'tsconfig.json') },
  });
  const result = new Promise<T>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`worker exited with ${code} before answering`)));
  });
  return { result, worker };
}
