// Every binding validates its arguments in C++: wrong types and ranges throw errors with codes, and
// nothing reaches a system call (or crashes the process) unchecked.
import { describe, expect, it } from 'vitest';
import type { NativeAddon } from '../native.js';
import { addon, native } from './helpers.js';

type Call = (a: NativeAddon) => unknown;

const sab = new SharedArrayBuffer(16);
const TYPE = { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', errno: 22 };
const RANGE = { name: 'RangeError', code: 'ERR_OUT_OF_RANGE', errno: 22 };
const lock = { exclusive: true, wait: false, create: true };
/* eslint-disable @typescript-eslint/no-explicit-any */
const bad = (value: unknown) => value as any;

const cases: [string, Call, object][] = [
  ['createSharedFile without arguments', (a) => bad(a.createSharedFile)(), TYPE],
  ['createSharedFile path number', (a) => a.createSharedFile(bad(7), 4096), TYPE],
  ['createSharedFile empty path', (a) => a.createSharedFile('', 4096), TYPE],
  ['createSharedFile path with NUL', (a) => a.createSharedFile('/dev/shm/a\0b', 4096), TYPE],
  ['createSharedFile bytes string', (a) => a.createSharedFile('/dev/shm/x', bad('4096')), TYPE],
  ['createSharedFile bytes 0', (a) => a.createSharedFile('/dev/shm/x', 0), RANGE],
  ['createSharedFile bytes negative', (a) => a.createSharedFile('/dev/shm/x', -1), RANGE],
  ['createSharedFile bytes fractional', (a) => a.createSharedFile('/dev/shm/x', 1.5), RANGE],
  ['createSharedFile bytes NaN', (a) => a.createSharedFile('/dev/shm/x', NaN), RANGE],
  ['createSharedFile bytes 2^53', (a) => a.createSharedFile('/dev/shm/x', 2 ** 53), RANGE],
  ['openSharedFile bytes bigint', (a) => a.openSharedFile('/dev/shm/x', bad(10n)), TYPE],
  ['openSharedFile bytes Infinity', (a) => a.openSharedFile('/dev/shm/x', Infinity), RANGE],
  ['lockFile options missing', (a) => bad(a.lockFile)('/dev/shm/x'), TYPE],
  ['lockFile options.wait missing', (a) => a.lockFile('/dev/shm/x', bad({ exclusive: true, create: true })), TYPE],
  ['lockFile options.create number', (a) => a.lockFile('/dev/shm/x', bad({ ...lock, create: 1 })), TYPE],
  ['unlockFile fd string', (a) => a.unlockFile(bad('3')), TYPE],
  ['unlockFile fd negative', (a) => a.unlockFile(-1), RANGE],
  ['futexWake ArrayBuffer', (a) => a.futexWake(bad(new ArrayBuffer(16)), 0, 1), TYPE],
  ['futexWake typed array', (a) => a.futexWake(bad(new Int32Array(sab)), 0, 1), TYPE],
  ['futexWake misaligned', (a) => a.futexWake(sab, 2, 1), RANGE],
  ['futexWake past the end', (a) => a.futexWake(sab, 16, 1), RANGE],
  ['futexWake last word + 4', (a) => a.futexWake(sab, 13, 1), RANGE],
  ['futexWake empty SAB', (a) => a.futexWake(new SharedArrayBuffer(0), 0, 1), RANGE],
  ['futexWake negative offset', (a) => a.futexWake(sab, -4, 1), RANGE],
  ['futexWake count negative', (a) => a.futexWake(sab, 0, -1), RANGE],
  ['futexWake count NaN', (a) => a.futexWake(sab, 0, NaN), RANGE],
  ['futexWake count string', (a) => a.futexWake(sab, 0, bad('1')), TYPE],
  ['addressOf ArrayBuffer', (a) => a.addressOf(bad(new ArrayBuffer(8))), TYPE],
  ['addressOf number', (a) => a.addressOf(bad(8)), TYPE],
  ['cmaRead pid 0', (a) => a.cmaRead(0, 0n, new Uint8Array(1)), RANGE],
  ['cmaRead pid string', (a) => a.cmaRead(bad('1'), 0n, new Uint8Array(1)), TYPE],
  ['cmaRead remote number', (a) => a.cmaRead(process.pid, bad(4096), new Uint8Array(1)), TYPE],
  ['cmaRead remote negative', (a) => a.cmaRead(process.pid, -1n, new Uint8Array(1)), RANGE],
  ['cmaRead remote 2^64', (a) => a.cmaRead(process.pid, 2n ** 64n, new Uint8Array(1)), RANGE],
  ['cmaRead into array', (a) => a.cmaRead(process.pid, 0n, bad([1, 2])), TYPE],
  ['cmaWrite from string', (a) => a.cmaWrite(process.pid, 0n, bad('abc')), TYPE],
  ['setAffinity not an array', (a) => a.setAffinity(bad(0)), TYPE],
  ['setAffinity element string', (a) => a.setAffinity(bad(['0'])), TYPE],
  ['setAffinity element negative', (a) => a.setAffinity([-1]), RANGE],
  ['setAffinity bad scope', (a) => a.setAffinity([0], bad('core')), RANGE],
];

describe.skipIf(addon === undefined)('argument validation', () => {
  it.each(cases)('%s throws a coded error', (_name, call, expected) => {
    let thrown: unknown;
    try {
      call(native());
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(Error);
    expect(thrown).toMatchObject(expected);
  });

  it('refuses views over detached buffers', () => {
    const buffer = new ArrayBuffer(8);
    const view = new Uint8Array(buffer);
    structuredClone(buffer, { transfer: [buffer] });
    expect(() => native().addressOf(view)).toThrow(expect.objectContaining(TYPE));
    expect(() => native().cmaRead(process.pid, 4096n, view)).toThrow(expect.objectContaining(TYPE));
  });

  it('checks the waiter methods: receiver, word, expected, timeout, callback, keepAlive', () => {
    const waiter = native().createWaiter();
    try {
      const noop = () => {};
      const waiterCases: (() => unknown)[] = [
        () => waiter.wait(bad(new ArrayBuffer(4)), 0, 0, -1, noop),
        () => waiter.wait(sab, 1, 0, -1, noop),
        () => waiter.wait(sab, 0, 2 ** 32, -1, noop),
        () => waiter.wait(sab, 0, -(2 ** 31) - 1, -1, noop),
        () => waiter.wait(sab, 0, 0.5, -1, noop),
        () => waiter.wait(sab, 0, 0, -2, noop),
        () => waiter.wait(sab, 0, 0, NaN, noop),
        () => waiter.wait(sab, 0, 0, bad('1'), noop),
        () => waiter.wait(sab, 0, 0, -1, bad(undefined)),
        () => waiter.ref(bad(1)),
        () => Reflect.construct(waiter.constructor, []),
      ];
      for (const call of waiterCases) {
        let thrown: unknown;
        try {
          call();
        } catch (e) {
          thrown = e;
        }
        expect(thrown).toBeInstanceOf(Error);
        expect(typeof (thrown as { code?: unknown }).code).toBe('string');
        expect((thrown as { errno?: unknown }).errno).toBe(22);
      }
      // A foreign `this` is refused by V8's own receiver check, before the addon runs.
      expect(() => waiter.wait.call(bad({}), sab, 0, 0, -1, noop)).toThrow(TypeError);
    } finally {
      waiter.close();
    }
  });
});
