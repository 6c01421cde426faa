/**
 * The options of the threads transport: {@link ThreadsInit} (units in the names), the `DEFAULT_*`
 * values, and {@link parseThreadsInit}, which applies and checks them in one place.
 *
 * @module
 */

import { VmcommError, invalidArgument } from '../../lib/errors.js';
import { isPowerOfTwo } from '../../lib/ring/region.js';
import { MAX_RING_DATA_BYTES, MIN_RING_DATA_BYTES } from '../../lib/ring/spsc-ring.js';

/** Options of the threads transport. Every field is optional; units are in the names. */
export interface ThreadsInit {
  /**
   * Data bytes of each ring (one per ordered pair that talks), a power of two; 0 = sized from
   * `arenaBytes`. Bigger rings stream large messages faster (fewer hand-overs between the two threads).
   * Default {@link DEFAULT_RING_BYTES} (0).
   */
  ringBytes?: number;
  /**
   * Ring data bytes one rank may reserve for its rings, one per peer. With `ringBytes` 0 the rings get
   * an equal share, a power of two from {@link MIN_AUTO_RING_BYTES} to {@link MAX_AUTO_RING_BYTES}
   * (the smallest share may exceed the budget beyond 256 ranks); with an explicit `ringBytes`, rings
   * are halved (down to 4 KiB) until they fit. 0 = {@link DEFAULT_RING_BUDGET_BYTES} with automatic
   * rings, no limit with an explicit `ringBytes`. Memory is reserved, not used: pages are committed
   * when a ring is first written. Default {@link DEFAULT_ARENA_BYTES} (0).
   */
  arenaBytes?: number;
  /** Largest payload sent eagerly, in bytes; larger messages use rendezvous. Default {@link DEFAULT_EAGER_LIMIT_BYTES}. */
  eagerLimitBytes?: number;
  /** Eager messages one sender may have outstanding at one receiver. Default {@link DEFAULT_EAGER_CREDITS}. */
  eagerCredits?: number;
  /** Starting poll budget, in ns, before the wait loop sleeps; it adapts between the two bounds below. Default {@link DEFAULT_SPIN_BUDGET_NS}. */
  spinBudgetNs?: number;
  /** Lower bound of the adaptive budget, in ns. Default {@link DEFAULT_MIN_SPIN_NS}. */
  minSpinNs?: number;
  /** Upper bound of the adaptive budget, in ns: the longest the wait loop holds the event loop. Default {@link DEFAULT_MAX_SPIN_NS}. */
  maxSpinNs?: number;
  /**
   * Upper bound of the budget, in ns, while the wait loop polls once per event-loop turn (see
   * `waitMode`: no addon, or a peer on this thread): idle ranks then sleep soon and leave the cores to
   * the ranks with work. Default {@link DEFAULT_MAX_YIELD_NS}.
   */
  maxYieldNs?: number;
  /** Frames one `poll()` delivers at most, over all rings. Default {@link DEFAULT_POLL_FRAMES_PER_CALL}. */
  pollFramesPerCall?: number;
  /** How long, in ms, `probe` waits for a same-pid peer's hello before calling it unreachable. Default {@link DEFAULT_PROBE_TIMEOUT_MS}. */
  probeTimeoutMs?: number;
  /**
   * `'spin'`: waits spin; `'yield'`: an empty poll calls `sched_yield` (the native addon's; without
   * the addon, the wait loop polls once per event-loop turn instead); `'auto'` (default): yield when
   * this process runs more thread-ranks than it has cores. A peer on this very thread always makes
   * the wait loop poll once per event-loop turn.
   */
  waitMode?: 'auto' | 'spin' | 'yield';
  /**
   * Copy payloads of `singleCopyMinBytes` or more once, from the sender's buffer into the receiver's
   * (a `memcpy` by the native addon between pinned views; both threads copy a half of a payload of
   * 64 KiB or more), instead of through the ring (two copies). Needs the addon; without it payloads
   * go through the ring. Default true.
   */
  singleCopy?: boolean;
  /** Payloads of at least this many bytes go by single copy (see `singleCopy`). Default {@link DEFAULT_SINGLE_COPY_MIN_BYTES}. */
  singleCopyMinBytes?: number;
  /**
   * Serve peers that run on this very thread (several worlds in one thread: in-process test jobs).
   * Off by default: such worlds keep using their other transports. Default false.
   */
  allowSameThread?: boolean;
}

/** {@link ThreadsInit} with every default applied, as {@link parseThreadsInit} returns it. */
export type ThreadsOptions = Readonly<Required<ThreadsInit>>;

/** Default {@link ThreadsInit.ringBytes}: 0, sized from the arena budget. */
export const DEFAULT_RING_BYTES = 0;
/** Default {@link ThreadsInit.arenaBytes}: 0 (see there). */
export const DEFAULT_ARENA_BYTES = 0;
/**
 * The ring data budget of a rank when `arenaBytes` is 0 and rings are sized automatically: 4 MiB,
 * so 1 MiB rings up to 5 ranks, 512 KiB at 8, 128 KiB at 32, 64 KiB at 64.
 */
export const DEFAULT_RING_BUDGET_BYTES = 4 * 1024 * 1024;
/** Automatic rings are at least this big. */
export const MIN_AUTO_RING_BYTES = 16 * 1024;
/** Automatic rings are at most this big. */
export const MAX_AUTO_RING_BYTES = 1024 * 1024;
/** Default {@link ThreadsInit.eagerLimitBytes}: 16 KiB, a quarter of a default ring. */
export const DEFAULT_EAGER_LIMIT_BYTES = 16 * 1024;
/** Default {@link ThreadsInit.eagerCredits}. */
export const DEFAULT_EAGER_CREDITS = 64;
/** Default {@link ThreadsInit.spinBudgetNs}: 50 µs. */
export const DEFAULT_SPIN_BUDGET_NS = 50_000;
/** Default {@link ThreadsInit.minSpinNs}: 2 µs. */
export const DEFAULT_MIN_SPIN_NS = 2_000;
/** Default {@link ThreadsInit.maxSpinNs}: 200 µs. */
export const DEFAULT_MAX_SPIN_NS = 200_000;
/** Default {@link ThreadsInit.maxYieldNs}: 10 µs. */
export const DEFAULT_MAX_YIELD_NS = 10_000;
/** Default {@link ThreadsInit.pollFramesPerCall}. */
export const DEFAULT_POLL_FRAMES_PER_CALL = 64;
/** Default {@link ThreadsInit.singleCopyMinBytes}: 64 KiB (below it, two copies through the ring cost less than the extra hand-over). */
export const DEFAULT_SINGLE_COPY_MIN_BYTES = 64 * 1024;
/** Default {@link ThreadsInit.probeTimeoutMs}: 2 s. */
export const DEFAULT_PROBE_TIMEOUT_MS = 2_000;

/** Per numeric field: the accepted integer range. */
const LIMITS: { readonly [K in Exclude<keyof ThreadsInit, 'waitMode' | 'allowSameThread' | 'singleCopy'>]-?: readonly [min: number, max: number] } = {
  ringBytes: [0, MAX_RING_DATA_BYTES],
  arenaBytes: [0, 2 ** 53 - 1],
  eagerLimitBytes: [0, 1024 * 1024 * 1024],
  eagerCredits: [1, 65_535],
  spinBudgetNs: [0, 1e9],
  minSpinNs: [0, 1e9],
  maxSpinNs: [0, 1e9],
  maxYieldNs: [0, 1e9],
  pollFramesPerCall: [1, 1_000_000],
  probeTimeoutMs: [1, 0x7fff_ffff],
  singleCopyMinBytes: [1, 2 ** 53 - 1],
};
const WAIT_MODES = ['auto', 'spin', 'yield'] as const;

const DEFAULTS: ThreadsOptions = {
  ringBytes: DEFAULT_RING_BYTES,
  arenaBytes: DEFAULT_ARENA_BYTES,
  eagerLimitBytes: DEFAULT_EAGER_LIMIT_BYTES,
  eagerCredits: DEFAULT_EAGER_CREDITS,
  spinBudgetNs: DEFAULT_SPIN_BUDGET_NS,
  minSpinNs: DEFAULT_MIN_SPIN_NS,
  maxSpinNs: DEFAULT_MAX_SPIN_NS,
  maxYieldNs: DEFAULT_MAX_YIELD_NS,
  pollFramesPerCall: DEFAULT_POLL_FRAMES_PER_CALL,
  probeTimeoutMs: DEFAULT_PROBE_TIMEOUT_MS,
  waitMode: 'auto',
  singleCopy: true,
  singleCopyMinBytes: DEFAULT_SINGLE_COPY_MIN_BYTES,
  allowSameThread: false,
};

/**
 * Applies defaults and checks every field: integers in range (`ringBytes` a power of two,
 * `minSpinNs ≤ maxSpinNs`), `waitMode` one of its names, `singleCopy` and `allowSameThread` booleans, no unknown
 * field. Throws `VmcommError('INVALID_ARGUMENT')`.
 */
export function parseThreadsInit(init: ThreadsInit = {}): ThreadsOptions {
  if (init === null || typeof init !== 'object') throw invalidArgument('threads init', 'an object', init);
  for (const key of Object.keys(init)) {
    if (!(key in DEFAULTS)) {
      throw new VmcommError('INVALID_ARGUMENT', `unknown threads option ${JSON.stringify(key)}; known options: ${Object.keys(DEFAULTS).join(', ')}`);
    }
  }
  const options: Record<string, unknown> = { ...DEFAULTS };
  for (const [key, [min, max]] of Object.entries(LIMITS)) {
    const value = (init as Record<string, unknown>)[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      throw invalidArgument(`threads option ${key}`, `an integer from ${min} to ${max}`, value);
    }
    options[key] = value;
  }
  const ringBytes = options.ringBytes as number;
  if (ringBytes !== 0 && (!isPowerOfTwo(ringBytes) || ringBytes < Math.max(MIN_RING_DATA_BYTES, 4096))) {
    throw invalidArgument('threads option ringBytes', '0 (automatic) or a power of two of at least 4096', init.ringBytes);
  }
  if ((options.minSpinNs as number) > (options.maxSpinNs as number)) {
    throw new VmcommError('INVALID_ARGUMENT', `threads option minSpinNs (${String(options.minSpinNs)}) must not exceed maxSpinNs (${String(options.maxSpinNs)})`);
  }
  if (init.waitMode !== undefined) {
    if (!(WAIT_MODES as readonly unknown[]).includes(init.waitMode)) throw invalidArgument('threads option waitMode', `one of ${WAIT_MODES.join(', ')}`, init.waitMode);
    options.waitMode = init.waitMode;
  }
  if (init.singleCopy !== undefined) {
    if (typeof init.singleCopy !== 'boolean') throw invalidArgument('threads option singleCopy', 'a boolean', init.singleCopy);
    options.singleCopy = init.singleCopy;
  }
  if (init.allowSameThread !== undefined) {
    if (typeof init.allowSameThread !== 'boolean') throw invalidArgument('threads option allowSameThread', 'a boolean', init.allowSameThread);
    options.allowSameThread = init.allowSameThread;
  }
  return options as unknown as ThreadsOptions;
}
