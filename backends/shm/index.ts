/**
 * @packageDocumentation
 *
 * The `shm` transport: ranks that are processes of one OS talk through files in `/dev/shm` mapped
 * into each of them — Nemesis-style channels (MPICH ch3:nemesis), single copy for large payloads
 * (LiMIC) — at priority 60, role `'local'`.
 *
 * - **Inbox.** At `init()` each rank creates an inbox file (a doorbell word, a waiter flag, a queue
 *   announcing rings opened to it) and names it in its card, with a random nonce that the file also
 *   holds: that file is the rank's *shm token*. A peer proves it shares this OS by opening the file
 *   in its own `/dev/shm` and finding the nonce (DESIGN section 4). Ranks with different `/dev/shm`
 *   mounts (different VMs, containers) fail that proof and use another transport.
 * - **Rings.** Per ordered pair, a lock-free single-producer single-consumer ring in a file of its
 *   own, created by the sender on its first send and announced in the receiver's inbox; a receiver
 *   polls only announced rings (`lib/ring/`). Small frames are copied in whole; large payloads stream
 *   through in pieces (native `memcpy`), from the sender's buffer straight into the receiver's.
 * - **Single copy.** A payload of `cmaMinBytes` or more, between ranks of one PID namespace that both
 *   allow it, is read by the receiver straight from the sender's memory with `process_vm_readv` —
 *   into the user's receive buffer for a rendezvous message. Where the kernel refuses (`EPERM`), it
 *   falls back to the ring for that peer, losing nothing. `VMCOMM_CMA=0` (or `cma: false`) turns it
 *   off. See `cma.ts` (how) and `lib/ring/single-copy-sink.ts` (the protocol).
 * - **Waiting.** The core polls the rings synchronously (`poll()`); in between, the transport polls
 *   from the event loop for an adaptive budget, then sleeps in a futex wait on its doorbell on the
 *   addon's waiter thread. A sender wakes the futex only when the receiver's waiter flag is up. With
 *   more ranks on the host than cores, empty polls `sched_yield`.
 * - **Hygiene.** Files are 0600, named per job and rank with 128 random bits
 *   (`vmcomm-<job>-<rank>-<random>-inbox`, `…-ring-<to>`), held with `flock` while in use, removed at
 *   `finalize()`. The launcher removes those of a rank that died, `npx vmcomm clean` those whose lock
 *   can be taken (`lib/launch/shm-files.ts`).
 *
 * The transport needs the native addon; without it `start()` reports why and pairs use tcp. For now
 * it does not start in worker threads (thread-ranks reach other processes through tcp): the addon is
 * unloaded when the last worker that loaded it exits, before V8 releases the mappings it made.
 *
 * @example
 * Two ranks in one process with hand-made components (the core normally builds all of this; a
 * launcher job gets the same between processes):
 *
 * ```ts
 * import { hostname } from 'node:os';
 * import { shm } from './backends/shm/index.js';
 * import { emptyHeader, encodeHeader } from './lib/protocol.js';
 *
 * let arrived!: () => void;
 * const delivered = new Promise<void>((resolve) => (arrived = resolve));
 * const sink = (rank: number) => ({
 *   begin: (peer: number) => (console.log(`rank ${rank}: frame from rank ${peer}`), new Uint8Array(5)),
 *   commit: () => arrived(),
 *   lost: () => {},
 * });
 * const factory = shm();
 * const [a, b] = [0, 1].map((rank) =>
 *   factory({ rank, size: 2, jobId: 'demo', jobSecret: new Uint8Array(32), processNonce: 'p', address: '127.0.0.1', sink: sink(rank) }),
 * );
 * const fields = await Promise.all([a.start(), b.start()]);
 * const card = (rank: number) =>
 *   ({ rank, processNonce: 'p', hostname: hostname(), pid: process.pid, address: '127.0.0.1', backends: { shm: fields[rank]! }, priorities: { shm: 60 } });
 * console.log(await a.probe(card(1)), await b.probe(card(0)));
 * a.addPeers([1]);
 * b.addPeers([0]);
 *
 * const channel = await a.connect(1);
 * const header = encodeHeader({ ...emptyHeader(), payloadBytes: 5, messageBytes: 5 }, new Uint8Array(48));
 * channel.send(header, new TextEncoder().encode('hello'));
 * await delivered;
 * await Promise.all([a.stop(), b.stop()]);
 * console.log('stopped');
 * ```
 *
 * Output:
 *
 * ```
 * true true
 * rank 1: frame from rank 0
 * stopped
 * ```
 *
 * And with the launcher, once `shm` is a built-in (`npx vmcomm run -n 2 examples/hello.ts`):
 *
 * ```
 * hello from rank 0 of 2 on myhost (pid 4242) — 0:self 1:shm
 * hello from rank 1 of 2 on myhost (pid 4243) — 0:shm 1:self
 * ```
 *
 * @module
 */

import path from 'node:path';
import type { BackendComponents, BackendFactory } from '../../lib/backend.js';
import { VmcommError, invalidArgument } from '../../lib/errors.js';
import { DEFAULT_SHM_DIRECTORY } from '../../lib/launch/shm-files.js';
import { MAX_INBOX_SLOTS, MIN_INBOX_SLOTS } from '../../lib/ring/inbox.js';
import { isPowerOfTwo } from '../../lib/ring/region.js';
import { MAX_RING_DATA_BYTES } from '../../lib/ring/spsc-ring.js';
import { ShmTransport } from './shm-transport.js';

export { AUTO_RING_BUDGET_BYTES, autoRingBytes, MAX_AUTO_RING_BYTES, MIN_AUTO_RING_BYTES } from './ring-size.js';

export { ShmTransport } from './shm-transport.js';

/** Options of the shm transport. Every field is optional; units are in the names. */
export interface ShmInit {
  /**
   * Data bytes of each ring (one per ordered pair that talks, created on its first send), a power of
   * two; 0 = sized by the job ({@link autoRingBytes}). Default {@link DEFAULT_RING_BYTES}.
   */
  ringBytes?: number;
  /** Announcement slots of each inbox, a power of two; 0 = one per peer (at most 1024). Default {@link DEFAULT_INBOX_SLOTS}. */
  inboxSlots?: number;
  /** Largest payload sent eagerly, in bytes; larger messages use rendezvous. Default {@link DEFAULT_EAGER_LIMIT_BYTES}. */
  eagerLimitBytes?: number;
  /** Eager messages one sender may have outstanding at one receiver. Default {@link DEFAULT_EAGER_CREDITS}. */
  eagerCredits?: number;
  /** Payloads of at least this many bytes go by single copy where it works. Default {@link DEFAULT_CMA_MIN_BYTES}. */
  cmaMinBytes?: number;
  /** Use single copy (cross-memory attach) where it works. `VMCOMM_CMA=0` turns it off too. Default true. */
  cma?: boolean;
  /** Starting poll budget, in ns, before the wait loop sleeps; it adapts between the two bounds below. Default {@link DEFAULT_SPIN_BUDGET_NS}. */
  spinBudgetNs?: number;
  /** Lower bound of the adaptive budget, in ns. Default {@link DEFAULT_MIN_SPIN_NS}. */
  minSpinNs?: number;
  /** Upper bound of the adaptive budget, in ns: the longest the wait loop holds the event loop. Default {@link DEFAULT_MAX_SPIN_NS}. */
  maxSpinNs?: number;
  /** Frames one `poll()` delivers at most, over all rings. Default {@link DEFAULT_POLL_FRAMES_PER_CALL}. */
  pollFramesPerCall?: number;
  /**
   * `'spin'`: the wait loop spins; `'yield'`: it `sched_yield`s after every empty poll; `'auto'`
   * (default): yield when the host's ranks outnumber its cores.
   */
  waitMode?: 'auto' | 'spin' | 'yield';
  /** Where the files go: an absolute path to a tmpfs directory. Default {@link DEFAULT_SHM_DIRECTORY}. */
  directory?: string;
  /** How often, in ms, a sender waiting on a receiver checks that the receiver is still alive. Default {@link DEFAULT_LIVENESS_CHECK_MS}. */
  livenessCheckMs?: number;
}

/** {@link ShmInit} with every default applied, as {@link parseShmInit} returns it. */
export type ShmOptions = Readonly<Required<ShmInit>>;

/** Default {@link ShmInit.ringBytes}: 0, sized by the job ({@link autoRingBytes}). */
export const DEFAULT_RING_BYTES = 0;
/** Default {@link ShmInit.inboxSlots}: one per peer. */
export const DEFAULT_INBOX_SLOTS = 0;
/** Default {@link ShmInit.eagerLimitBytes}: 16 KiB. */
export const DEFAULT_EAGER_LIMIT_BYTES = 16 * 1024;
/** Default {@link ShmInit.eagerCredits}. */
export const DEFAULT_EAGER_CREDITS = 64;
/** Default {@link ShmInit.cmaMinBytes}: 64 KiB. */
export const DEFAULT_CMA_MIN_BYTES = 64 * 1024;
/** Default {@link ShmInit.spinBudgetNs}: 50 µs. */
export const DEFAULT_SPIN_BUDGET_NS = 50_000;
/** Default {@link ShmInit.minSpinNs}: 2 µs. */
export const DEFAULT_MIN_SPIN_NS = 2_000;
/** Default {@link ShmInit.maxSpinNs}: 200 µs. */
export const DEFAULT_MAX_SPIN_NS = 200_000;
/** Default {@link ShmInit.pollFramesPerCall}. */
export const DEFAULT_POLL_FRAMES_PER_CALL = 64;
/** Default {@link ShmInit.livenessCheckMs}. */
export const DEFAULT_LIVENESS_CHECK_MS = 100;

/** Per numeric field: the accepted integer range. */
const LIMITS: { readonly [K in Exclude<keyof ShmInit, 'waitMode' | 'cma' | 'directory'>]-?: readonly [min: number, max: number] } = {
  ringBytes: [0, MAX_RING_DATA_BYTES],
  inboxSlots: [0, MAX_INBOX_SLOTS],
  eagerLimitBytes: [0, 1024 * 1024 * 1024],
  eagerCredits: [1, 65_535],
  cmaMinBytes: [1, 2 ** 53 - 1],
  spinBudgetNs: [0, 1e9],
  minSpinNs: [0, 1e9],
  maxSpinNs: [0, 1e9],
  pollFramesPerCall: [1, 1_000_000],
  livenessCheckMs: [1, 3_600_000],
};
const WAIT_MODES = ['auto', 'spin', 'yield'] as const;

const DEFAULTS: ShmOptions = {
  ringBytes: DEFAULT_RING_BYTES,
  inboxSlots: DEFAULT_INBOX_SLOTS,
  eagerLimitBytes: DEFAULT_EAGER_LIMIT_BYTES,
  eagerCredits: DEFAULT_EAGER_CREDITS,
  cmaMinBytes: DEFAULT_CMA_MIN_BYTES,
  cma: true,
  spinBudgetNs: DEFAULT_SPIN_BUDGET_NS,
  minSpinNs: DEFAULT_MIN_SPIN_NS,
  maxSpinNs: DEFAULT_MAX_SPIN_NS,
  pollFramesPerCall: DEFAULT_POLL_FRAMES_PER_CALL,
  waitMode: 'auto',
  directory: DEFAULT_SHM_DIRECTORY,
  livenessCheckMs: DEFAULT_LIVENESS_CHECK_MS,
};

/**
 * Applies defaults and checks every field: integers in range (`ringBytes` and a non-zero
 * `inboxSlots` powers of two, `minSpinNs ≤ maxSpinNs`), `waitMode` one of its names, `cma` a boolean,
 * `directory` an absolute path, no unknown field. Throws `VmcommError('INVALID_ARGUMENT')`.
 */
export function parseShmInit(init: ShmInit = {}): ShmOptions {
  if (init === null || typeof init !== 'object') throw invalidArgument('shm init', 'an object', init);
  for (const key of Object.keys(init)) {
    if (!(key in DEFAULTS)) {
      throw new VmcommError('INVALID_ARGUMENT', `unknown shm option ${JSON.stringify(key)}; known options: ${Object.keys(DEFAULTS).join(', ')}`);
    }
  }
  const options: Record<string, unknown> = { ...DEFAULTS };
  for (const [key, [min, max]] of Object.entries(LIMITS)) {
    const value = (init as Record<string, unknown>)[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      throw invalidArgument(`shm option ${key}`, `an integer from ${min} to ${max}`, value);
    }
    options[key] = value;
  }
  const ring = options.ringBytes as number;
  if (ring !== 0 && (!isPowerOfTwo(ring) || ring < 4096)) throw invalidArgument('shm option ringBytes', `0 (sized by the job) or a power of two from 4096 to ${MAX_RING_DATA_BYTES}`, init.ringBytes);
  const slots = options.inboxSlots as number;
  if (slots !== 0 && (!isPowerOfTwo(slots) || slots < MIN_INBOX_SLOTS)) {
    throw invalidArgument('shm option inboxSlots', `0 (one per peer) or a power of two from ${MIN_INBOX_SLOTS} to ${MAX_INBOX_SLOTS}`, init.inboxSlots);
  }
  if ((options.minSpinNs as number) > (options.maxSpinNs as number)) {
    throw new VmcommError('INVALID_ARGUMENT', `shm option minSpinNs (${String(options.minSpinNs)}) must not exceed maxSpinNs (${String(options.maxSpinNs)})`);
  }
  if (init.waitMode !== undefined) {
    if (!(WAIT_MODES as readonly unknown[]).includes(init.waitMode)) throw invalidArgument('shm option waitMode', `one of ${WAIT_MODES.join(', ')}`, init.waitMode);
    options.waitMode = init.waitMode;
  }
  if (init.cma !== undefined) {
    if (typeof init.cma !== 'boolean') throw invalidArgument('shm option cma', 'a boolean', init.cma);
    options.cma = init.cma;
  }
  if (init.directory !== undefined) {
    if (typeof init.directory !== 'string' || !path.isAbsolute(init.directory) || init.directory.includes('\0')) {
      throw invalidArgument('shm option directory', 'an absolute path', init.directory);
    }
    options.directory = path.resolve(init.directory);
  }
  return options as unknown as ShmOptions;
}

/**
 * The shm backend factory. Options are checked here, so a bad one fails before any rank starts.
 *
 * @throws `VmcommError('INVALID_ARGUMENT')` for a bad {@link ShmInit}.
 */
export function shm(init?: ShmInit): BackendFactory {
  const options = parseShmInit(init);
  return Object.assign((components: BackendComponents) => new ShmTransport(components, options), {
    transportName: 'shm' as const,
  });
}
