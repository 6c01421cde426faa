import { statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { addon, Child, ensureDist, FIXTURES, native, removeCreated, runFixture, shmPath } from './helpers.js';

afterEach(removeCreated);

describe.skipIf(addon === undefined)('lockFile / unlockFile', () => {
  beforeAll(ensureDist, 120_000);

  it('creates the lock file 0600 and returns an fd', () => {
    const file = shmPath('lock');
    const fd = native().lockFile(file, { exclusive: true, wait: false, create: true });
    expect(fd).toBeGreaterThan(2);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    native().unlockFile(fd);
  });

  it('returns -1 (non-blocking) while another process holds the lock, and the fd once it lets go', async () => {
    const file = shmPath('held');
    const holder = Child.fixture('lock-holder.mjs', [file, 'exclusive']);
    expect(Number((await holder.line('lock ')).split(' ')[1])).toBeGreaterThanOrEqual(0);

    expect(native().lockFile(file, { exclusive: true, wait: false, create: false })).toBe(-1);
    expect(native().lockFile(file, { exclusive: false, wait: false, create: false })).toBe(-1);

    holder.send('release');
    await holder.line('released');
    expect((await holder.finish()).code).toBe(0);
    const fd = native().lockFile(file, { exclusive: true, wait: false, create: false });
    expect(fd).toBeGreaterThanOrEqual(0);

    // Now the other way round: we hold it, a second process is refused.
    const refused = await runFixture('lock-holder.mjs', [file, 'shared']);
    expect(refused.stdout.trim()).toBe('lock -1');
    native().unlockFile(fd);
  });

  it('lets shared holders share, and conflicts between two opens in one process too', () => {
    const file = shmPath('shared');
    const a = native().lockFile(file, { exclusive: false, wait: false, create: true });
    const b = native().lockFile(file, { exclusive: false, wait: false, create: false });
    expect(a).toBeGreaterThanOrEqual(0);
    expect(b).toBeGreaterThanOrEqual(0);
    expect(native().lockFile(file, { exclusive: true, wait: false, create: false })).toBe(-1);
    native().unlockFile(a);
    native().unlockFile(b);
    const c = native().lockFile(file, { exclusive: true, wait: true, create: false }); // free now: no blocking
    expect(c).toBeGreaterThanOrEqual(0);
    native().unlockFile(c);
  });

  it('releases what a worker still holds when the worker is terminated', async () => {
    const file = shmPath('worker');
    const loader = pathToFileURL(path.join(FIXTURES, 'load-native.mjs')).href;
    // The worker takes the lock and stays alive (the interval) until it is terminated.
    const worker = new Worker(
      `setInterval(() => {}, 1000);
       import(${JSON.stringify(loader)}).then(({ addon }) => require('node:worker_threads').parentPort.postMessage(addon.lockFile(${JSON.stringify(file)}, { exclusive: true, wait: false, create: true })));`,
      { eval: true },
    );
    const fd = await new Promise<number>((resolve) => worker.once('message', resolve));
    expect(fd).toBeGreaterThanOrEqual(0);
    expect(native().lockFile(file, { exclusive: true, wait: false, create: false })).toBe(-1);
    await worker.terminate();
    const mine = native().lockFile(file, { exclusive: true, wait: false, create: false });
    expect(mine).toBeGreaterThanOrEqual(0);
    native().unlockFile(mine);
  });

  it('throws ENOENT without create, and EBADF for fds it did not hand out (never closing them)', () => {
    const file = shmPath('missing');
    expect(() => native().lockFile(file, { exclusive: true, wait: false, create: false })).toThrow(
      expect.objectContaining({ code: 'ENOENT', syscall: 'open', path: file }),
    );
    expect(() => native().unlockFile(0)).toThrow(expect.objectContaining({ code: 'EBADF', errno: 9 }));
    expect(() => native().unlockFile(1)).toThrow(expect.objectContaining({ code: 'EBADF' }));
    const fd = native().lockFile(file, { exclusive: true, wait: false, create: true });
    native().unlockFile(fd);
    expect(() => native().unlockFile(fd)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});
