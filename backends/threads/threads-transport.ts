/**
 * The threads {@link Transport}: ranks that are threads of one process talk through rings carved from
 * each rank's arena (see `arena.ts`), found through each rank's inbox (`lib/ring/inbox.ts`), proven
 * to share the process through a `BroadcastChannel` (see `directory.ts`).
 *
 * ## Progress and waiting
 *
 * `poll()` — what the core calls from `test()`, `iprobe()` and the spin of blocking waits — takes new
 * ring announcements, reads every announced ring (two atomic loads each when idle) and writes what
 * waits in blocked send queues (`lib/ring/ring-progress.ts`, shared with shm). Between the core's
 * calls a {@link WaitingPolicy} keeps polling from the event loop for an adaptive budget, then
 * sleeps with `Atomics.waitAsync` on this rank's doorbell after raising its waiter flag. A sender
 * publishes, then, only when that flag is up, lowers it, increments the doorbell and calls
 * `Atomics.notify` (one sender per sleep: `lib/ring/inbox.ts`). A pending `waitAsync` does not keep
 * Node alive; the core's own handle (from `init()` to `finalize()`) does.
 *
 * When the process hosts more thread-ranks than it has cores, an empty poll calls `sched_yield` (the
 * native addon's, loaded for this if it is built), so a thread-rank that has work gets the core — in
 * the core's blocking waits, which spin on `poll()`, and in the wait loop's turns. Without the addon,
 * or when a peer runs on this very thread (an in-process test job), the wait loop polls once per
 * event-loop turn instead of spinning (`chooseWaiting` in `lib/ring/waiting.ts`).
 *
 * ## Large payloads
 *
 * A payload of `singleCopyMinBytes` or more is not copied through the ring (two copies) but once,
 * from the sender's buffer into the receiver's target, by `memcpy` between pinned views of the native
 * addon (`pins.ts`; the protocol, a descriptor behind a gate in the ring, is
 * `lib/ring/single-copy-sink.ts`); from 64 KiB on both threads copy a half. Without the addon
 * (it is optional for this transport) payloads stream through the ring in pieces.
 *
 * ## Lifecycle
 *
 * `start()` allocates the arena and posts this rank's hello; `probe()` waits (briefly) for a peer's
 * hello with the nonce of its card; `addPeers()` closes the directory and starts the wait loop;
 * `connect()` carves a ring and announces it; `stop()` marks the inbox closed, detaches the rings,
 * and wakes everyone who might wait on this rank. A thread that ends without `stop()` (an uncaught
 * exception, `process.exit`) marks its inbox *gone* from a process `exit` hook; one terminated
 * (`worker.terminate()`, which runs no JavaScript) has the addon mark it as its environment is torn
 * down (`NativeAddon.onThreadEnd`). Peers sending to it (a full ring, a single copy at the gate) fail
 * with `PEER_LOST` at their next check, and every {@link PEER_SWEEP_MS} each rank reports served
 * peers whose inbox says gone, so a receive from one fails too instead of hanging.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { threadId } from 'node:worker_threads';
import type { BackendComponents, CardFields, Channel, LocalityCard, Transport } from '../../lib/backend.js';
import { forgetAtExit, goneAtExit } from '../../lib/exit-hook.js';
import { VmcommError, invalidArgument } from '../../lib/errors.js';
import { DOORBELL_WORD, Inbox, InboxSender, InboxState, inboxBytes, STATE_WORD } from '../../lib/ring/inbox.js';
import { Poller } from '../../lib/ring/poller.js';
import { nextPowerOfTwo } from '../../lib/ring/region.js';
import { PendingChannels } from '../../lib/ring/ring-channel.js';
import { SingleCopyChannel, singleCopyCounts, type SingleCopyCounts } from '../../lib/ring/single-copy-channel.js';
import { SingleCopyControl } from '../../lib/ring/single-copy-control.js';
import { PIECE_BYTES, SingleCopySink } from '../../lib/ring/single-copy-sink.js';
import { RingConsumer, ringRegionBytes } from '../../lib/ring/spsc-ring.js';
import { chooseWaiting, type Sleeper, type WaitingPolicy } from '../../lib/ring/waiting.js';
import { RingProgress } from '../../lib/ring/ring-progress.js';
import { CellWatchers, COLLECTIVE_CELLS, type CellPlace, type RegionCollectiveCells } from '../../lib/ring/collective-cells.js';
import { tryLoadNative, type NativeAddon } from '../native/native.js';
import { Arena, cellOffset, controlOf, decodeRingDescriptor, encodeRingDescriptor, ringsStart } from './arena.js';
import { pinReader, pinWriter } from './pins.js';
import { ThreadDirectory, type ThreadPeer } from './directory.js';
import { DEFAULT_RING_BUDGET_BYTES, MAX_AUTO_RING_BYTES, MIN_AUTO_RING_BYTES, type ThreadsOptions } from './options.js';
import { hostCores } from '../../lib/launch/binding.js';
import { PollSweep } from '../../lib/ring/poll-sweep.js';

/** A peer proven to be a thread of this process. */
interface PeerLink {
  readonly info: ThreadPeer;
  readonly inbox: InboxSender;
}

/** The most announcement slots an inbox gets (more peers than this retry when it is full). */
const MAX_SLOTS = 1024;
/** Rings never shrink below this to fit `arenaBytes`. */
const MIN_FITTED_RING_BYTES = 4096;
/** An idle rank's sleep ends after this long anyway (a cheap re-check). */
const IDLE_SLEEP_MS = 1_000;
/** How often a rank looks for served peers whose inbox says gone (one load per peer). */
const PEER_SWEEP_MS = 500;
/** How often a channel waiting on its reader (a full ring, an unanswered descriptor) checks that the reader's inbox is still open. */
const READER_CHECK_MS = 100;

/** The largest power of two ≤ `n` (n ≥ 1), 1 for smaller n. */
function floorPowerOfTwo(n: number): number {
  let p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

/** The threads transport of one world. Build it with `threads(init)(components)`. */
export class ThreadsTransport implements Transport {
  readonly name = 'threads';
  readonly priority = 80;
  readonly role = 'local';
  readonly eagerLimitBytes: number;
  readonly eagerCredits: number;
  unavailableReason: string | undefined = undefined;
  readonly [Symbol.toStringTag] = '@vmcomm/threads';

  /** In this rank's card; a peer's hello must carry the same. */
  readonly nonce = randomBytes(16).toString('hex');
  private arena: Arena | undefined;
  private inbox: Inbox | undefined;
  private directory: ThreadDirectory | undefined;
  private readonly links = new Map<number, PeerLink>();
  private served = new Set<number>();
  private readonly channels = new Map<number, SingleCopyChannel>();
  private readonly pending = new PendingChannels<SingleCopyChannel>();
  /** Rings this rank reads, by producer: their single-copy control blocks, and their consumers (closed when the peer is lost). */
  private readonly inbound = new Map<number, { readonly control: SingleCopyControl; readonly consumer: RingConsumer }>();
  /** The native addon, when it is built: its pins (single copy; see the module comment) and `sched_yield`. */
  private pins: NativeAddon | undefined;
  /** Turns single-copy descriptors into the frames they stand for (absent without the addon). */
  private singleCopySink: SingleCopySink | undefined;
  /** Checks of collectives waiting on cells, called on every poll (`lib/ring/collective-cells.ts`). */
  private readonly watchers = new CellWatchers();
  private poller: Poller | undefined;
  /** The looks at everything this rank reads, for `poll()` and the wait loop (built at addPeers). */
  private looks: RingProgress | undefined;
  private policy: WaitingPolicy | undefined;
  /** Poll once per event-loop turn instead of spinning (decided at addPeers). */
  private yieldMode = false;
  /** Ends an empty poll when thread-ranks outnumber cores: the addon's `sched_yield` (decided at addPeers). */
  private schedYield: (() => void) | undefined;
  /** The addon's store of GONE into our inbox state if this thread is terminated (see the module comment). */
  private threadEnd: number | undefined;
  /** Peers reported lost (each once, whoever noticed: the sweep, a channel, a single-copy read). */
  private readonly lostPeers = new Set<number>();
  /** The peer sweep, from its timer or from `poll()` (a `test()` loop that never yields runs no timer). */
  private sweeps: PollSweep | undefined;
  private starting: Promise<CardFields | undefined> | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly components: BackendComponents,
    private readonly options: ThreadsOptions,
  ) {
    this.eagerLimitBytes = options.eagerLimitBytes;
    this.eagerCredits = options.eagerCredits;
  }

  /** The number of rings this rank has carved and the bytes of its arena in use (diagnostics). */
  get memory(): { arenaBytes: number; usedBytes: number; rings: number } {
    const a = this.arena;
    return { arenaBytes: a?.sab.byteLength ?? 0, usedBytes: a?.usedBytes ?? 0, rings: this.channels.size };
  }

  /** Single-copy counters (diagnostics, tests): see {@link SingleCopyCounts}. */
  get singleCopyCounts(): SingleCopyCounts {
    return singleCopyCounts(this.channels.values(), this.singleCopySink);
  }

  /** The wait loop's state and counters (diagnostics, tests). */
  get waiting(): { state: string; spinBudgetNs: number; yieldBetweenPolls: boolean; yieldOnEmpty: boolean; counts: WaitingPolicy['counts'] } | undefined {
    const p = this.policy;
    return p && { state: p.state, spinBudgetNs: p.spinBudgetNs, yieldBetweenPolls: this.yieldMode, yieldOnEmpty: this.schedYield !== undefined, counts: p.counts };
  }

  /** Allocates the arena (lazily committed), opens the directory, posts the hello. */
  start(): Promise<CardFields | undefined> {
    this.starting ??= this.open();
    return this.starting;
  }

  private async open(): Promise<CardFields | undefined> {
    const { size } = this.components;
    if (size < 2) return this.unavailable('a world of one has no peer to reach');
    if (typeof SharedArrayBuffer !== 'function' || typeof Atomics.waitAsync !== 'function') {
      return this.unavailable('this runtime lacks SharedArrayBuffer or Atomics.waitAsync');
    }
    const slots = Math.min(MAX_SLOTS, nextPowerOfTwo(Math.max(2, size - 1)));
    const ringBytes = this.fitRingBytes(size - 1);
    if (ringBytes === undefined) {
      return this.unavailable(`arenaBytes ${this.options.arenaBytes} cannot hold ${size - 1} rings of at least ${MIN_FITTED_RING_BYTES} bytes`);
    }
    this.arena = new Arena({ slots, ringBytes, rings: size - 1 });
    this.inbox = new Inbox(this.arena.inbox);
    this.directory = new ThreadDirectory(this.components.jobId, {
      rank: this.components.rank,
      nonce: this.nonce,
      threadId,
      arena: this.arena.sab,
      slots,
      ringBytes,
    });
    try {
      await this.directory.open();
    } catch (error) {
      this.directory.close();
      return this.unavailable((error as Error).message);
    }
    goneAtExit(this);
    // The addon is optional here: with it, large payloads go by single copy, and a terminated thread
    // still marks its inbox gone (see the module comment).
    this.pins = tryLoadNative().addon;
    this.threadEnd = this.pins?.onThreadEnd(this.arena.sab, STATE_WORD * 4, InboxState.OPEN, InboxState.GONE);
    // singleCopy: what this rank's sends do (for `vmcomm info`); peers read descriptors either way.
    return { nonce: this.nonce, threadId, ringBytes, singleCopy: this.options.singleCopy && this.pins !== undefined };
  }

  /** The ring size for `peers` peers (see `ThreadsInit.ringBytes` and `arenaBytes`), or undefined when none fits. */
  private fitRingBytes(peers: number): number | undefined {
    const { ringBytes, arenaBytes } = this.options;
    if (ringBytes === 0) {
      const budget = arenaBytes === 0 ? DEFAULT_RING_BUDGET_BYTES : arenaBytes;
      const share = floorPowerOfTwo(Math.floor(budget / peers));
      if (arenaBytes === 0) return Math.min(MAX_AUTO_RING_BYTES, Math.max(MIN_AUTO_RING_BYTES, share));
      return share < MIN_FITTED_RING_BYTES ? undefined : Math.min(MAX_AUTO_RING_BYTES, share);
    }
    if (arenaBytes === 0) return ringBytes;
    let fitted = ringBytes;
    while (peers * fitted > arenaBytes) {
      if (fitted / 2 < MIN_FITTED_RING_BYTES) return undefined;
      fitted /= 2;
    }
    return fitted;
  }

  private unavailable(reason: string): undefined {
    this.unavailableReason = reason;
    return undefined;
  }

  /**
   * True when `peer` is a thread of this process: its hello arrived on this job's channel with the
   * nonce of its card. A different pid or host name rules that out at once (a process has one of
   * each); equal ones prove nothing (containers), so the hello is awaited, up to `probeTimeoutMs`.
   */
  async probe(peer: LocalityCard): Promise<boolean> {
    const { rank } = this.components;
    const fields = peer.backends?.[this.name];
    const directory = this.directory;
    if (directory === undefined || fields === undefined || peer.rank === rank) return false;
    const nonce = fields.nonce;
    if (typeof nonce !== 'string' || nonce === '') return false;
    if (peer.pid !== process.pid || peer.hostname !== hostname()) return false;
    const info = await directory.waitFor(peer.rank, nonce, this.options.probeTimeoutMs);
    if (info === undefined) return false;
    if (info.threadId === threadId && !this.options.allowSameThread) return false;
    try {
      // Validates the peer's inbox layout (CORRUPT otherwise), its ring size, and that its arena holds
      // the collective cells (which collectiveCells() maps without further checks).
      ringRegionBytes(info.ringBytes);
      if (info.arena.byteLength < ringsStart(info.slots)) throw new VmcommError('CORRUPT', `an arena of ${info.arena.byteLength} bytes, too small for its inbox and collective cells`);
      const inbox = new InboxSender({ sab: info.arena, byteOffset: 0, byteLength: inboxBytes(info.slots) });
      this.links.set(peer.rank, { info, inbox });
      return true;
    } catch (error) {
      this.components.logger?.warn(`vmcomm:threads: rank ${peer.rank}'s arena is unusable: ${(error as Error).message}`);
      return false;
    }
  }

  /** Remembers the peers threads serves, closes the directory and starts the wait loop. */
  addPeers(peers: readonly number[]): void {
    this.served = new Set(peers);
    this.directory?.close();
    const inbox = this.inbox;
    if (inbox === undefined || peers.length === 0 || this.stopping !== undefined) return;
    // A peer may send descriptors whatever this rank's own `singleCopy` says: the reading side is always ready.
    let sink = this.components.sink;
    if (this.pins !== undefined) {
      sink = this.singleCopySink = new SingleCopySink(sink, pinReader(this.pins), {
        pidOf: () => process.pid,
        allowed: (peer) => this.links.has(peer),
        control: (peer) => this.inbound.get(peer)?.control,
        wakeProducer: (peer) => this.wake(peer, true),
        fail: (peer, error) => this.lost(peer, error, true), // a single-copy frame was open
      });
    }
    this.poller = new Poller(inbox, sink, {
      attach: (from, descriptor) => this.attach(from, descriptor),
      wakeProducer: (peer) => this.wake(peer, true),
      lost: (peer, error) => this.lost(peer, error),
      inboxBroken: (error) => this.components.logger?.warn(`vmcomm:threads: this rank's inbox failed validation: ${error.message}`),
    }, { framesPerPoll: this.options.pollFramesPerCall });
    this.chooseWaiting(peers);
    this.sweeps = new PollSweep(() => this.sweepPeers(), PEER_SWEEP_MS);
    this.looks = new RingProgress({
      poller: this.poller,
      copies: this.singleCopySink,
      copyBytesPerLook: PIECE_BYTES,
      pending: this.pending,
      watchers: this.watchers,
      yieldCpu: this.schedYield,
      sweeps: this.sweeps,
    });
    // While a channel waits on its reader, or a single-copy read on its writer, sleep at most
    // READER_CHECK_MS, else IDLE_SLEEP_MS: a peer that is gone rings no doorbell, and the checks run
    // from the poll (a sleep already under way keeps its own timeout, so the idle one is finite too).
    const waitingOnPeer = () => this.pending.size > 0 || (this.singleCopySink?.active ?? 0) > 0;
    this.policy = this.looks.startWaiting(doorbellSleeper(inbox, () => (waitingOnPeer() ? READER_CHECK_MS : IDLE_SLEEP_MS)), {
      spinBudgetNs: this.options.spinBudgetNs,
      minSpinNs: this.options.minSpinNs,
      maxSpinNs: this.options.maxSpinNs,
      maxYieldNs: this.options.maxYieldNs,
      yieldBetweenPolls: this.yieldMode,
      defer: setImmediate,
      now: () => performance.now(),
    });
  }

  /** Reports every served peer whose inbox says its thread ended without stopping. */
  private sweepPeers(): void {
    if (this.stopping !== undefined) return;
    this.poller?.sweepFailed();
    // A peer killed between claiming an announcement slot and filling it would hide every ring
    // announced after it (inbox.ts, "A claim never filled"); once given up, those rings are taken at
    // the next poll: one now, not at the sleep's timeout.
    if (this.inbox?.skipAbandoned(performance.now()) === true && this.policy?.state === 'sleeping') this.policy.wakeUp();
    for (const channel of this.channels.values()) channel.sweepReader();
    for (const peer of this.served) {
      if (this.lostPeers.has(peer) || this.links.get(peer)?.inbox.state !== InboxState.GONE) continue;
      this.lost(peer, new VmcommError('PEER_LOST', `rank ${peer} ended without finalizing (its thread is gone)`, { peer }));
    }
  }

  /** Spin, `sched_yield` on empty polls, or poll once per event-loop turn (see the module comment). */
  private chooseWaiting(peers: readonly number[]): void {
    const threads = new Set<number>([threadId]);
    let peerOnThisThread = false;
    for (const p of peers) {
      const t = this.links.get(p)?.info.threadId;
      if (t === threadId) peerOnThisThread = true;
      if (t !== undefined) threads.add(t);
    }
    const situation = { mode: this.options.waitMode, ranks: threads.size, cores: hostCores(), peerOnThisThread, canSchedYield: true };
    let choice = chooseWaiting(situation);
    // The addon is optional for this transport (start() loaded it if it is built).
    const addon = choice.schedYield ? this.pins : undefined;
    if (addon === undefined && choice.schedYield) choice = chooseWaiting({ ...situation, canSchedYield: false });
    this.yieldMode = choice.yieldBetweenPolls;
    this.schedYield = addon !== undefined ? () => addon.schedYield() : undefined;
  }

  /**
   * The channel to `peer`: on the first call, carves a ring from this rank's arena and announces it
   * in the peer's inbox. Rejects with `INVALID_ARGUMENT` for a rank threads does not serve, and with
   * `FINALIZED` after `stop()`.
   */
  async connect(peer: number): Promise<Channel> {
    return this.openNow(peer);
  }

  /** {@link connect} at once: opening needs no round trip with the peer (see `Transport.openNow`). */
  openNow(peer: number): Channel {
    const existing = this.channels.get(peer);
    if (existing !== undefined) return existing;
    if (this.stopping !== undefined) throw new VmcommError('FINALIZED', 'the threads transport has stopped; no new channels can be opened');
    const { rank, size } = this.components;
    if (!Number.isInteger(peer) || peer < 0 || peer >= size || peer === rank) {
      throw invalidArgument('the threads peer', `a rank in 0…${size - 1} other than ${rank}`, peer);
    }
    const link = this.links.get(peer);
    if (!this.served.has(peer) || link === undefined || this.arena === undefined) {
      throw new VmcommError('INVALID_ARGUMENT', `rank ${peer} is not served by threads here (probe() must accept its card and addPeers() list it)`);
    }
    if (link.inbox.state !== InboxState.OPEN) throw new VmcommError('PEER_LOST', `rank ${peer} no longer reads (its inbox is closed)`, { peer });
    const { ring, control } = this.arena.carveRing();
    const pins = this.options.singleCopy ? this.pins : undefined;
    const channel = new SingleCopyChannel({
      ring: {
        peer,
        self: rank,
        ring,
        descriptor: encodeRingDescriptor(ring),
        peerInbox: link.inbox,
        wake: (p) => this.wake(p, false),
        // After close() resolves nothing more from the peer is read (the Channel contract allows it).
        closed: (p) => this.poller?.detach(p),
        // The arena outlives every channel: a failure can be marked for the reader.
        signalFailure: true,
      },
      control: new SingleCopyControl(control),
      writer: pins !== undefined ? pinWriter(pins, this.options.singleCopyMinBytes) : undefined,
      needsFlush: (c) => {
        this.pending.add(c);
        // Only a poll flushes it: a rank asleep would not poll until a doorbell rang.
        if (this.policy?.state === 'sleeping') this.policy.wakeUp();
      },
      lost: (p, error) => this.lost(p, error),
      // The channel checks the reader's inbox (closed; or gone, which a thread that ends marks from
      // its exit hook, or the addon when it is terminated) and its side of the ring itself; a thread
      // has nothing more to ask.
      readerAlive: () => true,
      livenessCheckMs: READER_CHECK_MS,
      now: () => performance.now(),
    });
    this.channels.set(peer, channel);
    return channel;
  }

  /** Makes progress without the event loop; returns the frames delivered (see the module comment). */
  poll(): number {
    const looks = this.looks;
    return looks === undefined ? 0 : looks.poll();
  }

  /**
   * The cells of communicator `key` among `members` (see {@link Transport.collectiveCells}): each
   * member's cell `key` in its own arena, which the directory handed to every peer. `undefined` for a
   * key beyond {@link COLLECTIVE_CELLS}, after `stop()`, or (never on a member whose pairs all chose
   * threads) for a member this rank does not serve.
   */
  collectiveCells(key: number, members: readonly number[]): RegionCollectiveCells | undefined {
    const { rank } = this.components;
    const arena = this.arena;
    if (!Number.isInteger(key) || key < 0 || key >= COLLECTIVE_CELLS || arena === undefined || this.stopping !== undefined) return undefined;
    const placeOf = (m: number): CellPlace | undefined => {
      if (m === rank) return { sab: arena.sab, offset: cellOffset(arena.plan.slots, key) };
      const link = this.links.get(m);
      return link === undefined || !this.served.has(m) ? undefined : { sab: link.info.arena, offset: cellOffset(link.info.slots, key) };
    };
    return this.watchers.cells(members, rank, placeOf, (peer) => this.wake(peer, true));
  }

  /**
   * The core gave up `peer`'s frame in progress (see `Transport.abandonFrame`): its ring is read no
   * more, and {@link lost} stops a single-copy read into the frame's target (reporting the peer again
   * when it had been reported before).
   */
  abandonFrame(peer: number, error: Error): void {
    this.poller?.detach(peer);
    this.lost(peer, error);
  }

  /** Stops the wait loop, closes the inbox and the rings, wakes whoever might wait on us. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    await this.starting?.catch(() => undefined);
    forgetAtExit(this);
    this.sweeps?.stop();
    this.policy?.stop();
    this.directory?.close();
    const stopped = new VmcommError('FINALIZED', 'the threads transport stopped before this frame was sent');
    for (const channel of this.channels.values()) if (channel.pending) channel.fail(stopped);
    this.pending.clear();
    this.singleCopySink?.stop();
    this.inbox?.changeState(InboxState.OPEN, InboxState.CLOSED);
    if (this.threadEnd !== undefined) this.pins?.cancelOnThreadEnd(this.threadEnd);
    this.poller?.detachAll();
    this.wakeEveryone();
  }

  /** This thread ends without stop(): peers must not wait for it. */
  gone(): void {
    if (this.inbox?.changeState(InboxState.OPEN, InboxState.GONE)) this.wakeEveryone();
  }

  private wakeEveryone(): void {
    // Our own outstanding waitAsync (so it does not hold the SharedArrayBuffer), then every peer, so
    // a producer blocked on a full ring to us re-checks our inbox state.
    if (this.inbox !== undefined) {
      Atomics.add(this.inbox.words, DOORBELL_WORD, 1);
      Atomics.notify(this.inbox.words, DOORBELL_WORD);
    }
    for (const link of this.links.values()) {
      link.inbox.ringAlways();
      Atomics.notify(link.inbox.words, DOORBELL_WORD);
    }
  }

  /** Rings `peer`'s doorbell (if it sleeps) and wakes it. */
  private wake(peer: number, ring: boolean): void {
    const link = this.links.get(peer);
    if (link === undefined) return;
    if (ring && !link.inbox.ring()) return;
    Atomics.notify(link.inbox.words, DOORBELL_WORD, 1);
  }

  /** The consumer side of a ring `from` announced, checked against `from`'s arena. */
  private attach(from: number, descriptor: Uint8Array): RingConsumer {
    const link = this.links.get(from);
    if (link === undefined) throw new VmcommError('CORRUPT', `rank ${from} announced a ring but is not a proven thread of this process`);
    const { arena, slots, ringBytes } = link.info;
    const ring = decodeRingDescriptor(descriptor, arena, slots, ringBytes);
    const consumer = new RingConsumer(ring);
    this.inbound.set(from, { control: new SingleCopyControl(controlOf(ring)), consumer });
    return consumer;
  }

  /** `cut`: a frame of `peer` in progress was given up here (the engine holds a receive for it). */
  private lost(peer: number, error: Error, cut = false): void {
    const consumer = this.inbound.get(peer)?.consumer;
    // Nothing more is read from it: a producer there that waits on us (a full ring, a descriptor this
    // rank gave up) learns so (RingChannel and SingleCopyChannel check the consumer's side), as in shm;
    // marked given up only while running (at stop it is a close). Closed here, not only by the
    // poller's detach: when the poller dropped the ring itself (a frame it could not deliver), detach
    // no longer finds it, and a live producer would wait on forever. Also on a second report: the ring
    // may be one the peer announced after the first.
    consumer?.close(this.stopping === undefined);
    if (consumer?.midFrame === true || this.singleCopySink?.isOpen(peer) === true) cut = true;
    // Once per peer — and again for a frame of such a later ring cut short here (its receive waits on it).
    if (this.lostPeers.has(peer) && !cut) return;
    this.lostPeers.add(peer);
    this.components.logger?.debug(`vmcomm:threads: lost rank ${peer}: ${error.message}`);
    this.poller?.detach(peer);
    try {
      (this.singleCopySink ?? this.components.sink).lost(peer, error);
    } catch (err) {
      this.components.logger?.warn(`vmcomm:threads: sink.lost(${peer}) threw: ${(err as Error).message}`);
    }
  }
}

/** Sleeps with `Atomics.waitAsync` on the inbox doorbell, for at most `timeoutMs()`. */
function doorbellSleeper(inbox: Inbox, timeoutMs: () => number): Sleeper {
  return {
    prepare: () => inbox.prepareToSleep(),
    cancel: () => inbox.clearWaiter(),
    sleep: (token, wake) => {
      const result = Atomics.waitAsync(inbox.words, DOORBELL_WORD, token, timeoutMs());
      if (result.async) void result.value.then(wake);
      else queueMicrotask(wake);
    },
  };
}
