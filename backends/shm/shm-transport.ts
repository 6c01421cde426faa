/**
 * The shm {@link Transport}: ranks that are processes of one OS talk through rings in `/dev/shm`
 * files, found through each rank's inbox file (`layout.ts`), with single copy for large payloads
 * (`cma.ts` over `lib/ring/single-copy-*.ts`) and a futex for sleeping (`sleeper.ts`).
 *
 * ## Lifecycle
 *
 * - `start()` loads the addon (missing: `undefined` with the reason, and pairs use tcp), creates and
 *   locks the inbox file, writes its nonce, starts a waiter thread, and returns the card fields:
 *   the inbox file's name, the nonce, its slots, the ring size, pid, PID namespace and whether this
 *   rank allows single copy.
 * - `probe(card)` opens the peer's inbox file by name *in this rank's own shm directory* and checks
 *   the nonce — it succeeds only where both see the same `/dev/shm`. It keeps the mapping: it is
 *   where this rank announces rings and rings the doorbell.
 * - `addPeers()` starts the poller and the wait loop.
 * - `connect(peer)` creates the ring file to `peer`, locks it, and announces it (`lib/ring/single-copy-channel.ts`).
 * - `stop()` closes the inbox, detaches the rings, wakes the peers, removes the files (a ring file
 *   only once its reader has it; see `layout.ts`) and lets go of the locks.
 *
 * A process that ends without `stop()` marks its inboxes gone and removes its files from an `exit`
 * hook; one killed by a signal cannot, and the launcher removes its files instead. Its peers notice a
 * dead reader through its lock (`lib/ring/single-copy-channel.ts`).
 *
 * ## Progress and waiting
 *
 * `poll()` takes ring announcements, reads every announced ring (two atomic loads each when idle),
 * continues single-copy reads, and flushes channels that wait (a full ring, an open descriptor, a
 * close): `lib/ring/ring-progress.ts`, shared with threads. Between the core's calls a
 * `WaitingPolicy` polls from the event loop for an adaptive budget, then sleeps in a futex wait on
 * the doorbell. When the host's ranks outnumber its cores, an empty poll (the core's or the wait
 * loop's) calls `sched_yield`, so a rank that has work gets the core.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import type { BackendComponents, CardFields, Channel, LocalityCard, Transport } from '../../lib/backend.js';
import { forgetAtExit, goneAtExit } from '../../lib/exit-hook.js';
import { VmcommError, invalidArgument } from '../../lib/errors.js';
import { parseShmFileName, shmFileBase, shmInboxName, shmJobToken, shmRingName } from '../../lib/launch/shm-files.js';
import { DOORBELL_WORD, Inbox, InboxSender, InboxState, inboxBytes, initInbox, MAX_INBOX_SLOTS, MIN_INBOX_SLOTS, newAnnouncement } from '../../lib/ring/inbox.js';
import { Poller } from '../../lib/ring/poller.js';
import { PendingChannels } from '../../lib/ring/ring-channel.js';
import { corrupt, isPowerOfTwo, nextPowerOfTwo, type Region } from '../../lib/ring/region.js';
import { initRing, RingConsumer, ringRegionBytes } from '../../lib/ring/spsc-ring.js';
import { chooseWaiting, type WaitingPolicy } from '../../lib/ring/waiting.js';
import { RingProgress } from '../../lib/ring/ring-progress.js';
import { tryLoadNative, type NativeAddon, type NativeWaiter } from '../native/native.js';
import { SingleCopySink } from '../../lib/ring/single-copy-sink.js';
import { SingleCopyChannel, singleCopyCounts, type SingleCopyCounts } from '../../lib/ring/single-copy-channel.js';
import { cmaReader, cmaWriter } from './cma.js';
import { createOwnedFile, holderAlive, openPeerFile, type OwnedFile } from './files.js';
import type { ShmOptions } from './index.js';
import { autoRingBytes } from './ring-size.js';
import { cellOffset, checkInboxHeader, FILE_HEADER_BYTES, inboxFileBytes, NONCE_BYTES, RingFileControl, writeInboxHeader } from './layout.js';
import { CellWatchers, COLLECTIVE_CELLS, type CellPlace, type RegionCollectiveCells } from '../../lib/ring/collective-cells.js';
import { futexSleeper } from './sleeper.js';
import { hostCores } from '../../lib/launch/binding.js';
import { PollSweep } from '../../lib/ring/poll-sweep.js';

/** A peer whose shm token this rank opened and checked. */
interface PeerLink {
  readonly rank: number;
  /** `vmcomm-<job>-<rank>-<random>`: its files' common start. */
  readonly base: string;
  readonly inboxPath: string;
  readonly inboxSab: SharedArrayBuffer;
  readonly inbox: InboxSender;
  /** Announcement slots of its inbox (where its collective cells begin). */
  readonly slots: number;
  readonly ringBytes: number;
  readonly pid: number;
  /** Single copy is possible between us (both allow it, one PID namespace). */
  readonly cma: boolean;
  /** Same process (another world of it): spinning cannot help it progress. */
  readonly sameProcess: boolean;
}

/** This rank's ring to a peer. */
interface Outbound {
  readonly channel: SingleCopyChannel;
  readonly file: OwnedFile;
  readonly control: RingFileControl;
}

/** The most announcement slots an inbox gets by default (more peers than this retry when it is full). */
const AUTO_MAX_SLOTS = 1024;
/** The doorbell's byte offset in an inbox file. */
const DOORBELL_BYTE = FILE_HEADER_BYTES + DOORBELL_WORD * 4;
/** Bytes of single copy one poll moves at most (about 100–200 µs of copying). */
const CMA_BYTES_PER_POLL = 2 * 1024 * 1024;
/** An idle rank's futex wait ends after this long anyway (a cheap re-check). */
const IDLE_SLEEP_MS = 1_000;
/**
 * How often a rank checks that its shm peers are alive. A peer killed by a signal leaves its inbox
 * OPEN, but the kernel drops its lock on the inbox file: a lock this rank can take means a dead
 * peer. Without this, a rank waiting to *receive* from a dead peer would learn of it only from its
 * launcher, and a launcher such as Slurm (without --kill-on-bad-exit) never tells. A few syscalls
 * per peer per sweep.
 */
const PEER_SWEEP_MS = 500;

/** Ring-file names are ASCII, and at most the inbox's descriptor size. */
const NAME_CHAR = /^[\x21-\x7e]+$/;

/** The shm transport of one world. Build it with `shm(init)(components)`. */
export class ShmTransport implements Transport {
  readonly name = 'shm';
  readonly priority = 60;
  readonly role = 'local';
  readonly eagerLimitBytes: number;
  readonly eagerCredits: number;
  unavailableReason: string | undefined = undefined;
  readonly [Symbol.toStringTag] = '@vmcomm/shm';

  private readonly nonce = randomBytes(NONCE_BYTES);
  private readonly base: string;
  private readonly directory: string;
  private addon: NativeAddon | undefined;
  private inboxFile: OwnedFile | undefined;
  private inbox: Inbox | undefined;
  private slots = 0;
  /** Data bytes of the rings this rank creates (its card says so; peers read it from there). */
  private get ringBytes(): number {
    return this.options.ringBytes !== 0 ? this.options.ringBytes : autoRingBytes(this.components.size);
  }
  private waiter: NativeWaiter | undefined;
  private cmaAllowed = false;
  private pidns = '';
  private readonly links = new Map<number, PeerLink>();
  private served = new Set<number>();
  /** Peers reported lost (each once, whoever noticed: the sweep, a channel, a single-copy read). */
  private readonly dead = new Set<number>();
  /** The peer sweep, from its timer or from `poll()` (a `test()` loop that never yields runs no timer). */
  private sweeps: PollSweep | undefined;
  private readonly outbound = new Map<number, Outbound>();
  /** Rings this rank reads, by producer: their control words (single-copy answers) and consumer. */
  private readonly inbound = new Map<number, { readonly control: RingFileControl; readonly consumer: RingConsumer }>();
  private readonly pendingChannels = new PendingChannels<SingleCopyChannel>();
  private cmaSink: SingleCopySink | undefined;
  private poller: Poller | undefined;
  /** The looks at everything this rank reads, for `poll()` and the wait loop (built at addPeers). */
  private looks: RingProgress | undefined;
  private policy: WaitingPolicy | undefined;
  private yieldOnEmpty = false;
  /** Checks of collectives waiting on cells, called on every poll (`lib/ring/collective-cells.ts`). */
  private readonly watchers = new CellWatchers();
  private starting: Promise<CardFields | undefined> | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly components: BackendComponents,
    private readonly options: ShmOptions,
  ) {
    this.eagerLimitBytes = options.eagerLimitBytes;
    this.eagerCredits = options.eagerCredits;
    this.directory = options.directory;
    this.base = shmFileBase(components.jobId, components.rank, randomBytes(16).toString('hex'));
  }

  /** The files this rank holds, and the rings it reads (diagnostics, tests). */
  get files(): { inbox: string | undefined; rings: string[]; reading: number[] } {
    return { inbox: this.inboxFile?.path, rings: [...this.outbound.values()].map((o) => o.file.path), reading: [...this.inbound.keys()] };
  }

  /** The wait loop's state and counters (diagnostics, tests). */
  get waiting(): { state: string; spinBudgetNs: number; yieldOnEmpty: boolean; counts: WaitingPolicy['counts'] } | undefined {
    const p = this.policy;
    return p && { state: p.state, spinBudgetNs: p.spinBudgetNs, yieldOnEmpty: this.yieldOnEmpty, counts: p.counts };
  }

  /** Whether frames to `peer` of `cmaMinBytes` or more go by single copy (diagnostics, tests). */
  singleCopyTo(peer: number): boolean {
    return this.outbound.get(peer)?.channel.singleCopy ?? (this.links.get(peer)?.cma === true && this.cmaAllowed);
  }

  /** Single-copy counters (diagnostics, tests): see {@link SingleCopyCounts}. */
  get singleCopyCounts(): SingleCopyCounts {
    return singleCopyCounts([...this.outbound.values()].map((o) => o.channel), this.cmaSink);
  }

  /** Whether this rank found it cannot read `peer`'s memory (diagnostics, tests). */
  refusesSingleCopyFrom(peer: number): boolean {
    return this.cmaSink?.refuses(peer) ?? false;
  }

  /** Loads the addon, creates the inbox file and the waiter (see the module comment). */
  start(): Promise<CardFields | undefined> {
    this.starting ??= this.open();
    return this.starting;
  }

  private async open(): Promise<CardFields | undefined> {
    const { size, rank } = this.components;
    if (size < 2) return this.unavailable('a world of one has no peer to reach');
    const loaded = tryLoadNative();
    if (loaded.addon === undefined) return this.unavailable(loaded.reason ?? 'the native addon did not load');
    const addon = loaded.addon;
    if (!addon.capability.mmap || !addon.capability.futex) return this.unavailable('the native addon cannot map files or use futexes here');
    try {
      if (!statSync(this.directory).isDirectory()) return this.unavailable(`${this.directory} is not a directory`);
    } catch (error) {
      return this.unavailable(`${this.directory} is not usable: ${(error as Error).message}`);
    }
    this.addon = addon;
    const slots = this.options.inboxSlots !== 0 ? this.options.inboxSlots : Math.min(AUTO_MAX_SLOTS, nextPowerOfTwo(Math.max(MIN_INBOX_SLOTS, size - 1)));
    this.slots = slots;
    const file = createOwnedFile(addon, this.directory, shmInboxName(this.base), inboxFileBytes(slots));
    this.inboxFile = file;
    const region: Region = { sab: file.sab, byteOffset: FILE_HEADER_BYTES, byteLength: inboxBytes(slots) };
    initInbox(region, slots);
    writeInboxHeader(file.sab, rank, slots, this.nonce);
    this.inbox = new Inbox(region);
    this.waiter = addon.createWaiter();
    // The world holds the process open until finalize; a sleeping rank must not hold it longer.
    this.waiter.ref(false);
    this.cmaAllowed = this.options.cma && addon.capability.cma;
    this.pidns = addon.pidNamespaceId();
    // Under Yama's ptrace_scope 1, peers of the same user may then read this process (single copy).
    if (this.cmaAllowed) addon.allowPtrace();
    goneAtExit(this);
    return {
      name: file.name,
      nonce: Buffer.from(this.nonce).toString('hex'),
      slots,
      ringBytes: this.ringBytes,
      pid: process.pid,
      pidns: this.pidns,
      cma: this.cmaAllowed,
    };
  }

  private unavailable(reason: string): undefined {
    this.unavailableReason = reason;
    return undefined;
  }

  /**
   * True when `peer` shares this OS: the inbox file its card names exists in this rank's shm
   * directory and holds the nonce its card carries (DESIGN section 4). Opens nothing but that file.
   */
  probe(peer: LocalityCard): boolean {
    const { rank } = this.components;
    const fields = peer.backends?.[this.name];
    const addon = this.addon;
    if (addon === undefined || fields === undefined || fields === null || typeof fields !== 'object' || Array.isArray(fields) || peer.rank === rank) return false;
    const { name, nonce, slots, ringBytes, pid, pidns, cma } = fields as Record<string, unknown>;
    const parsed = typeof name === 'string' ? parseShmFileName(name) : undefined;
    if (parsed === undefined || parsed.kind !== 'inbox' || parsed.rank !== peer.rank || parsed.job !== shmJobToken(this.components.jobId)) return false;
    if (typeof nonce !== 'string' || !/^[0-9a-f]{32}$/.test(nonce)) return false;
    if (typeof slots !== 'number' || !isPowerOfTwo(slots) || slots < MIN_INBOX_SLOTS || slots > MAX_INBOX_SLOTS) return false;
    if (typeof ringBytes !== 'number' || !isPowerOfTwo(ringBytes) || ringBytes < 4096 || ringBytes > 2 ** 30) return false;
    if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0 || typeof pidns !== 'string' || typeof cma !== 'boolean') return false;
    try {
      const sab = openPeerFile(addon, this.directory, name as string, inboxFileBytes(slots));
      if (sab === undefined) return false; // not in our /dev/shm: another OS, or it already left
      if (!checkInboxHeader(sab, peer.rank, slots, Buffer.from(nonce, 'hex'))) return false;
      const inbox = new InboxSender({ sab, byteOffset: FILE_HEADER_BYTES, byteLength: inboxBytes(slots) });
      this.links.set(peer.rank, {
        rank: peer.rank,
        base: parsed.base,
        inboxPath: path.join(this.directory, name as string),
        inboxSab: sab,
        inbox,
        slots,
        ringBytes,
        pid,
        cma: cma && pidns === this.pidns,
        sameProcess: peer.processNonce === this.components.processNonce,
      });
      return true;
    } catch (error) {
      this.components.logger?.debug(`vmcomm:shm: rank ${peer.rank}'s shm token is unusable: ${(error as Error).message}`);
      return false;
    }
  }

  /** Remembers the peers shm serves, starts the poller and the wait loop. */
  addPeers(peers: readonly number[]): void {
    this.served = new Set(peers);
    const inbox = this.inbox;
    const addon = this.addon;
    if (inbox === undefined || addon === undefined || this.stopping !== undefined) return;
    if (peers.length === 0) {
      // Chosen for no pair (the choice is the same at both ends): nobody will use our inbox. (The
      // world calls addPeers only for transports it chose for some peer; this is for one that does.)
      this.waiter?.close();
      this.inboxFile?.remove();
      this.inboxFile?.release();
      return;
    }
    this.cmaSink = new SingleCopySink(this.components.sink, cmaReader(addon), {
      pidOf: (peer) => this.links.get(peer)?.pid ?? -1,
      allowed: (peer) => this.cmaAllowed && this.links.get(peer)?.cma === true,
      control: (peer) => this.inbound.get(peer)?.control.singleCopy,
      wakeProducer: (peer) => this.wake(peer, true),
      fail: (peer, error) => {
        this.poller?.detach(peer);
        this.lost(peer, error, true); // a single-copy frame was open: reported even after a first report
      },
    });
    this.poller = new Poller(inbox, this.cmaSink, {
      attach: (from, descriptor) => this.attach(from, descriptor),
      wakeProducer: (peer) => this.wake(peer, true),
      lost: (peer, error) => this.lost(peer, error),
      inboxBroken: (error) => this.components.logger?.warn(`vmcomm:shm: this rank's inbox failed validation: ${error.message}`),
    }, { framesPerPoll: this.options.pollFramesPerCall });
    const waiting = chooseWaiting({
      mode: this.options.waitMode,
      // Ranks on this host = the peers shm serves (they share this OS) and this one.
      ranks: peers.length + 1,
      cores: hostCores(),
      // A peer in this very process (another world) may share this thread: it progresses only when we return.
      peerOnThisThread: peers.some((p) => this.links.get(p)?.sameProcess === true),
      canSchedYield: true,
    });
    this.yieldOnEmpty = waiting.schedYield;
    this.sweeps = new PollSweep(() => this.sweepPeers(), PEER_SWEEP_MS);
    this.looks = new RingProgress({
      poller: this.poller,
      copies: this.cmaSink,
      copyBytesPerLook: CMA_BYTES_PER_POLL,
      pending: this.pendingChannels,
      watchers: this.watchers,
      yieldCpu: waiting.schedYield ? () => addon.schedYield() : undefined,
      sweeps: this.sweeps,
    });
    this.policy = this.looks.startWaiting(futexSleeper({
      inbox,
      sab: this.inboxFile!.sab,
      doorbellByteOffset: DOORBELL_BYTE,
      waiter: this.waiter!,
      timeoutMs: () => (this.pendingChannels.size > 0 || this.cmaSink!.active > 0 ? this.options.livenessCheckMs : IDLE_SLEEP_MS),
    }), {
      spinBudgetNs: this.options.spinBudgetNs,
      minSpinNs: this.options.minSpinNs,
      maxSpinNs: this.options.maxSpinNs,
      yieldBetweenPolls: waiting.yieldBetweenPolls,
      defer: setImmediate,
      now: () => performance.now(),
    });
  }

  /** Reports every served peer that died without closing its inbox (see {@link PEER_SWEEP_MS}). */
  private sweepPeers(): void {
    const addon = this.addon;
    if (addon === undefined || this.stopping !== undefined) return;
    this.poller?.sweepFailed();
    // A peer killed between claiming an announcement slot and filling it would hide every ring
    // announced after it (inbox.ts, "A claim never filled"); once given up, those rings are taken at
    // the next poll: one now, not at the sleep's timeout.
    if (this.inbox?.skipAbandoned(performance.now()) === true && this.policy?.state === 'sleeping') this.policy.wakeUp();
    for (const o of this.outbound.values()) o.channel.sweepReader();
    for (const peer of this.served) {
      if (this.dead.has(peer)) continue;
      const link = this.links.get(peer);
      if (link === undefined) continue;
      let state = link.inbox.state;
      // CLOSED: it finalized (not a failure). GONE: it exited without finalize.
      if (state === InboxState.CLOSED) continue;
      if (state === InboxState.OPEN && holderAlive(addon, link.inboxPath)) continue;
      // A peer that finalizes stores CLOSED, then removes its inbox and drops the lock: all of that may
      // have happened between the load above and the lock check, so look again — else a clean finalize
      // would be reported as a death (receives posted for it would fail, its communicators be revoked).
      if (state === InboxState.OPEN && (state = link.inbox.state) === InboxState.CLOSED) continue;
      this.lost(
        peer,
        new VmcommError('PEER_LOST', `rank ${peer} (pid ${link.pid}) ${state === InboxState.GONE ? 'exited without finalize' : 'died (its shm inbox lock was released without a close)'}`, { peer }),
      );
    }
  }

  /**
   * The channel to `peer`: on the first call, creates the ring file, locks it and announces it in the
   * peer's inbox. Rejects with `INVALID_ARGUMENT` for a rank shm does not serve, `PEER_LOST` when the
   * peer no longer reads, `FINALIZED` after `stop()`.
   */
  async connect(peer: number): Promise<Channel> {
    return this.openNow(peer);
  }

  /** {@link connect} at once: opening needs no round trip with the peer (see `Transport.openNow`). */
  openNow(peer: number): Channel {
    const existing = this.outbound.get(peer);
    if (existing !== undefined) return existing.channel;
    if (this.stopping !== undefined) throw new VmcommError('FINALIZED', 'the shm transport has stopped; no new channels can be opened');
    const { rank, size } = this.components;
    if (!Number.isInteger(peer) || peer < 0 || peer >= size || peer === rank) {
      throw invalidArgument('the shm peer', `a rank in 0…${size - 1} other than ${rank}`, peer);
    }
    const link = this.links.get(peer);
    const addon = this.addon;
    if (!this.served.has(peer) || link === undefined || addon === undefined) {
      throw new VmcommError('INVALID_ARGUMENT', `rank ${peer} is not served by shm here (probe() must accept its card and addPeers() list it)`);
    }
    if (link.inbox.state !== InboxState.OPEN) throw new VmcommError('PEER_LOST', `rank ${peer} no longer reads (its inbox is closed)`, { peer });
    const ringBytes = this.ringBytes;
    const name = shmRingName(this.base, peer);
    const file = createOwnedFile(addon, this.directory, name, FILE_HEADER_BYTES + ringRegionBytes(ringBytes));
    const control = new RingFileControl(file.sab);
    control.init(rank, peer, ringBytes);
    const ring: Region = { sab: file.sab, byteOffset: FILE_HEADER_BYTES, byteLength: ringRegionBytes(ringBytes) };
    initRing(ring);
    const channel = new SingleCopyChannel({
      ring: {
        peer,
        self: rank,
        ring,
        descriptor: Buffer.from(name, 'latin1'),
        peerInbox: link.inbox,
        wake: (p) => this.wake(p, false),
        // This rank owns the ring file while the channel lives: a failure can be marked for the reader.
        signalFailure: true,
      },
      control: control.singleCopy,
      writer: this.cmaAllowed && link.cma ? cmaWriter(addon, this.options.cmaMinBytes, link.pid) : undefined,
      needsFlush: (c) => {
        this.pendingChannels.add(c);
        // Only a poll flushes it: a rank asleep would poll only when its sleep times out (up to a
        // second when idle) unless some peer rang its doorbell meanwhile (as in threads).
        if (this.policy?.state === 'sleeping') this.policy.wakeUp();
      },
      lost: (p, error) => this.lost(p, error),
      readerAlive: () => holderAlive(addon, link.inboxPath),
      livenessCheckMs: this.options.livenessCheckMs,
      now: () => performance.now(),
    });
    this.outbound.set(peer, { channel, file, control });
    return channel;
  }

  /** Makes progress without the event loop; returns the frames delivered (see the module comment). */
  poll(): number {
    const looks = this.looks;
    return looks === undefined ? 0 : looks.poll();
  }

  /**
   * The cells of communicator `key` among `members` (see {@link Transport.collectiveCells}): each
   * member's cell `key` in its own inbox file, whose mapping the probe made. `undefined` for a key
   * beyond the files' {@link COLLECTIVE_CELLS}, or (never on a member whose pairs all chose shm) a
   * member this rank does not serve.
   */
  collectiveCells(key: number, members: readonly number[]): RegionCollectiveCells | undefined {
    const { rank } = this.components;
    const own = this.inboxFile;
    if (!Number.isInteger(key) || key < 0 || key >= COLLECTIVE_CELLS || own === undefined || this.stopping !== undefined) return undefined;
    const placeOf = (m: number): CellPlace | undefined => {
      if (m === rank) return { sab: own.sab, offset: cellOffset(this.slots, key) };
      const link = this.links.get(m);
      return link === undefined || !this.served.has(m) ? undefined : { sab: link.inboxSab, offset: cellOffset(link.slots, key) };
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

  /** Stops the wait loop, closes the inbox and the rings, wakes the peers, removes the files. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    await this.starting?.catch(() => undefined);
    forgetAtExit(this);
    this.sweeps?.stop();
    this.policy?.stop();
    this.waiter?.close();
    const stopped = new VmcommError('FINALIZED', 'the shm transport stopped before this frame was sent');
    for (const o of this.outbound.values()) if (o.channel.pending) o.channel.fail(stopped);
    this.pendingChannels.clear();
    this.cmaSink?.stop();
    this.inbox?.changeState(InboxState.OPEN, InboxState.CLOSED);
    this.poller?.detachAll();
    this.removeUnattachedAnnouncements();
    for (const [peer, o] of this.outbound) {
      // Removed by whichever side comes second: us if the reader has the ring, else the reader.
      const state = this.links.get(peer)?.inbox.state;
      if (o.control.producerStopped() || state !== InboxState.OPEN) o.file.remove();
      o.file.release();
    }
    this.wakePeers();
    this.inboxFile?.remove();
    this.inboxFile?.release();
  }

  /** This process ends without stop(): peers must not wait for it, and its files go. */
  gone(): void {
    if (this.inbox?.changeState(InboxState.OPEN, InboxState.GONE)) this.wakePeers();
    for (const o of this.outbound.values()) {
      o.file.remove();
      o.file.release();
    }
    this.inboxFile?.remove();
    this.inboxFile?.release();
  }

  /** Rings announced to us that we never opened: nobody else will remove them once we are gone. */
  private removeUnattachedAnnouncements(): void {
    const inbox = this.inbox;
    if (inbox === undefined) return;
    const a = newAnnouncement();
    for (let i = 0; i < this.slots; i++) {
      let taken: boolean;
      try {
        taken = inbox.take(a);
      } catch {
        return;
      }
      if (!taken) return;
      const link = this.links.get(a.from);
      const name = Buffer.from(a.descriptor.subarray(0, a.length)).toString('latin1');
      if (link === undefined || name !== shmRingName(link.base, this.components.rank)) continue;
      try {
        unlinkSync(path.join(this.directory, name));
      } catch {
        // Already gone.
      }
    }
  }

  private wakePeers(): void {
    const addon = this.addon;
    if (addon === undefined) return;
    // A producer blocked on a full ring to us re-checks our inbox state when it wakes.
    for (const link of this.links.values()) {
      link.inbox.ringAlways();
      addon.futexWake(link.inboxSab, DOORBELL_BYTE, 1);
    }
  }

  /** Wakes `peer` if its waiter flag is up (`ring` false: the doorbell was already rung). */
  private wake(peer: number, ring: boolean): void {
    const link = this.links.get(peer);
    if (link === undefined) return;
    if (ring && !link.inbox.ring()) return;
    this.addon!.futexWake(link.inboxSab, DOORBELL_BYTE, 1);
  }

  /** The consumer side of the ring `from` announced: its file, checked against `from`'s card. */
  private attach(from: number, descriptor: Uint8Array): RingConsumer {
    const link = this.links.get(from);
    const addon = this.addon!;
    if (link === undefined || !this.served.has(from)) throw new VmcommError('CORRUPT', `rank ${from} announced a ring but is not a proven shm peer`);
    const name = Buffer.from(descriptor).toString('latin1');
    const expected = shmRingName(link.base, this.components.rank);
    if (!NAME_CHAR.test(name) || name !== expected) throw corrupt(`rank ${from} announced the ring ${JSON.stringify(name)}, expected ${expected}`);
    const regionBytes = ringRegionBytes(link.ringBytes);
    const sab = openPeerFile(addon, this.directory, name, FILE_HEADER_BYTES + regionBytes);
    if (sab === undefined) throw new VmcommError('PEER_LOST', `rank ${from}'s ring file is gone (it ended before this rank read it)`, { peer: from });
    const control = new RingFileControl(sab);
    control.check(from, this.components.rank, link.ringBytes);
    const consumer = new RingConsumer({ sab, byteOffset: FILE_HEADER_BYTES, byteLength: regionBytes });
    this.inbound.set(from, { control, consumer });
    if (control.consumerAttached()) {
      // Its writer already finished: the file is ours to remove (the mapping stays).
      try {
        unlinkSync(path.join(this.directory, name));
      } catch {
        // Gone already.
      }
    }
    return consumer;
  }

  /** `cut`: a frame of `peer` in progress was given up here (the engine holds a receive for it). */
  private lost(peer: number, error: Error, cut = false): void {
    const consumer = this.inbound.get(peer)?.consumer;
    // The producer learns that this rank gave it up: a live one waiting for space, or for an answer,
    // fails (RingChannel.sweepReader). Marked so only while running (at stop it is a close). Also on
    // a second report: the ring may be one the peer announced after the first.
    consumer?.close(this.stopping === undefined);
    // The ring stays polled, so what a dead peer finished writing is still delivered — but not the
    // rest of a record half read, nor a single copy under way: the engine gives that frame and its
    // receive up.
    if (consumer?.midFrame === true) {
      this.poller?.detach(peer);
      cut = true;
    }
    if (this.cmaSink?.isOpen(peer) === true) cut = true;
    // Once per peer, whoever noticed (a sweep, a channel, a single-copy read) — and again for a frame
    // begun since the first report and cut short here, whose receive would otherwise wait forever.
    if (this.dead.has(peer) && !cut) return;
    this.dead.add(peer);
    this.components.logger?.debug(`vmcomm:shm: lost rank ${peer}: ${error.message}`);
    try {
      (this.cmaSink ?? this.components.sink).lost(peer, error);
    } catch (err) {
      this.components.logger?.warn(`vmcomm:shm: sink.lost(${peer}) threw: ${(err as Error).message}`);
    }
  }
}
