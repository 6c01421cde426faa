import { truncateSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NativeWaiter, NativeWaitResult } from '../native.js';
import { addon, Child, ensureDist, FIXTURES, native, removeCreated, runFixture, shmPath } from './helpers.js';

afterEach(removeCreated);

const waiters: NativeWaiter[] = [];
afterEach(() => {
  for (const waiter of waiters.splice(0)) waiter.close();
});

function newWaiter(): NativeWaiter {
  const waiter = native().createWaiter();
  waiters.push(waiter);
  return waiter;
}

/** Arms `waiter` and resolves with the result its callback gets. */
function waitFor(waiter: NativeWaiter, sab: SharedArrayBuffer, byteOffset: number, expected: number, timeoutMs: number): Promise<NativeWaitResult> {
  return new Promise((resolve) => waiter.wait(sab, byteOffset, expected, timeoutMs, resolve));
}

/** Wakes the word until one waiter was woken (the waiter thread was asleep in the kernel). */
async function wakeOne(sab: SharedArrayBuffer, byteOffset: number): Promise<void> {
  while (native().futexWake(sab, byteOffset, 1) === 0) await nextTurn();
}

interface WorkerMessage {
  armed?: boolean;
  address?: string;
  cma?: boolean;
  mechanism?: string;
  result?: NativeWaitResult;
  errno?: number;
  value?: number;
}

/** A worker running fixtures/worker-waiter.mjs, with its messages in order. */
function startWorker(workerData: object, env?: NodeJS.ProcessEnv) {
  const worker = new Worker(path.join(FIXTURES, 'worker-waiter.mjs'), { workerData, ...(env ? { env } : {}) });
  const messages: WorkerMessage[] = [];
  const wanted: ((m: WorkerMessage) => void)[] = [];
  worker.on('message', (m: WorkerMessage) => (wanted.length > 0 ? wanted.shift()!(m) : messages.push(m)));
  const errors: Error[] = [];
  worker.on('error', (e) => errors.push(e));
  const next = () => (messages.length > 0 ? Promise.resolve(messages.shift()!) : new Promise<WorkerMessage>((resolve) => wanted.push(resolve)));
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
  return { worker, next, exited, errors };
}

describe.skipIf(addon === undefined)('futexWake', () => {
  it('returns how many waiters it woke: none when nobody sleeps on the word', () => {
    const sab = new SharedArrayBuffer(16);
    expect(native().futexWake(sab, 0, 1)).toBe(0);
    expect(native().futexWake(sab, 12, Infinity)).toBe(0);
  });

  it('wakes an Atomics.wait-style sleeper of this process too (shared futex on any SAB)', async () => {
    const sab = new SharedArrayBuffer(8);
    const waiter = newWaiter();
    const result = waitFor(waiter, sab, 4, 0, -1);
    await wakeOne(sab, 4);
    expect(await result).toBe('woken');
  });
});

describe.skipIf(addon === undefined)('NativeWaiter', () => {
  beforeAll(ensureDist, 120_000);

  it('reports futex_waitv on a kernel that has it', () => {
    const waiter = newWaiter();
    expect(['futex_waitv', 'futex']).toContain(waiter.mechanism);
    const [major, minor] = os.release().split('.').map(Number);
    if (major > 5 || (major === 5 && minor >= 16)) expect(waiter.mechanism).toBe('futex_waitv');
  });

  it("ends with 'not-equal' when the word already differs", async () => {
    const sab = new SharedArrayBuffer(8);
    new Int32Array(sab)[1] = 5;
    expect(await waitFor(newWaiter(), sab, 4, 4, -1)).toBe('not-equal');
  });

  it("ends with 'timed-out' when nothing happens", async () => {
    expect(await waitFor(newWaiter(), new SharedArrayBuffer(4), 0, 0, 20)).toBe('timed-out');
    expect(await waitFor(newWaiter(), new SharedArrayBuffer(4), 0, 0, 0)).toBe('timed-out');
  });

  it("ends with 'cancelled', and the event loop runs while the thread sleeps", async () => {
    const waiter = newWaiter();
    const order: string[] = [];
    const done = new Promise<void>((resolve) =>
      waiter.wait(new SharedArrayBuffer(4), 0, 0, -1, (result) => {
        order.push(result);
        resolve();
      }),
    );
    setTimeout(() => {
      order.push('timer');
      waiter.cancel();
    }, 10);
    await done;
    expect(order).toEqual(['timer', 'cancelled']);
  });

  it('cancels a wait the thread has not picked up yet', async () => {
    const waiter = newWaiter();
    const result = waitFor(waiter, new SharedArrayBuffer(4), 0, 0, -1);
    waiter.cancel();
    expect(await result).toBe('cancelled');
    // And the waiter is reusable afterwards.
    expect(await waitFor(waiter, new SharedArrayBuffer(4), 0, 1, -1)).toBe('not-equal');
  });

  it('allows one wait at a time (EBUSY), re-arming from the callback, and nothing after close (EBADF)', async () => {
    const waiter = newWaiter();
    const sab = new SharedArrayBuffer(4);
    const results: NativeWaitResult[] = [];
    const chained = new Promise<void>((resolve) =>
      waiter.wait(sab, 0, 1, -1, (first) => {
        results.push(first);
        waiter.wait(sab, 0, 0, 5, (second) => {
          results.push(second);
          resolve();
        });
      }),
    );
    expect(() => waiter.wait(sab, 0, 0, -1, () => {})).toThrow(expect.objectContaining({ code: 'EBUSY', errno: 16 }));
    await chained;
    expect(results).toEqual(['not-equal', 'timed-out']);
    waiter.cancel(); // idle: a no-op
    waiter.close();
    waiter.close(); // idempotent
    waiter.cancel();
    expect(() => waiter.wait(sab, 0, 0, -1, () => {})).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });

  it('drops an armed wait on close without calling its callback', async () => {
    const waiter = newWaiter();
    const sab = new SharedArrayBuffer(4);
    let called = false;
    waiter.wait(sab, 0, 0, -1, () => (called = true));
    waiter.close();
    // Another waiter's full round trip through the loop: a stray callback would have run by then.
    expect(await waitFor(newWaiter(), sab, 0, 1, -1)).toBe('not-equal');
    expect(called).toBe(false);
  });

  it('runs several waiters at once, each on its own word', async () => {
    const sab = new SharedArrayBuffer(64);
    const pending = [0, 4, 8, 12].map((offset) => waitFor(newWaiter(), sab, offset, 0, -1));
    for (const offset of [12, 0, 8, 4]) await wakeOne(sab, offset);
    expect(await Promise.all(pending)).toEqual(['woken', 'woken', 'woken', 'woken']);
  });

  it("is woken by another process that maps the same file ('woken', then the value)", async () => {
    const file = shmPath('futex');
    const sab = native().createSharedFile(file, 4096);
    const result = waitFor(newWaiter(), sab, 8, 0, -1);
    const child = Child.fixture('futex-waker.mjs', [file, '8', '77']);
    expect(await result).toBe('woken');
    const out = await child.finish();
    expect(out.stderr).toBe('');
    expect(out.stdout.trim()).toBe('woke 1');
    expect(Atomics.load(new Int32Array(sab), 2)).toBe(77);
  });
});

describe.skipIf(addon === undefined)('NativeWaiter in worker threads (context-aware addon)', () => {
  beforeAll(ensureDist, 120_000);

  it('loads in a worker, which maps the same file at the same address and is woken from the main thread', async () => {
    const file = shmPath('worker');
    const sab = native().createSharedFile(file, 4096);
    const { next, exited, errors } = startWorker({ file });
    const armed = await next();
    expect(armed.armed).toBe(true);
    expect(BigInt(armed.address!)).toBe(native().addressOf(new Uint8Array(sab))); // one mapping per process
    Atomics.store(new Int32Array(sab), 1, 0);
    await wakeOne(sab, 0);
    const done = await next();
    expect(done.result).toBe('woken');
    expect(await exited).toBe(0);
    expect(errors).toEqual([]);
  });

  it('runs waiters in two workers and the main thread at once', async () => {
    const sab = new SharedArrayBuffer(4);
    const main = waitFor(newWaiter(), sab, 0, 0, -1);
    const workers = [startWorker({ sab }), startWorker({ sab })];
    for (const w of workers) expect((await w.next()).armed).toBe(true);
    Atomics.store(new Int32Array(sab), 0, 9);
    native().futexWake(sab, 0, Infinity);
    expect(['woken', 'not-equal']).toContain(await main);
    for (const w of workers) {
      const done = await w.next();
      expect(['woken', 'not-equal']).toContain(done.result);
      expect(done.value).toBe(9);
      expect(await w.exited).toBe(0);
    }
  });

  it('survives terminating a worker whose waiter is asleep', async () => {
    const sab = new SharedArrayBuffer(4);
    const { worker, next, exited } = startWorker({ sab });
    expect((await next()).armed).toBe(true);
    await worker.terminate();
    expect(await exited).toBe(1);
    // The process (and the addon in this thread) carry on.
    expect(await waitFor(newWaiter(), sab, 0, 1, -1)).toBe('not-equal');
  });

  it("ends with 'failed' and the errno when the kernel refuses the wait, not with a spurious 'woken' to re-arm in a loop", async () => {
    // A word whose page is past the end of a file another process shrank: the kernel cannot key a
    // shared futex there (EFAULT). The word itself is never touched here (SIGBUS).
    const file = shmPath('futex-efault');
    const sab = native().createSharedFile(file, 2 * 4096);
    truncateSync(file, 4096);
    const result = await new Promise<[NativeWaitResult, number]>((resolve) => newWaiter().wait(sab, 4096, 0, 10_000, (r, errno) => resolve([r, errno])));
    expect(result).toEqual(['failed', 14]);
    // Also when the timeout has passed before the thread waits (the kernel compares, never this process).
    const expired = await new Promise<[NativeWaitResult, number]>((resolve) => newWaiter().wait(sab, 4096, 0, 0, (r, errno) => resolve([r, errno])));
    expect(expired).toEqual(['failed', 14]);
    // An accepted wait says errno 0.
    const ok = await new Promise<[NativeWaitResult, number]>((resolve) => newWaiter().wait(sab, 0, 1, 10_000, (r, errno) => resolve([r, errno])));
    expect(ok).toEqual(['not-equal', 0]);
  });

  it('refuses its methods on objects that are not waiters, without touching them', () => {
    const { wait, cancel, close } = Object.getPrototypeOf(newWaiter()) as Record<string, (...args: unknown[]) => unknown>;
    // V8 checks the receiver against the class (napi_define_class gives methods a signature), so an
    // object another Node-API addon wrapped never reaches napi_unwrap either ("Illegal invocation").
    for (const self of [{}, Object.create(Object.getPrototypeOf(newWaiter()) as object), 7]) {
      expect(() => close.call(self)).toThrow(TypeError);
      expect(() => cancel.call(self)).toThrow(TypeError);
      expect(() => wait.call(self, new SharedArrayBuffer(4), 0, 0, 1, () => {})).toThrow(TypeError);
    }
  });

  it('uses the FUTEX_WAIT fallback when VMCOMM_FUTEX_WAITV=0: woken, and cancelled', async () => {
    const env = { ...process.env, VMCOMM_FUTEX_WAITV: '0' };
    const sab = new SharedArrayBuffer(4);
    const woken = startWorker({ sab }, env);
    expect(await woken.next()).toMatchObject({ armed: true, mechanism: 'futex' });
    await wakeOne(sab, 0);
    expect(await woken.next()).toMatchObject({ result: 'woken', mechanism: 'futex' });
    expect(await woken.exited).toBe(0);

    const cancelled = startWorker({ sab, cancel: true }, env);
    expect((await cancelled.next()).armed).toBe(true);
    expect(await cancelled.next()).toMatchObject({ result: 'cancelled', mechanism: 'futex' });
    expect(await cancelled.exited).toBe(0);

    const timed = startWorker({ sab, timeoutMs: 30 }, env);
    expect((await timed.next()).armed).toBe(true);
    expect(await timed.next()).toMatchObject({ result: 'timed-out' });
    expect(await timed.exited).toBe(0);

    // A refused wait ends 'failed' there too (the word's page is past the end of the file).
    const file = shmPath('futex-efault-sliced');
    const shrunk = native().createSharedFile(file, 2 * 4096);
    truncateSync(file, 4096);
    const failed = startWorker({ sab: shrunk, byteOffset: 4096, timeoutMs: 10_000 }, env);
    expect((await failed.next()).armed).toBe(true);
    expect(await failed.next()).toMatchObject({ result: 'failed', errno: 14, mechanism: 'futex' });
    expect(await failed.exited).toBe(0);
    // A timeout already over when the thread takes the wait: compared by the kernel, not read here (SIGBUS).
    const expired = startWorker({ sab: shrunk, byteOffset: 4096, timeoutMs: 0 }, env);
    expect((await expired.next()).armed).toBe(true);
    expect(await expired.next()).toMatchObject({ result: 'failed', errno: 14, mechanism: 'futex' });
    expect(await expired.exited).toBe(0);
  });
});

describe.skipIf(addon === undefined)('a waiter and the life of a program', () => {
  beforeAll(ensureDist, 120_000);

  it('an idle waiter does not keep a finished program alive', async () => {
    const out = await runFixture('waiter-program.mjs', ['idle']);
    expect(out).toMatchObject({ code: 0, signal: null, stderr: '' });
    expect(out.stdout.trim()).toBe('created');
  });

  it('an armed wait keeps the program alive until its callback, unless ref(false)', async () => {
    const kept = await runFixture('waiter-program.mjs', ['ref-timeout']);
    expect(kept).toMatchObject({ code: 0, stderr: '' });
    expect(kept.stdout.trim().split('\n')).toEqual(['armed', 'result timed-out']);

    const released = await runFixture('waiter-program.mjs', ['unref-armed']);
    expect(released).toMatchObject({ code: 0, signal: null, stderr: '' });
    expect(released.stdout.trim()).toBe('armed');
  });

  it('an exception in the callback is an uncaught exception', async () => {
    const out = await runFixture('waiter-program.mjs', ['throw']);
    expect(out).toMatchObject({ code: 0, stderr: '' });
    expect(out.stdout.trim()).toBe('uncaught from the callback');
  });

  it('an armed waiter is not garbage-collected before its callback', async () => {
    const out = await runFixture('waiter-program.mjs', ['gc-armed'], { nodeArgs: ['--expose-gc'] });
    expect(out).toMatchObject({ code: 0, stderr: '' });
    expect(out.stdout.trim().split('\n')).toEqual(['alive', 'result cancelled']);
  });
});
