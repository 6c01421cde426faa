// Single copy between thread-ranks (pins.ts over lib/ring/single-copy-*.ts; the protocol itself is
// tested in lib/ring/test/single-copy.test.ts): worker-thread ranks as `vmcomm run --threads` starts
// them, with single copy and without; and worlds of this thread, where the sizes, the threshold, a
// receive buffer too small and the messages behind a large one are checked.
import { beforeAll, describe, expect, it } from 'vitest';
import type { BackendComponents } from '../../../lib/backend.js';
import type { Communicator } from '../../../lib/communicator.js';
import { createLocalJob } from '../../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../../lib/start-world.js';
import { pattern, same } from '../../../tests/helpers/bytes.js';
import { lines, vmcomm } from '../../../tests/helpers/processes.js';
import { ensureDist } from '../../shm/test/helpers.js';
import { tryLoadNative } from '../../native/native.js';
import { parseThreadsInit, threads, type ThreadsInit, type ThreadsTransport } from '../index.js';

const addon = tryLoadNative().addon;

/** Two worlds on this thread over threads only, with a hold on each rank's transport. */
async function job(init: ThreadsInit = {}): Promise<{ comms: Communicator[]; transports: ThreadsTransport[] }> {
  const transports: ThreadsTransport[] = [];
  const base = threads({ allowSameThread: true, ...init });
  const factory = Object.assign((c: BackendComponents) => (transports[c.rank] = base(c) as ThreadsTransport), { transportName: 'threads' as const });
  const comms = await Promise.all(createLocalJob(2).map((bootstrap) => initWithBootstrap(bootstrap, { backends: [factory], only: ['threads'] })));
  return { comms, transports };
}

describe('threads single copy: options', () => {
  it('is on by default from 64 KiB; singleCopy must be a boolean and singleCopyMinBytes a positive integer', () => {
    expect(parseThreadsInit()).toMatchObject({ singleCopy: true, singleCopyMinBytes: 64 * 1024 });
    for (const bad of [{ singleCopy: 1 }, { singleCopyMinBytes: 0 }, { singleCopyMinBytes: 1.5 }]) {
      expect(() => parseThreadsInit(bad as ThreadsInit), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });
});

describe.skipIf(addon === undefined)('threads single copy', () => {
  beforeAll(ensureDist, 120_000);

  it('between worker-thread ranks: single copy (both threads copying) by default, the ring with singleCopy: false; the data arrives either way', async () => {
    const fixture = 'tests/fixtures/shm/cma-pair.mjs';
    const env = { ...process.env, VMCOMM_TEST_BACKEND: 'threads' };
    const on = await vmcomm(['run', '--threads', '-n', '2', fixture], env);
    expect(on.stderr).toBe('');
    expect(on.code).toBe(0);
    const off = await vmcomm(['run', '--threads', '-n', '2', fixture], { ...env, VMCOMM_TEST_SHM: '{"singleCopy":false}' });
    expect(off.stderr).toBe('');
    expect(off.code).toBe(0);
    for (const line of lines(on.stdout)) expect(line).toMatch(/threads ok, .*\{"sent":3,"fallbacks":0,"reads":3,"refusals":0,"helped":3\}/);
    for (const line of lines(off.stdout)) expect(line).toMatch(/threads ok, .*\{"sent":0,"fallbacks":0,"reads":0,"refusals":0,"helped":0\}/);
    expect(lines(on.stdout)).toHaveLength(2);
    expect(lines(off.stdout)).toHaveLength(2);
  }, 60_000);

  it('moves payloads from the threshold up by single copy, smaller ones through the ring, each intact and in order', async () => {
    const { comms, transports } = await job({ singleCopyMinBytes: 100_000 });
    try {
      const sizes = [99_999, 100_000, 3 * 1024 * 1024 + 1, 5 * 1024 * 1024 + 7, 10];
      const intos = sizes.map((n) => new Uint8Array(n));
      const receives = intos.map((into) => comms[1].irecvBuffer(into, 0, 4));
      await Promise.all(sizes.map((n, i) => comms[0].sendBuffer(pattern(n, i), 1, 4)));
      const statuses = await Promise.all(receives);
      statuses.forEach((s, i) => expect(s.bytes).toBe(sizes[i]));
      intos.forEach((into, i) => expect(same(into, pattern(sizes[i], i)), `message ${i} of ${sizes[i]} bytes`).toBe(true));
      expect(transports[0].singleCopyCounts).toMatchObject({ sent: 3 });
      // Both threads copied a half of each: the sender wrote the second half into the receive buffer.
      expect(transports[1].singleCopyCounts).toMatchObject({ descriptors: 3, reads: 3, helped: 3, bytesRead: 100_000 + 3 * 1024 * 1024 + 1 + 5 * 1024 * 1024 + 7 });
    } finally {
      await Promise.all(comms.map((c) => c.finalize()));
    }
  });

  it('into a receive buffer too small: TRUNCATE with the bytes that fit, the sender completes, and the next message arrives', async () => {
    const { comms } = await job();
    try {
      const big = pattern(300_000, 3);
      const into = new Uint8Array(200_000);
      const r = comms[1].recvBuffer(into, 0, 1).then(
        () => undefined,
        (e: unknown) => e,
      );
      const next = comms[1].recv(0, 2);
      await comms[0].sendBuffer(big, 1, 1);
      await comms[0].send('after', 1, 2);
      expect(await r).toMatchObject({ code: 'TRUNCATE' });
      expect(same(into, big.subarray(0, 200_000))).toBe(true);
      expect(await next).toBe('after');
    } finally {
      await Promise.all(comms.map((c) => c.finalize()));
    }
  });
});
