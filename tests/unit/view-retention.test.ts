/**
 * The communicator remembers the last views it checked (so a message loop does not read
 * `view.buffer` per message), but never keeps a large buffer alive: a program that sent from a big
 * buffer once and dropped it gets the memory back.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Communicator } from '../../lib/communicator.js';
import { createLocalJob } from '../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../lib/start-world.js';
import { memory } from '../helpers/memory-transport.js';
import { within } from '../helpers/settle.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let worlds: Communicator[] = [];
afterEach(async () => {
  const all = worlds;
  worlds = [];
  await Promise.all(all.map((c) => within(c.finalize(), 5000)));
});

async function collected(ref: WeakRef<object>): Promise<boolean> {
  for (let i = 0; i < 10 && ref.deref() !== undefined; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
  }
  return ref.deref() === undefined;
}

describe('views remembered by the argument checks', () => {
  it('a non-view checked before two views were remembered is INVALID_ARGUMENT, never a TypeError', async () => {
    // A fresh copy of the modules: both remembered slots still hold `undefined`.
    vi.resetModules();
    const { createLocalJob: job } = await import('../../lib/local-bootstrap.js');
    const { initWithBootstrap: start } = await import('../../lib/start-world.js');
    const { memory: mem } = await import('../helpers/memory-transport.js');
    const [b0, b1] = job(2);
    worlds = await Promise.all([start(b0, { backends: [mem()] }), start(b1, { backends: [mem()] })]);
    const [a] = worlds;
    const r = a.isendBuffer(undefined as never, 1);
    await expect(r).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(a.sendBuffer(undefined as never, 1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(a.irecvBuffer(undefined as never, 1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('a large buffer sent from and received into once can be collected', async () => {
    const [b0, b1] = createLocalJob(2);
    worlds = await Promise.all([initWithBootstrap(b0, { backends: [memory()] }), initWithBootstrap(b1, { backends: [memory()] })]);
    const [a, b] = worlds;
    const refs = await (async () => {
      const out = new Float64Array(1 << 19).fill(7); // 4 MiB
      const into = new Float64Array(1 << 19);
      await Promise.all([a.sendBuffer(out, 1, 1), b.recvBuffer(into, 0, 1)]);
      expect(into[12345]).toBe(7);
      return [new WeakRef(out.buffer), new WeakRef(into.buffer)];
    })();
    expect(await collected(refs[0])).toBe(true);
    expect(await collected(refs[1])).toBe(true);
  });

  it('checks stay right when small remembered views and large unremembered ones alternate', async () => {
    const [b0, b1] = createLocalJob(2);
    worlds = await Promise.all([initWithBootstrap(b0, { backends: [memory()] }), initWithBootstrap(b1, { backends: [memory()] })]);
    const [a, b] = worlds;
    const small = new Uint8Array(8).fill(1);
    const got = new Uint8Array(8);
    for (let i = 0; i < 3; i++) {
      await Promise.all([a.sendBuffer(small, 1, 1), b.recvBuffer(got, 0, 1)]);
      await Promise.all([a.sendBuffer(new Uint8Array(2 << 20), 1, 2), b.recvBuffer(new Uint8Array(2 << 20), 0, 2)]);
    }
    const resizable = new Uint8Array(new ArrayBuffer(8, { maxByteLength: 16 }));
    await expect(a.sendBuffer(resizable, 1, 1)).rejects.toThrow(/resizable/);
  });

  it('remembered views send and receive their own bytes, whatever their type and offset', async () => {
    const [b0, b1] = createLocalJob(2);
    worlds = await Promise.all([initWithBootstrap(b0, { backends: [memory()] }), initWithBootstrap(b1, { backends: [memory()] })]);
    const [a, b] = worlds;
    // Two views at offsets into larger buffers, checked alternately: from the second round on, both
    // come from the remembered slots (one each), so a slot mixed up sends or fills the wrong bytes.
    const from = new Float64Array(new ArrayBuffer(64), 16, 2);
    const intoBuffer = new ArrayBuffer(40);
    const into = new Float64Array(intoBuffer, 8, 2);
    for (let i = 0; i < 4; i++) {
      from.set([i + 0.5, -i]);
      new Uint8Array(intoBuffer).fill(0xee);
      await Promise.all([a.sendBuffer(from, 1, 1), b.recvBuffer(into, 0, 1)]);
      expect([...into]).toEqual([i + 0.5, -i]);
      expect([...new Uint8Array(intoBuffer, 0, 8), ...new Uint8Array(intoBuffer, 24, 16)].every((x) => x === 0xee)).toBe(true);
    }
    // A DataView at an offset and a plain Uint8Array, remembered in turn.
    const dv = new DataView(new ArrayBuffer(24), 8, 8);
    const got = new Uint8Array(8);
    for (let i = 0; i < 3; i++) {
      dv.setFloat64(0, 3.75 + i, true);
      await Promise.all([a.sendBuffer(dv, 1, 2), b.recvBuffer(got, 0, 2)]);
      expect(new DataView(got.buffer).getFloat64(0, true)).toBe(3.75 + i);
    }
  });

  it('a remembered view whose buffer was transferred away since is refused, typed arrays and DataViews alike', async () => {
    const [b0, b1] = createLocalJob(2);
    worlds = await Promise.all([initWithBootstrap(b0, { backends: [memory()] }), initWithBootstrap(b1, { backends: [memory()] })]);
    const [a, b] = worlds;
    const src = new Uint8Array(8).fill(3);
    const dst = new Uint8Array(8);
    const view = new DataView(new ArrayBuffer(8));
    for (let i = 0; i < 2; i++) {
      await Promise.all([a.sendBuffer(view, 1, 2), b.recvBuffer(new Uint8Array(8), 0, 2)]);
      await Promise.all([a.sendBuffer(src, 1, 1), b.recvBuffer(dst, 0, 1)]);
    }
    // `src` and `dst` are the two views checked last: remembered.
    structuredClone(src.buffer, { transfer: [src.buffer] });
    structuredClone(dst.buffer, { transfer: [dst.buffer] });
    structuredClone(view.buffer, { transfer: [view.buffer] });
    const detached = { code: 'INVALID_ARGUMENT', message: expect.stringMatching(/detached/) };
    await expect(a.sendBuffer(src, 1, 1)).rejects.toMatchObject(detached);
    await expect(b.recvBuffer(dst, 0, 1)).rejects.toMatchObject(detached);
    await expect(a.sendBuffer(view, 1, 2)).rejects.toMatchObject(detached);
    // DataViews remembered last (this realm's and another's) whose buffers go away.
    const other = runInNewContext('new DataView(new ArrayBuffer(8))') as DataView;
    for (const v of [new DataView(new ArrayBuffer(8)), other]) {
      const into = new DataView(new ArrayBuffer(8));
      await Promise.all([a.sendBuffer(v, 1, 3), b.recvBuffer(into, 0, 3)]);
      structuredClone(v.buffer, { transfer: [v.buffer as ArrayBuffer] });
      structuredClone(into.buffer, { transfer: [into.buffer] });
      await expect(a.sendBuffer(v, 1, 3)).rejects.toMatchObject(detached);
      await expect(b.recvBuffer(into, 0, 3)).rejects.toMatchObject(detached);
    }
  });
});
