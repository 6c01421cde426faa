// onThreadEnd (src/thread-end.cc): a store the addon makes for a thread whose environment is torn
// down without JavaScript's help (a terminated worker), unless withdrawn; and its argument checks.
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { addon, ensureDist, native, ROOT } from './helpers.js';

/** A worker that registers `onThreadEnd(sab, 4 * word, 1, 3)` (and cancels it when `cancel`), says so, and idles. */
async function registering(sab: SharedArrayBuffer, word: number, cancel: boolean): Promise<Worker> {
  const nativeJs = path.join(ROOT, 'dist/backends/native/native.js');
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     import(${JSON.stringify(nativeJs)}).then(({ loadNative }) => {
       const a = loadNative();
       const id = a.onThreadEnd(workerData.sab, 4 * workerData.word, 1, 3);
       if (workerData.cancel) a.cancelOnThreadEnd(id);
       setInterval(() => {}, 1000);
       parentPort.postMessage('ready');
     });`,
    { eval: true, workerData: { sab, word, cancel } },
  );
  await new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return worker;
}

describe.skipIf(addon === undefined)('onThreadEnd', () => {
  beforeAll(ensureDist, 120_000);

  it('stores the value when a terminated worker is torn down, from the expected value only, and not once withdrawn', async () => {
    const sab = new SharedArrayBuffer(16);
    const words = new Int32Array(sab);
    words.set([1, 1, 2, 0]);
    const workers = [await registering(sab, 0, false), await registering(sab, 1, true), await registering(sab, 2, false)];
    expect([...words]).toEqual([1, 1, 2, 0]);
    await Promise.all(workers.map((w) => w.terminate()));
    // 0: registered, terminated → 3. 1: withdrawn → unchanged. 2: not the expected value → unchanged.
    expect([...words]).toEqual([3, 1, 2, 0]);
  });

  it('checks its arguments: a SharedArrayBuffer, an aligned word inside it, 32-bit values; cancel of an unknown id is false', () => {
    const a = native();
    const sab = new SharedArrayBuffer(8);
    expect(() => a.onThreadEnd(new ArrayBuffer(8) as unknown as SharedArrayBuffer, 0, 1, 3)).toThrow(TypeError);
    expect(() => a.onThreadEnd(sab, 2, 1, 3)).toThrow(RangeError);
    expect(() => a.onThreadEnd(sab, 8, 1, 3)).toThrow(RangeError);
    expect(() => a.onThreadEnd(sab, 0, 2 ** 31, 3)).toThrow(RangeError);
    const id = a.onThreadEnd(sab, 4, 1, 3);
    expect(a.cancelOnThreadEnd(id)).toBe(true);
    expect(a.cancelOnThreadEnd(id)).toBe(false);
  });
});
