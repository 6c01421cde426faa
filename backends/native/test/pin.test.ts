// Pins: single copy between threads of one process (src/pin.cc). The copies, their bounds, pins that
// outlive a transferred buffer, copies from another thread, and pins released when their thread ends.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { addon, ensureDist, native, ROOT } from './helpers.js';

/** A worker that pins a 1 MiB buffer of `fill`, posts the pin, and ends when told (or stays). */
function pinningWorker(fill: number): { worker: Worker; pin: Promise<number> } {
  const nativeJs = path.join(ROOT, 'dist/backends/native/native.js');
  const worker = new Worker(
    `const { parentPort } = require('node:worker_threads');
     import(${JSON.stringify(nativeJs)}).then(({ loadNative }) => {
       const buffer = new Uint8Array(1 << 20).fill(${fill});
       parentPort.postMessage(loadNative().pin(buffer));
       parentPort.on('message', () => process.exit(0));
     });`,
    { eval: true },
  );
  const pin = new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return { worker, pin };
}

describe.skipIf(addon === undefined)('pins', () => {
  beforeAll(ensureDist, 120_000);

  it('copies from and into a pinned view, at an offset, up to its end', () => {
    const a = native();
    const backing = new Uint8Array(64).map((_, i) => i);
    const view = backing.subarray(8, 40); // 32 bytes, 8 in
    const pin = a.pin(view);
    try {
      expect(pin).toBeGreaterThanOrEqual(1);
      const into = new Uint8Array(10);
      expect(a.copyFromPin(pin, 4, into)).toBe(10);
      expect([...into]).toEqual([12, 13, 14, 15, 16, 17, 18, 19, 20, 21]);
      // Fewer bytes when the pin ends first; none at its end.
      expect(a.copyFromPin(pin, 28, into)).toBe(4);
      expect([...into.subarray(0, 4)]).toEqual([36, 37, 38, 39]);
      expect(a.copyFromPin(pin, 32, into)).toBe(0);
      expect(a.copyToPin(pin, 30, new Uint8Array([200, 201, 202]))).toBe(2);
      expect([...backing.subarray(37, 41)]).toEqual([37, 200, 201, 40]); // the view ends at 40
    } finally {
      expect(a.unpin(pin)).toBe(true);
    }
    expect(a.unpin(pin)).toBe(false);
  });

  it('refuses an offset beyond the pin (EFAULT), an unknown pin (ESRCH) and bad arguments', () => {
    const a = native();
    const pin = a.pin(new Uint8Array(16));
    try {
      expect(() => a.copyFromPin(pin, 17, new Uint8Array(1))).toThrow(expect.objectContaining({ code: 'EFAULT' }));
      expect(() => a.copyToPin(pin, 2 ** 40, new Uint8Array(1))).toThrow(expect.objectContaining({ code: 'EFAULT' }));
    } finally {
      a.unpin(pin);
    }
    expect(() => a.copyFromPin(pin, 0, new Uint8Array(1))).toThrow(expect.objectContaining({ code: 'ESRCH' }));
    // A number with the right slot but another tag names nothing (a corrupt handle cannot hit a live pin).
    const live = a.pin(new Uint8Array(16));
    try {
      expect(live).toBeGreaterThan(2 ** 32);
      expect(() => a.copyFromPin(live % 2 ** 32, 0, new Uint8Array(1))).toThrow(expect.objectContaining({ code: 'ESRCH' }));
      expect(a.unpin(live % 2 ** 32)).toBe(false);
      expect(a.copyFromPin(live, 0, new Uint8Array(1))).toBe(1);
    } finally {
      expect(a.unpin(live)).toBe(true);
    }
    expect(() => a.copyFromPin(0, 0, new Uint8Array(1))).toThrow(RangeError);
    expect(() => a.copyFromPin(2 ** 53, 0, new Uint8Array(1))).toThrow(RangeError);
    expect(() => a.copyFromPin(1.5, 0, new Uint8Array(1))).toThrow(RangeError);
    expect(() => a.copyFromPin(1, -1, new Uint8Array(1))).toThrow(RangeError);
    expect(() => a.pin({} as Uint8Array)).toThrow(TypeError);
    expect(() => a.copyFromPin(1, 0, [] as unknown as Uint8Array)).toThrow(TypeError);
  });

  it('refuses a view over a resizable buffer (its memory could shrink under a copy)', () => {
    const Resizable = ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer;
    let buffer: ArrayBuffer;
    try {
      buffer = new Resizable(16, { maxByteLength: 64 });
    } catch {
      return; // this runtime has no resizable ArrayBuffer
    }
    if ((buffer as { resizable?: boolean }).resizable !== true) return;
    expect(() => native().pin(new Uint8Array(buffer))).toThrow(TypeError);
  });

  it('keeps the memory of a buffer transferred away while pinned', () => {
    const a = native();
    let buffer: ArrayBuffer | undefined = new Uint8Array(1 << 20).fill(7).buffer;
    const pin = a.pin(new Uint8Array(buffer, 1024));
    try {
      const moved = structuredClone(buffer, { transfer: [buffer] });
      expect(buffer.byteLength).toBe(0); // detached here
      buffer = undefined;
      new Uint8Array(moved).fill(9, 0, 2048); // the new owner writes the same memory
      const into = new Uint8Array(2048);
      expect(a.copyFromPin(pin, 0, into)).toBe(2048);
      expect(into[0]).toBe(9);
      expect(into[1023]).toBe(9);
      expect(into[1024]).toBe(7);
    } finally {
      a.unpin(pin);
    }
  });

  it('keeps pinned memory after its buffer was transferred away, dropped and collected (a child with --expose-gc)', () => {
    const nativeJs = path.join(ROOT, 'dist/backends/native/native.js');
    const script = `
      const { loadNative } = await import(${JSON.stringify(nativeJs)});
      const a = loadNative();
      let buffer = new Uint8Array(64 << 20).fill(0x5a).buffer;
      const pin = a.pin(new Uint8Array(buffer, 4096));
      let moved = structuredClone(buffer, { transfer: [buffer] });
      buffer = undefined;
      moved = undefined;
      for (let i = 0; i < 5; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)); }
      const garbage = Array.from({ length: 8 }, () => new Uint8Array(64 << 20).fill(0x11)); // reuse freed memory, if it was freed
      const into = new Uint8Array(64 << 20);
      const n = a.copyFromPin(pin, 0, into);
      let bad = 0;
      for (let i = 0; i < n; i += 4096) if (into[i] !== 0x5a) bad++;
      console.log(JSON.stringify({ n, bad, kept: garbage.length }));
      a.unpin(pin);`;
    const run = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ n: (64 << 20) - 4096, bad: 0, kept: 8 });
  }, 70_000);

  it("copies from another thread's pin, and fails with ESRCH once that thread ended", async () => {
    const a = native();
    const { worker, pin } = pinningWorker(5);
    const id = await pin;
    const into = new Uint8Array(1 << 20);
    expect(a.copyFromPin(id, 0, into)).toBe(1 << 20);
    expect(into.every((b) => b === 5)).toBe(true);
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.postMessage('exit');
    await exited;
    expect(() => a.copyFromPin(id, 0, into)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
  });

  it('releases the pins of a terminated worker too', async () => {
    const { worker, pin } = pinningWorker(3);
    const id = await pin;
    await worker.terminate();
    expect(() => native().copyToPin(id, 0, new Uint8Array(4))).toThrow(expect.objectContaining({ code: 'ESRCH' }));
  });
});
