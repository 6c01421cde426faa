/**
 * Declares the native addon (`build/Release/vmcomm_native.node`, built from `backends/native/src/` by
 * `scripts/build-addon.mjs` during `npm install`) and loads it. This is the only file that touches the
 * binary; the shm and ivshmem transports call {@link loadNative} (or {@link tryLoadNative}) lazily in
 * their `start()`, so `self`, `threads` and `tcp` work without it.
 *
 * The addon is primitives only — map a file as a SharedArrayBuffer, futex waits on a thread of their
 * own, cross-memory attach, affinity. Options, retries, fallbacks and error classes live in TypeScript.
 * Its errors are plain `Error`s (or `TypeError`/`RangeError` for bad arguments) carrying a string
 * `code` and a numeric `errno` ({@link NativeError}); callers wrap them in {@link VmcommError} with the
 * original as `cause`.
 *
 * The addon is context-aware: it loads in worker threads too, each with its own instance. Linux only.
 *
 * @example
 * ```ts
 * import { rmSync } from 'node:fs';
 * import { loadNative } from './backends/native/native.js';
 *
 * const addon = loadNative();
 * const path = `/dev/shm/vmcomm-demo-${process.pid}`;
 * const sab = addon.createSharedFile(path, 4096);          // 0600, fully allocated, mapped MAP_SHARED
 * const words = new Int32Array(sab);
 * const waiter = addon.createWaiter();
 * waiter.wait(sab, 0, 0, 1000, (result) => {              // sleeps on a native thread, not the loop
 *   console.log(result, Atomics.load(words, 0));
 *   waiter.close();
 *   rmSync(path);                                         // `sab` stays valid: the mapping keeps the file
 * });
 * Atomics.store(words, 0, 7);
 * addon.futexWake(sab, 0, 1);                              // any process that maps the file can do this
 * ```
 *
 * Output: `not-equal 7` when the store lands before the thread goes to sleep, `woken 7` when after; either
 * way the word has changed, which is all a futex wait promises.
 *
 * @module
 */

import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VmcommError } from '../../lib/errors.js';

/**
 * What the addon can do on this machine, probed once per thread when it loads. Transports check these
 * in `start()` and in their address filters.
 */
export interface NativeCapability {
  /** Files can be mapped as SharedArrayBuffers ({@link NativeAddon.createSharedFile}); always true on Linux. */
  readonly mmap: boolean;
  /** The futex system call works ({@link NativeAddon.futexWake}, {@link NativeWaiter}). */
  readonly futex: boolean;
  /**
   * Cross-memory attach (`process_vm_readv`/`process_vm_writev`) is allowed here and not turned off by
   * `VMCOMM_CMA=0` (read from this thread's `process.env` when the addon loads). Being allowed to read
   * *this* process says nothing about a peer: each pair still has to try, and fall back on `EPERM`.
   */
  readonly cma: boolean;
  /** `memfd_create` works (anonymous shared memory that can be passed as an fd). */
  readonly memfd: boolean;
  /** Huge pages are reserved (`HugePages_Total` > 0 in /proc/meminfo), so `MAP_HUGETLB` can succeed. */
  readonly hugepages: boolean;
  /** ivshmem-doorbell interrupts (eventfd). Always false for now: regions are polled or futex-woken. */
  readonly ivshmemDoorbell: boolean;
}

/**
 * How an armed {@link NativeWaiter.wait} ended. `'failed'`: the kernel refused the wait for a reason
 * that would recur (the errno comes with it: `EFAULT` for a word whose page is gone, as past the end of
 * a file another process shrank, or in memory a shared futex cannot use, such as a PCI BAR) — do not
 * re-arm on the same word, sleep another way.
 */
export type NativeWaitResult = 'woken' | 'not-equal' | 'timed-out' | 'cancelled' | 'failed';

/** The options of {@link NativeAddon.lockFile}. All are required: locking is never implicit. */
export interface NativeLockOptions {
  /** `LOCK_EX` when true, `LOCK_SH` (shared with other shared holders) when false. */
  readonly exclusive: boolean;
  /**
   * Block until the lock is free. This blocks the calling JS thread: use it only where the holder is
   * known to let go promptly; otherwise poll with `wait: false`.
   */
  readonly wait: boolean;
  /** Create the file (mode 0600) when it does not exist; otherwise a missing file throws `ENOENT`. */
  readonly create: boolean;
}

/**
 * An error thrown by the addon. System-call failures are `Error`s whose `code` is the errno name
 * (`'ENOSPC'`, `'EPERM'`, `'ESRCH'`…) with `syscall` (and `path` for files) set; bad arguments are
 * `TypeError` (`'ERR_INVALID_ARG_TYPE'`) or `RangeError` (`'ERR_OUT_OF_RANGE'`) with `errno` EINVAL;
 * state errors are `'EBUSY'` (a wait is already armed), `'EBADF'` (a closed waiter, an fd lockFile did
 * not hand out) and `'ENOTSUP'` (CMA turned off by `VMCOMM_CMA=0`).
 */
export interface NativeError extends Error {
  /** The errno name, or a Node-style `ERR_…` code for a bad argument. */
  readonly code: string;
  /** The errno value, positive as in errno.h (Node's fs errors use the negative libuv form instead). */
  readonly errno: number;
  /** The failed system call, for system-call failures (`'open'`, `'posix_fallocate'`, `'process_vm_readv'`…). */
  readonly syscall?: string;
  /** The file involved, when there is one. */
  readonly path?: string;
}

/** True when `e` came out of the addon (an `Error` with a string `code` and a numeric `errno`). */
export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'string' && typeof (e as { errno?: unknown }).errno === 'number';
}

/**
 * The addon's functions. Every argument is validated in C++ (types, ranges, alignment); a bad one
 * throws a {@link NativeError} and nothing crashes. All calls are synchronous and none blocks, except
 * {@link NativeAddon.lockFile} with `wait: true`.
 */
export interface NativeAddon {
  /** What works on this machine; frozen. */
  readonly capability: NativeCapability;

  /**
   * Creates the file (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode exactly 0600 whatever the umask), allocates all
   * of it with `posix_fallocate` (so a full tmpfs fails here with `ENOSPC` rather than with SIGBUS on
   * first touch), maps it `MAP_SHARED` and returns a SharedArrayBuffer over the whole mapping. On any
   * failure the new file is removed again. On `ENOSPC` or `ENOMEM` it first collects garbage once and
   * tries again: files already removed keep their memory while a mapping of them lives, and V8 does
   * not count shared memory towards collecting (so does {@link openSharedFile} on `ENOMEM`).
   *
   * @param path Where to create it, e.g. `/dev/shm/vmcomm-<job>-<random>`; must not exist.
   * @param bytes Its size, an integer in [1, 2^53 − 1].
   * @returns A SharedArrayBuffer of `bytes` bytes over the file, zero-filled.
   * @throws {@link NativeError} `EEXIST`, `ENOSPC`, `EACCES`…, or a bad argument.
   */
  createSharedFile(path: string, bytes: number): SharedArrayBuffer;

  /**
   * Opens an existing file read-write and maps it `MAP_SHARED`: `bytes` when given (at most the size of
   * a regular file; required for a device whose size reads as 0), else the file size. For a PCI
   * `resource2` file the size is the BAR size.
   *
   * Each file (st_dev, st_ino) is mapped once per process, for every thread: another call returns a
   * new SharedArrayBuffer over the same mapping (the same V8 backing store), so its `byteLength` may
   * exceed `bytes`. Only a request for more than the existing mapping covers maps again (a longer
   * mapping of the same pages, which replaces it for later calls). A mapping is unmapped when the last
   * SharedArrayBuffer over it is garbage-collected, never earlier — no view outlives its memory.
   *
   * @param path The file, e.g. a peer's `/dev/shm` file or `/sys/bus/pci/devices/…/resource2`.
   * @param bytes How many bytes to map from offset 0, an integer in [1, 2^53 − 1].
   * @throws {@link NativeError} `ENOENT`, `EACCES`, `EINVAL` (an empty file), `ERR_OUT_OF_RANGE` (`bytes` beyond the end)…
   */
  openSharedFile(path: string, bytes?: number): SharedArrayBuffer;

  /**
   * Opens `path` read-write (`O_CREAT`, mode 0600, when `create`) and takes a `flock` on it: held while
   * the file is in use, so a cleaner can tell live files from stale ones. `flock` locks belong to the
   * open file: a second `lockFile` of the same path conflicts even within one process. Any thread may
   * unlock it; one still held when the thread that took it ends (a worker exits or is terminated) is
   * released then, and in any case when the process ends.
   *
   * @returns The fd (keep it; pass it to {@link NativeAddon.unlockFile}), or −1 when `wait` is false and
   *   a conflicting lock is held elsewhere.
   * @throws {@link NativeError} `ENOENT` (missing and not `create`), `EACCES`…, or a bad argument.
   */
  lockFile(path: string, options: NativeLockOptions): number;

  /**
   * Releases the lock and closes an fd that {@link NativeAddon.lockFile} returned.
   *
   * @throws {@link NativeError} `EBADF` for any other fd (or one already unlocked): it is never closed.
   */
  unlockFile(fd: number): void;

  /**
   * `FUTEX_WAKE` (shared, not `FUTEX_PRIVATE`, so waiters in other processes that map the same file
   * wake) on the aligned 32-bit word at `byteOffset` of `sab`.
   *
   * @param byteOffset A multiple of 4, with the whole word inside `sab`.
   * @param count How many waiters to wake at most: an integer ≥ 0, or `Infinity` for all.
   * @returns How many waiters were woken (in any process).
   */
  futexWake(sab: SharedArrayBuffer, byteOffset: number, count: number): number;

  /**
   * The process-virtual address of the view's first byte, to publish for a peer's
   * {@link NativeAddon.cmaRead}/{@link NativeAddon.cmaWrite}. The caller keeps the view (and so its
   * memory) alive and unmoved for as long as the address is in use; a small on-heap typed array is
   * moved off-heap by this call, so the address stays valid.
   */
  addressOf(view: ArrayBufferView): bigint;

  /**
   * `process_vm_readv`: copies `into.byteLength` bytes from `remote` in process `pid` straight into
   * `into` (one copy). Only meaningful between ranks in the same PID namespace (compare
   * {@link NativeAddon.pidNamespaceId}); that check is the transport's.
   *
   * @returns Bytes read: fewer than asked when the remote range ends early; the kernel also caps one
   *   call at about 2 GiB, so loop for more.
   * @throws {@link NativeError} `EPERM` (not allowed to ptrace the target: other user, Yama), `ESRCH`
   *   (no such process), `EFAULT` (a bad remote address), `ENOTSUP` (`VMCOMM_CMA=0`).
   */
  cmaRead(pid: number, remote: bigint, into: ArrayBufferView): number;

  /**
   * `process_vm_writev`: copies `from` to `remote` in process `pid`. As {@link NativeAddon.cmaRead}.
   *
   * @returns Bytes written.
   */
  cmaWrite(pid: number, remote: bigint, from: ArrayBufferView): number;

  /**
   * `prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY)` where Yama is loaded, so peers of the same user may
   * read and write this process with CMA under `ptrace_scope` 1.
   *
   * @returns True when set or not needed (no Yama); false when Yama's scope (2 or 3) makes it useless
   *   or the call fails.
   */
  allowPtrace(): boolean;

  /**
   * Pins a view's memory for single copy between threads of this process: returns a number (a
   * positive safe integer: a slot and a random tag) that {@link NativeAddon.copyFromPin} and
   * {@link NativeAddon.copyToPin} accept in any thread. The pin holds the view's backing store, so
   * memory V8 owns stays valid until {@link NativeAddon.unpin}, even if the buffer is transferred
   * away and collected meanwhile (an external buffer a native addon made is freed by that addon
   * when its thread ends, pinned or not); pins this thread still holds are released when it ends.
   * The bytes are shared, not copied: what a copy sees is what the view holds at that moment.
   *
   * @throws TypeError for a view over a detached or resizable buffer.
   */
  pin(view: ArrayBufferView): number;

  /** Releases a pin. @returns Whether it was held. */
  unpin(pin: number): boolean;

  /**
   * `memcpy` of `into.byteLength` bytes from byte `offset` of a pinned view (fewer when the pin ends
   * first; 0 at its end).
   *
   * @returns Bytes copied.
   * @throws {@link NativeError} `ESRCH` (no such pin: released, its thread ended, or a wrong tag), `EFAULT`
   *   (`offset` beyond the pin's length).
   */
  copyFromPin(pin: number, offset: number, into: ArrayBufferView): number;

  /** `memcpy` of `from` to byte `offset` of a pinned view; as {@link NativeAddon.copyFromPin}. */
  copyToPin(pin: number, offset: number, from: ArrayBufferView): number;

  /**
   * Registers a store to make when this thread ends without JavaScript's help (a terminated worker
   * runs no `exit` handler): the aligned 32-bit word at `byteOffset` of `sab` is compare-and-swapped
   * from `expected` to `value` when this thread's environment is torn down, unless
   * {@link NativeAddon.cancelOnThreadEnd} withdrew it. Peers that poll the word then learn the thread
   * is gone. The registration keeps `sab`'s memory alive until then.
   *
   * @returns A number for {@link NativeAddon.cancelOnThreadEnd}.
   */
  onThreadEnd(sab: SharedArrayBuffer, byteOffset: number, expected: number, value: number): number;

  /** Withdraws a registration of this thread's {@link NativeAddon.onThreadEnd}. @returns Whether it was held. */
  cancelOnThreadEnd(id: number): boolean;

  /** `sched_yield()`: lets another runnable thread on this CPU go first (for bounded spin loops). */
  schedYield(): void;

  /**
   * `sched_setaffinity` for `--bind-to core`.
   *
   * @param cpus CPU numbers, at least one, each in [0, 1023].
   * @param scope `'thread'` (default): the calling thread only (`pid` 0 — Linux applies affinity per
   *   thread), and threads it starts later. `'process'`: every thread of the process, Node's own
   *   included.
   * @throws {@link NativeError} `EINVAL` when none of the CPUs is online and allowed (cgroup cpuset).
   */
  setAffinity(cpus: readonly number[], scope?: 'thread' | 'process'): void;

  /** `sched_getaffinity(0)`: the calling thread's CPUs, ascending. */
  getAffinity(): number[];

  /** `readlink /proc/self/ns/pid`, e.g. `"pid:[4026531836]"`: equal strings mean the same PID namespace. */
  pidNamespaceId(): string;

  /**
   * A native thread that sleeps in futex waits for this thread's event loop. Create one per isolate
   * and reuse it; each holds a thread until {@link NativeWaiter.close} (or garbage collection, or the
   * end of the isolate).
   */
  createWaiter(): NativeWaiter;
}

/**
 * One native thread that sleeps in the kernel on behalf of an event loop (one per isolate). JS arms one
 * wait at a time; the thread sleeps in a shared `FUTEX_WAIT`, then the callback runs on the loop. The
 * loop itself never blocks, and no libuv pool thread is parked.
 *
 * A wait can end as `'woken'` even though nothing changed (a spurious wake, which every futex user must
 * tolerate): re-check the word and wait again.
 */
export interface NativeWaiter {
  /**
   * How the thread waits: `'futex_waitv'` (Linux ≥ 5.16: on the word and a private cancel word at
   * once, so a cancel is never lost and disturbs no one) or `'futex'` (`FUTEX_WAIT` in slices of at most
   * 100 ms; a cancel also wakes other waiters on the word). `VMCOMM_FUTEX_WAITV=0` forces `'futex'`
   * (for tests).
   */
  readonly mechanism: 'futex_waitv' | 'futex';

  /**
   * Arms one wait: the thread sleeps while the 32-bit word at `byteOffset` of `sab` equals `expected`,
   * for at most `timeoutMs`; then `callback(result)` runs on the event loop. The waiter keeps `sab`'s
   * memory alive until then.
   *
   * The waiter stays armed until the callback runs (also after {@link NativeWaiter.cancel}); the
   * callback may arm the next wait. While armed it keeps the event loop alive unless
   * {@link NativeWaiter.ref | ref(false)}. An exception thrown by the callback is an uncaught exception.
   *
   * @param byteOffset A multiple of 4, with the whole word inside `sab`.
   * @param expected The value to sleep on, an integer in [−2^31, 2^32 − 1] (−1 and 0xffffffff are the same word).
   * @param timeoutMs Milliseconds (fractions allowed) from now; −1 or `Infinity` = no timeout.
   * @param callback `'woken'` (a wake arrived), `'not-equal'` (the word differed when the thread went
   *   to sleep), `'timed-out'`, `'cancelled'` or `'failed'` (then `errno` says why; 0 otherwise).
   * @throws {@link NativeError} `EBUSY` when a wait is armed, `EBADF` when closed, or a bad argument.
   */
  wait(sab: SharedArrayBuffer, byteOffset: number, expected: number, timeoutMs: number, callback: (result: NativeWaitResult, errno: number) => void): void;

  /**
   * Cancels the armed wait (a flag, then a wake of the thread): its callback gets `'cancelled'`, unless
   * the wait had already ended, in which case it gets that result. A no-op when idle or closed.
   */
  cancel(): void;

  /**
   * Whether an armed wait keeps the event loop alive (`uv_ref`/`uv_unref` of the handle that wakes the
   * loop). Default true. An idle waiter never keeps the loop alive.
   */
  ref(keepAlive: boolean): void;

  /**
   * Stops and joins the thread and frees everything. An armed wait is dropped without its callback
   * (cancel first if the callback must run). Idempotent; afterwards `wait` throws `EBADF`. Done
   * automatically when the waiter is garbage-collected or its isolate ends (a worker exits or is
   * terminated). With the `'futex'` mechanism, a close that lands just before the thread enters the
   * kernel waits for that slice to end (at most 100 ms); `'futex_waitv'` never waits.
   */
  close(): void;
}

/** The binary's file name under `build/Release` or `build/Debug`. */
export const NATIVE_ADDON_FILE = 'vmcomm_native.node';

/** The command that rebuilds the addon, for messages. */
export const NATIVE_REBUILD_COMMAND = '`npm rebuild vmcomm` (where vmcomm is a dependency) or `node scripts/build-addon.mjs` (in the vmcomm directory)';

/** The outcome of {@link tryLoadNative}: the addon, or why it is missing. */
export interface NativeLoadResult {
  /** The loaded addon, when it loaded. */
  readonly addon?: NativeAddon;
  /** When it did not: the paths tried and what failed for each, this platform/arch/ABI, and how to rebuild. */
  readonly reason?: string;
  /** The error of the last path that existed but failed to load, if any. */
  readonly cause?: unknown;
}

/** glibc's `RTLD_NODELETE`. */
const RTLD_NODELETE = 0x1000;

let cached: NativeLoadResult | undefined;

/**
 * Loads the addon once per thread and returns it.
 *
 * @throws {@link VmcommError} `UNSUPPORTED` naming the package, the paths tried, the platform, arch and
 *   ABI, and the rebuild command.
 */
export function loadNative(): NativeAddon {
  const result = tryLoadNative();
  if (result.addon !== undefined) return result.addon;
  throw new VmcommError('UNSUPPORTED', result.reason ?? 'vmcomm: the native addon could not be loaded', { cause: result.cause });
}

/**
 * Loads the addon once per thread (the outcome, success or failure, is cached).
 *
 * @returns `{ addon }`, or `{ reason, cause? }` saying what failed.
 */
export function tryLoadNative(): NativeLoadResult {
  cached ??= loadAddonFrom(nativeAddonPaths());
  return cached;
}

/**
 * Where the addon is looked for, in order: `build/Release` then `build/Debug` of the vmcomm package
 * (found from this module's location, in the sources or in `dist/`).
 */
export function nativeAddonPaths(): string[] {
  const root = packageRoot(path.dirname(fileURLToPath(import.meta.url)));
  return ['Release', 'Debug'].map((config) => path.join(root, 'build', config, NATIVE_ADDON_FILE));
}

/**
 * Loads the first of `paths` that exists and loads; used by {@link tryLoadNative} (and by tests, to
 * see the failure message). Never throws.
 */
export function loadAddonFrom(paths: readonly string[]): NativeLoadResult {
  const failures: string[] = [];
  let cause: unknown;
  for (const file of paths) {
    if (!existsSync(file)) {
      failures.push(`${file} (not found)`);
      continue;
    }
    try {
      // RTLD_NODELETE (glibc's 0x1000; os.constants does not list it): the library stays loaded after
      // the last worker that loaded it exits, because V8 frees the SharedArrayBuffers over our mappings
      // after that, with a deleter that is in this library (else SIGSEGV at the worker's exit).
      const module = { exports: {} as NativeAddon };
      process.dlopen(module, file, osConstants.dlopen.RTLD_NOW | RTLD_NODELETE);
      return { addon: module.exports };
    } catch (error) {
      cause = error;
      failures.push(`${file} (${error instanceof Error ? error.message.split('\n')[0] : String(error)})`);
    }
  }
  const platform = `${process.platform}-${process.arch}, Node ${process.versions.node}, ABI ${process.versions.modules}`;
  const reason =
    `vmcomm: the native addon (shared-memory mapping, futex waits, single copy) could not be loaded. ` +
    `Tried: ${failures.join('; ') || 'no paths'}. This is ${platform}` +
    `${process.platform === 'linux' ? '' : ' (the addon is Linux-only)'}. ` +
    `Rebuild it with ${NATIVE_REBUILD_COMMAND}; until then shared-memory pairs use tcp.`;
  return cause === undefined ? { reason } : { reason, cause };
}

/** The nearest directory at or above `from` holding vmcomm's `binding.gyp` (the package root). */
function packageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'binding.gyp'))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(from, '..', '..');
  }
}
