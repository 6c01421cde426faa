/**
 * @packageDocumentation
 *
 * The `ivshmem` transport: ranks in *different VMs of one host* talk through a block of host memory
 * that every VM maps — QEMU's `ivshmem-plain` device (PCI 1af4:1110, BAR 2), a file such as
 * `/dev/shm/NAME` on the host — at priority 40, role `'local'`: below `shm` (same OS), above `tcp`.
 * This is Huang, Koop, Gao and Panda's (SC'07) inter-VM shared memory, found automatically.
 *
 * - **Regions.** The region format (header, membership table, ring allocator, rings) is in
 *   `region-layout.ts`; `region.ts` is its facade. `start()` attaches the regions named by the
 *   factory's `regions`, else `VMCOMM_IVSHMEM` (comma-separated paths: host files, or a guest's
 *   `/sys/bus/pci/devices/…/resource2`), else every PCI device 1af4:1110 it finds (`attach.ts`),
 *   and joins each as a member: one membership slot per rank per region. No region, no free slot, a
 *   revoked or unformatted region: `start()` returns `undefined` with the reason, and pairs use tcp.
 * - **Card and probe** (DESIGN section 4). The card lists, per attached region, its UUID and this
 *   rank's slot and slot generation. A pair's region is the first, in UUID order, that both cards
 *   list (the same at both ends, so both rings of a pair live in one region). `probe(peer)` accepts
 *   a peer only when that region holds, at the slot the peer's card names, an ACTIVE member with the
 *   peer's job id, process nonce and rank — proof that both map the same memory — *and* a ring from
 *   this rank to the peer could be allocated there. The core uses the pair only when both directions
 *   were proven (the bitmap rule), so both ends always agree.
 * - **Ring reservation, and falling back when a region is full.** A ring is allocated by its
 *   producer, so each side reserves *its own* outbound ring inside `probe()`: a region too full to
 *   give one makes that side's probe answer false, and the pair falls back to tcp on both ends,
 *   because a pair needs both bits. A side whose probe succeeded while the other's failed — or whose
 *   pair went to a higher-priority transport — releases its reservation in `addPeers()`, which lists
 *   exactly the pairs that use ivshmem. So every pair that uses ivshmem has both rings before any
 *   frame moves, and no pair can run out of ring space later. A rank whose ivshmem was chosen for
 *   no pair at all (every peer in its own OS: shm won) leaves its regions at `addPeers([])`, which
 *   the core calls for every started transport, so its slot and reservations go back at once.
 * - **Channels.** Outbound: the ring layer's `RingChannel` over the reserved ring, created on
 *   first `connect()`; the "inbox" it announces to and rings is a stand-in over the peer's slot
 *   (`ivshmem-channel.ts`): nothing to announce (the ring is in the region's table), no doorbell.
 *   Inbound: the ring layer's `Poller`, fed by a discovery that reads the region's ring table
 *   (`RingAllocator.ringsTo`) for rings addressed to this rank's slot. No kernel object is shared —
 *   no file lock, no futex, no process id — so it works across VMs. Every word read from the region
 *   is read once and validated (the ring layer and the region modules): garbage written by another
 *   VM gives `CORRUPT` on that channel, never an out-of-bounds access, a crash or a hang.
 * - **Signalling** without a shared kernel: the core polls synchronously (`poll()`); in between, the
 *   ring layer's `WaitingPolicy` spins for an adaptive budget, then this transport's back-off
 *   sleeper (`backoff.ts`) polls once per event-loop turn for `yieldMs`, then sleeps, for an
 *   interval that doubles from `minSleepMs` (50 µs) to `maxSleepMs` (4 ms) — on the addon's waiter
 *   thread (a futex wait with a timeout on a private word: microsecond precision, no kernel object
 *   shared with anyone), else on timers. A message after a pause of `t` waits at most about `t`
 *   more, capped at `maxSleepMs`; only a rank idle for long (over 0.4 s) sleeps longer, up to
 *   `idleSleepMs` (50 ms) but never more than 1 % of its idle time, so a long silence costs almost
 *   no CPU and the message that ends it at most 1 % extra delay. Doorbell interrupts (ivshmem-doorbell with
 *   ivshmem-server's eventfds) are not used yet; the slot's doorbell and waiter words are reserved
 *   for them.
 * - **Heartbeats and dead peers.** A worker thread (`heartbeat.ts`, one per thread of the program)
 *   bumps each member's heartbeat word every `heartbeatMs`, so long computations and GC pauses of the
 *   main thread never look like death (the peer-watch timer beats too, which covers the worker's
 *   start-up). Each rank watches its peers' slots (`liveness.ts`): a peer whose heartbeat has not
 *   moved for `peerTimeoutMs` by the observer's own clock is reported lost (`PEER_LOST`), its slot
 *   is reclaimed and this rank's rings with it are released; a peer whose slot became free while its
 *   ring to this rank is still live ended without finalizing (its exit hook frees its slot at once)
 *   and is reported lost too; one that finalized is not. Members of other jobs whose heartbeat
 *   stopped for `reclaimTimeoutMs` are reclaimed as well (`RegionWatch`), so dead ranks never fill a
 *   region for good.
 * - **Finalize** (`stop()`) frees this rank's slot and rings — a ring whose reader has not drained it
 *   stays until the reader lets go — and never touches the region itself.
 * - **Migration.** A revoked region (`vmcomm ivshmem revoke`, as a host does before migrating a VM)
 *   is drained, not dropped: the transport asks the core to move its pairs (`paths.leave`); they go
 *   to tcp while the rings still work, each pair is released once both directions left it
 *   (`release`), and the last release leaves the region. Restored (`vmcomm ivshmem restore`), or a new
 *   region attached (`vmcomm ivshmem attach`, `attachResource`), it is joined as a new member, and
 *   `paths.available` lets the core move pairs back once both ends probed the new memberships
 *   (`card`, `probe`, `admit`). Without a core that migrates (a transport used on its own), a
 *   revoked region is left and its pairs are reported lost.
 * - **Trust, and the optional MAC.** Every VM given a region can read every pair's frames, forge
 *   frames of any pair in it and deny service (zero a ring, hold slots); none can make a rank read or
 *   write outside the region (every word read from it is validated). `mac: true` (or
 *   `VMCOMM_IVSHMEM_MAC=1`) adds a per-frame MAC keyed by the job secret (`frame-mac.ts`): a frame
 *   forged, altered, replayed, reordered or dropped by anyone without the secret fails its pair with
 *   `CORRUPT` before the core sees it. It goes in the card; a pair uses it when either card asks.
 * - **Copies.** Both sides copy (into the ring, out of it): single copy (`VMCOMM_CMA`) needs one
 *   kernel, so it does not apply across VMs.
 *
 * The transport needs the native addon (to map a file or a BAR as a `SharedArrayBuffer`).
 *
 * Managing regions: `runIvshmemCommand` (`cli.ts`, not loaded with the transport) implements
 * `vmcomm ivshmem create --size 64M PATH | show PATH | revoke PATH | restore PATH | attach PATH`. Two guests
 * sharing a region (the host file must exist, formatted, before QEMU starts):
 *
 * ```sh
 * npx vmcomm ivshmem create --size 64M /dev/shm/vmcomm-region
 * qemu-system-x86_64 … -object memory-backend-file,id=hostmem,share=on,mem-path=/dev/shm/vmcomm-region,size=64M \
 *                      -device ivshmem-plain,memdev=hostmem        # guest 1
 * qemu-system-x86_64 … -object memory-backend-file,id=hostmem,share=on,mem-path=/dev/shm/vmcomm-region,size=64M \
 *                      -device ivshmem-plain,memdev=hostmem        # guest 2
 * ```
 *
 * Inside each guest the region is `/sys/bus/pci/devices/<addr>/resource2` (root-only by default),
 * found by the PCI scan; ranks need nothing configured.
 *
 * @example
 * Two ranks in one process over a region file, with hand-made components (the core normally builds
 * them; a launcher job gets the same between VMs):
 *
 * ```ts
 * import { hostname } from 'node:os';
 * import { formatRegionFile } from './backends/ivshmem/admin.js';
 * import { ivshmem } from './backends/ivshmem/index.js';
 * import { emptyHeader, encodeHeader } from './lib/protocol.js';
 *
 * formatRegionFile('/tmp/vmcomm-demo-region', 1 << 20);
 * let arrived!: () => void;
 * const delivered = new Promise<void>((resolve) => (arrived = resolve));
 * const sink = (rank: number) => ({
 *   begin: (peer: number) => (console.log(`rank ${rank}: frame from rank ${peer}`), new Uint8Array(5)),
 *   commit: () => arrived(),
 *   lost: () => {},
 * });
 * const factory = ivshmem({ regions: ['/tmp/vmcomm-demo-region'] });
 * const [a, b] = [0, 1].map((rank) =>
 *   factory({ rank, size: 2, jobId: 'demo', jobSecret: new Uint8Array(32), processNonce: 'p', address: '127.0.0.1', sink: sink(rank) }),
 * );
 * const fields = await Promise.all([a.start(), b.start()]);
 * const card = (rank: number) =>
 *   ({ rank, processNonce: 'p', hostname: hostname(), pid: process.pid, address: '127.0.0.1', backends: { ivshmem: fields[rank]! }, priorities: { ivshmem: 40 } });
 * console.log(await a.probe(card(1)), await b.probe(card(0)));
 * a.addPeers([1]);
 * b.addPeers([0]);
 * const channel = await a.connect(1);
 * channel.send(encodeHeader({ ...emptyHeader(), payloadBytes: 5, messageBytes: 5 }, new Uint8Array(48)), new TextEncoder().encode('hello'));
 * await delivered;
 * await Promise.all([a.stop(), b.stop()]);
 * ```
 *
 * Output:
 *
 * ```
 * true true
 * rank 1: frame from rank 0
 * ```
 *
 * @module
 */

import type { BackendComponents, BackendFactory } from '../../lib/backend.js';
import { VmcommError, invalidArgument } from '../../lib/errors.js';
import { DEFAULT_RECLAIM_TIMEOUT_MS } from './membership.js';
import { IvshmemTransport } from './ivshmem-transport.js';

export { IvshmemTransport } from './ivshmem-transport.js';

/** Options of the ivshmem transport. Every field is optional; units are in the names. */
export interface IvshmemInit {
  /**
   * Region paths to attach (host files or guest `resource2` files). Default: `VMCOMM_IVSHMEM`
   * (comma-separated), else every PCI device 1af4:1110 found under `/sys/bus/pci/devices`.
   */
  regions?: readonly string[];
  /** Largest payload sent eagerly, in bytes. Default {@link DEFAULT_EAGER_LIMIT_BYTES}. */
  eagerLimitBytes?: number;
  /** Eager messages one sender may have outstanding at one receiver. Default {@link DEFAULT_EAGER_CREDITS}. */
  eagerCredits?: number;
  /** How often the heartbeat thread bumps this rank's heartbeat, in ms. Default {@link DEFAULT_HEARTBEAT_MS}. */
  heartbeatMs?: number;
  /** A peer whose heartbeat has not moved for this long (this rank's clock) is lost, in ms. Default {@link DEFAULT_PEER_TIMEOUT_MS}. */
  peerTimeoutMs?: number;
  /**
   * Members of any job whose heartbeat has not moved for this long are reclaimed, in ms (at least
   * `peerTimeoutMs`). Every user of a region must heartbeat well within it. Default
   * {@link DEFAULT_RECLAIM_TIMEOUT_MS} (30 s).
   */
  reclaimTimeoutMs?: number;
  /** Starting poll budget, in ns, before the wait loop backs off. Default {@link DEFAULT_SPIN_BUDGET_NS}. */
  spinBudgetNs?: number;
  /** Lower bound of the adaptive budget, in ns. Default {@link DEFAULT_MIN_SPIN_NS}. */
  minSpinNs?: number;
  /** Upper bound of the adaptive budget, in ns. Default {@link DEFAULT_MAX_SPIN_NS}. */
  maxSpinNs?: number;
  /** After the spin, poll once per event-loop turn for this long, in ms. Default {@link DEFAULT_YIELD_MS}. */
  yieldMs?: number;
  /** Then sleep this long between polls, in ms, doubling … Default {@link DEFAULT_MIN_SLEEP_MS}. */
  minSleepMs?: number;
  /** … up to this, in ms: the longest a rank idle for a short while takes to notice a message. Default {@link DEFAULT_MAX_SLEEP_MS}. */
  maxSleepMs?: number;
  /**
   * A rank idle for long sleeps up to this, in ms, at most 1 % of its idle time so far (so the
   * message that ends a silence of `t` waits at most `t`/100 more). `maxSleepMs` turns it off.
   * Default {@link DEFAULT_IDLE_SLEEP_MS}.
   */
  idleSleepMs?: number;
  /** Frames one `poll()` delivers at most, over all rings. Default {@link DEFAULT_POLL_FRAMES_PER_CALL}. */
  pollFramesPerCall?: number;
  /**
   * `'spin'`: the wait loop spins; `'yield'`: it `sched_yield`s after every empty poll; `'auto'`
   * (default): yield when this rank's ivshmem peers outnumber this OS's cores.
   */
  waitMode?: 'auto' | 'spin' | 'yield';
  /**
   * Authenticate every frame with a MAC keyed by the job secret (`frame-mac.ts`), for regions shared
   * with VMs trusted less than the job: a forged, altered, replayed, reordered or dropped frame fails
   * its pair with `CORRUPT`. `VMCOMM_IVSHMEM_MAC=1` turns it on too. A pair uses it when either rank
   * asks. Default false.
   */
  mac?: boolean;
}

/** {@link IvshmemInit} with every default applied (`regions` stays optional). */
export type IvshmemOptions = Readonly<Required<Omit<IvshmemInit, 'regions'>>> & { readonly regions: readonly string[] | undefined };

/** Default {@link IvshmemInit.eagerLimitBytes}: 16 KiB. */
export const DEFAULT_EAGER_LIMIT_BYTES = 16 * 1024;
/** Default {@link IvshmemInit.eagerCredits}. */
export const DEFAULT_EAGER_CREDITS = 64;
/** Default {@link IvshmemInit.heartbeatMs}. */
export const DEFAULT_HEARTBEAT_MS = 100;
/** Default {@link IvshmemInit.peerTimeoutMs}: 10 s, a hundred heartbeats. */
export const DEFAULT_PEER_TIMEOUT_MS = 10_000;
/** Default {@link IvshmemInit.spinBudgetNs}: 50 µs. */
export const DEFAULT_SPIN_BUDGET_NS = 50_000;
/** Default {@link IvshmemInit.minSpinNs}: 2 µs. */
export const DEFAULT_MIN_SPIN_NS = 2_000;
/** Default {@link IvshmemInit.maxSpinNs}: 200 µs. */
export const DEFAULT_MAX_SPIN_NS = 200_000;
/** Default {@link IvshmemInit.yieldMs}: 250 µs. */
export const DEFAULT_YIELD_MS = 0.25;
/** Default {@link IvshmemInit.minSleepMs}: 50 µs (the addon's waiter thread sleeps that precisely; a timer would take 1 ms). */
export const DEFAULT_MIN_SLEEP_MS = 0.05;
/** Default {@link IvshmemInit.maxSleepMs}. */
export const DEFAULT_MAX_SLEEP_MS = 4;
/** Default {@link IvshmemInit.idleSleepMs}: reached after 5 s of silence. */
export const DEFAULT_IDLE_SLEEP_MS = 50;
/** Default {@link IvshmemInit.pollFramesPerCall}. */
export const DEFAULT_POLL_FRAMES_PER_CALL = 64;
export { DEFAULT_RECLAIM_TIMEOUT_MS };

/** Per numeric field: the accepted range (integers, but for the millisecond fields of the back-off). */
const LIMITS: { readonly [K in Exclude<keyof IvshmemInit, 'regions' | 'waitMode' | 'mac'>]-?: readonly [min: number, max: number, integer: boolean] } = {
  eagerLimitBytes: [0, 1024 * 1024 * 1024, true],
  eagerCredits: [1, 65_535, true],
  heartbeatMs: [1, 60_000, true],
  peerTimeoutMs: [10, 86_400_000, true],
  reclaimTimeoutMs: [10, 86_400_000, true],
  spinBudgetNs: [0, 1e9, true],
  minSpinNs: [0, 1e9, true],
  maxSpinNs: [0, 1e9, true],
  yieldMs: [0, 60_000, false],
  minSleepMs: [0, 60_000, false],
  maxSleepMs: [0, 60_000, false],
  idleSleepMs: [0, 60_000, false],
  pollFramesPerCall: [1, 1_000_000, true],
};
const WAIT_MODES = ['auto', 'spin', 'yield'] as const;

const DEFAULTS: IvshmemOptions = {
  regions: undefined,
  eagerLimitBytes: DEFAULT_EAGER_LIMIT_BYTES,
  eagerCredits: DEFAULT_EAGER_CREDITS,
  heartbeatMs: DEFAULT_HEARTBEAT_MS,
  peerTimeoutMs: DEFAULT_PEER_TIMEOUT_MS,
  reclaimTimeoutMs: DEFAULT_RECLAIM_TIMEOUT_MS,
  spinBudgetNs: DEFAULT_SPIN_BUDGET_NS,
  minSpinNs: DEFAULT_MIN_SPIN_NS,
  maxSpinNs: DEFAULT_MAX_SPIN_NS,
  yieldMs: DEFAULT_YIELD_MS,
  minSleepMs: DEFAULT_MIN_SLEEP_MS,
  maxSleepMs: DEFAULT_MAX_SLEEP_MS,
  idleSleepMs: DEFAULT_IDLE_SLEEP_MS,
  pollFramesPerCall: DEFAULT_POLL_FRAMES_PER_CALL,
  waitMode: 'auto',
  mac: false,
};

/**
 * Applies defaults and checks every field: numbers in range, `minSpinNs ≤ maxSpinNs`,
 * `minSleepMs ≤ maxSleepMs`, `heartbeatMs` well below `peerTimeoutMs` (at most a quarter),
 * `peerTimeoutMs ≤ reclaimTimeoutMs` (a reclaim timeout given alone is raised to the peer timeout),
 * `regions` non-empty strings, `mac` a boolean, no unknown field. Throws `VmcommError('INVALID_ARGUMENT')`.
 */
export function parseIvshmemInit(init: IvshmemInit = {}): IvshmemOptions {
  if (init === null || typeof init !== 'object') throw invalidArgument('ivshmem init', 'an object', init);
  for (const key of Object.keys(init)) {
    if (!(key in DEFAULTS)) throw new VmcommError('INVALID_ARGUMENT', `unknown ivshmem option ${JSON.stringify(key)}; known options: ${Object.keys(DEFAULTS).join(', ')}`);
  }
  const options: Record<string, unknown> = { ...DEFAULTS };
  for (const [key, [min, max, integer]] of Object.entries(LIMITS)) {
    const value = (init as Record<string, unknown>)[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || (integer && !Number.isSafeInteger(value)) || value < min || value > max) {
      throw invalidArgument(`ivshmem option ${key}`, `${integer ? 'an integer' : 'a number'} from ${min} to ${max}`, value);
    }
    options[key] = value;
  }
  const o = options as unknown as IvshmemOptions;
  if (o.minSpinNs > o.maxSpinNs) throw new VmcommError('INVALID_ARGUMENT', `ivshmem option minSpinNs (${o.minSpinNs}) must not exceed maxSpinNs (${o.maxSpinNs})`);
  if (o.minSleepMs > o.maxSleepMs) throw new VmcommError('INVALID_ARGUMENT', `ivshmem option minSleepMs (${o.minSleepMs}) must not exceed maxSleepMs (${o.maxSleepMs})`);
  if (init.idleSleepMs === undefined) options.idleSleepMs = Math.max(o.idleSleepMs, o.maxSleepMs);
  else if (init.idleSleepMs < o.maxSleepMs) throw new VmcommError('INVALID_ARGUMENT', `ivshmem option idleSleepMs (${init.idleSleepMs}) must be at least maxSleepMs (${o.maxSleepMs})`);
  if (o.heartbeatMs * 4 > o.peerTimeoutMs) {
    throw new VmcommError('INVALID_ARGUMENT', `ivshmem option heartbeatMs (${o.heartbeatMs}) must be at most a quarter of peerTimeoutMs (${o.peerTimeoutMs}), or live peers would look dead`);
  }
  if (init.reclaimTimeoutMs === undefined) options.reclaimTimeoutMs = Math.max(o.reclaimTimeoutMs, o.peerTimeoutMs);
  else if (init.reclaimTimeoutMs < o.peerTimeoutMs) {
    throw new VmcommError('INVALID_ARGUMENT', `ivshmem option reclaimTimeoutMs (${init.reclaimTimeoutMs}) must be at least peerTimeoutMs (${o.peerTimeoutMs})`);
  }
  if (init.waitMode !== undefined) {
    if (!(WAIT_MODES as readonly unknown[]).includes(init.waitMode)) throw invalidArgument('ivshmem option waitMode', `one of ${WAIT_MODES.join(', ')}`, init.waitMode);
    options.waitMode = init.waitMode;
  }
  if (init.mac !== undefined) {
    if (typeof init.mac !== 'boolean') throw invalidArgument('ivshmem option mac', 'a boolean', init.mac);
    options.mac = init.mac;
  }
  if (init.regions !== undefined) {
    if (!Array.isArray(init.regions) || init.regions.some((p) => typeof p !== 'string' || p === '' || p.includes('\0'))) {
      throw invalidArgument('ivshmem option regions', 'an array of file paths', init.regions);
    }
    options.regions = [...init.regions];
  }
  return options as unknown as IvshmemOptions;
}

/**
 * The ivshmem backend factory. Options are checked here, so a bad one fails before any rank starts.
 *
 * @throws `VmcommError('INVALID_ARGUMENT')` for a bad {@link IvshmemInit}.
 */
export function ivshmem(init?: IvshmemInit): BackendFactory {
  const options = parseIvshmemInit(init);
  return Object.assign((components: BackendComponents) => new IvshmemTransport(components, options), {
    transportName: 'ivshmem' as const,
  });
}
