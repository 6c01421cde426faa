/**
 * The contract between the vmcomm core and a transport (`import … from 'vmcomm/backend'`).
 *
 * ## Lifecycle
 *
 * 1. **Build.** The core calls a {@link BackendFactory} once per world with {@link BackendComponents}:
 *    who this rank is, the job secret, and the {@link FrameSink} that inbound frames go to. A transport
 *    never sees communicators, tags, matching or the rank→transport choice; the core never reads inside
 *    a channel. (Open MPI's BTL contract, `opal/mca/btl/btl.h`, splits the same way.)
 * 2. **`start()`** acquires what the transport needs (a listening socket, a mapped segment) and returns
 *    the fields it adds to this rank's *locality card*, or `undefined` when it cannot run here (then it
 *    sets {@link Transport.unavailableReason} and is not offered to any peer).
 * 3. **Cards are exchanged**, then each transport's {@link Transport.probe} is asked, for every peer,
 *    whether it can reach that peer, judged from the peer's card. The answers are exchanged as a
 *    reachability bitmap (round two).
 * 4. **Selection.** For each pair the core picks the transport with the highest
 *    {@link Transport.priority} that *both* cards list and that *both* probes proved. Both ends compute
 *    this from the same data, so they always agree. Built-in priorities: `self` 100, `threads` 80,
 *    `shm` 60, `ivshmem` 40, `tcp` 0.
 * 5. **`addPeers()`** tells the transport which peers it was chosen for.
 * 6. **`connect(peer)`** opens a {@link Channel} on first use (or {@link Transport.openNow}, its
 *    synchronous form, where the transport has one). Either end may open first; a transport must
 *    accept frames from a chosen peer that connects to it before it connected back.
 * 7. **`stop()`** closes channels and releases everything `start()` acquired, after the core has
 *    drained traffic.
 *
 * ## Frames
 *
 * The core hands a channel a {@link FRAME_HEADER_BYTES}-byte header and an optional payload; the
 * payload length is in the header ({@link frameLength}). A transport moves both, in order, and on
 * the far side hands them to the {@link FrameSink} in three steps — `begin` (the core says where the
 * payload goes, so it can land straight in the user's buffer), the copy, `commit`.
 *
 * @module vmcomm/backend
 */

import type { TransportName } from './constants.js';
export { FRAME_HEADER_BYTES, frameLength } from './protocol.js';
export type { TransportName } from './constants.js';

/** JSON-compatible data a transport adds to the locality card (it travels through the launcher). */
export type CardValue = string | number | boolean | null | CardValue[] | { [key: string]: CardValue };
/** The fields one transport adds to a card. */
export type CardFields = { [key: string]: CardValue };

/**
 * What every rank publishes at `init()` (DESIGN section 4). Proof of co-location comes from the
 * nonces and the transports' probes, never from host names or pids, which collide across VMs.
 */
export interface LocalityCard {
  /** World rank. */
  readonly rank: number;
  /** Random per process (128 bits, hex). Equal nonces = same process. */
  readonly processNonce: string;
  /** Informational only. */
  readonly hostname: string;
  /** Informational only. */
  readonly pid: number;
  /** The local address of the socket that reached the launcher (`127.0.0.1` for a local job). */
  readonly address: string;
  /** Per transport that started here: the fields it published. */
  readonly backends: { readonly [name: string]: CardFields };
  /** Per transport in `backends`: its priority here. A pair uses the lower rank's numbers. */
  readonly priorities: { readonly [name: string]: number };
}

/** A minimal logger; every method is optional to call. */
export interface Logger {
  debug(message: string): void;
  warn(message: string): void;
}

/** Called when a frame's payload may be reused, or with the reason it will never be sent. Called once. */
export type SendDone = (error?: Error) => void;

/**
 * One direction-agnostic, ordered connection to one peer.
 */
export interface Channel {
  /**
   * Queues one frame. Synchronous, never throws for transport trouble (that goes to `done` and to
   * {@link FrameSink.lost}). Frames reach the peer in call order. The transport copies `header` before
   * returning; `payload` is borrowed until `done` is called (so the core can pin the user's buffer).
   */
  send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone): void;
  /**
   * Optional fast path for small frames: writes the frame at once and in full if it can (nothing
   * queued before it, room for all of it) and returns true — the frame is then sent as by
   * {@link send} with a `done` called at once. Returns false otherwise, having sent nothing (the
   * core then calls {@link send}, which queues the frame, or refuses it if the channel failed
   * meanwhile: finding its shared state invalid fails the channel here as it would in `send`). Lets
   * the core complete a small send without a callback.
   */
  trySend?(header: Uint8Array, payload: Uint8Array | undefined): boolean;
  /**
   * Delivers what is queued, then closes this direction. Idempotent. Frames the peer sends to this
   * rank may still be delivered afterwards, until `stop()` (or `release(peer)`): the core closes a
   * channel at finalize, once its receives have completed, and when a dial ends after its peer was
   * lost, and needs no more than that. (`threads` stops reading the peer when the channel closes,
   * `shm` and `ivshmem` at `stop()`; tcp's close ends the socket.)
   */
  close(): Promise<void>;
}

/**
 * Where a transport delivers inbound frames. All calls for one peer happen in frame order, and a
 * `begin` is always followed by its `commit` before the next `begin` for that peer (one frame in
 * progress per peer), unless the peer is `lost` in between.
 */
export interface FrameSink {
  /**
   * A frame from `peer` begins. `header` is valid only during the call. Returns the bytes to write the
   * payload into: at most {@link frameLength}(header) long, the rest is discarded by the transport;
   * `undefined` discards all of it. Synchronous.
   */
  begin(peer: number, header: Uint8Array): Uint8Array | undefined;
  /** The payload of the frame begun last for `peer` is in place. Synchronous. */
  commit(peer: number): void;
  /**
   * The channel to `peer` broke (closed by the peer without {@link Channel.close}, a socket error, a
   * failed validation). `error` becomes the `cause` of the `PEER_LOST` (or `CORRUPT`/`AUTH`) error the
   * program sees. Idempotent.
   */
  lost(peer: number, error: Error): void;
}

/**
 * How a transport tells the core that the pairs it carries should move (migration). Optional in
 * {@link BackendComponents}: a transport that never calls it never migrates anything.
 */
export interface PathEvents {
  /**
   * These pairs should leave this transport (an ivshmem region is being revoked): the core moves
   * each to the best other transport both ends proved, drains this one — frames keep flowing through
   * it until the peer's switch marker was read — then calls {@link Transport.release}.
   */
  leave(peers: readonly number[], reason: string): void;
  /**
   * This transport may reach peers it could not (a region restored or attached): the core asks
   * {@link Transport.card} and negotiates with the peers that would gain, proving both ways with
   * {@link Transport.probe} before either end moves, then calls {@link Transport.admit}.
   */
  available(reason: string): void;
}

/** What the core gives a transport factory. Plain data: tests can build it by hand. */
export interface BackendComponents {
  /** This rank's world rank. */
  readonly rank: number;
  /** The world size. */
  readonly size: number;
  /** Identifies the job (shared by all its ranks). */
  readonly jobId: string;
  /** The job secret, for peer authentication. Never send it. */
  readonly jobSecret: Uint8Array;
  /** This process's random nonce, as in the card. */
  readonly processNonce: string;
  /** The address to bind and publish (see {@link LocalityCard.address}). */
  readonly address: string;
  /** Inbound frames go here. */
  readonly sink: FrameSink;
  /** Where to report that pairs should move (migration); absent when the core does not migrate. */
  readonly paths?: PathEvents;
  /** Optional. */
  readonly logger?: Logger;
}

/**
 * A transport: one instance per world. See the module comment for the lifecycle; each method says
 * which phase may call it.
 */
export interface Transport {
  /** The registered name (`'tcp'`, or a plug-in's own). Constant. */
  readonly name: TransportName;
  /** Higher wins when several transports can reach a peer. Constant. */
  readonly priority: number;
  /** Where the transport reaches: the rank itself, the same host (shared memory), or a network. */
  readonly role: 'self' | 'local' | 'network';
  /** Largest payload (bytes) sent eagerly; larger messages use rendezvous. The core may lower it. */
  readonly eagerLimitBytes: number;
  /** Eager messages one sender may have outstanding at one receiver. */
  readonly eagerCredits: number;
  /** Set when `start()` returned `undefined`: one sentence saying why the transport cannot run. */
  readonly unavailableReason?: string;
  /** Phase 1, once, async: acquire resources; return card fields, or `undefined` when unavailable. */
  start(): Promise<CardFields | undefined>;
  /**
   * Phase 2, after all cards are known; may be called for every peer, in any order, async or not:
   * can this rank reach `peer` through this transport, judged from the peer's card (`peer.backends[name]`
   * is present)? Must not open channels.
   */
  probe(peer: LocalityCard): boolean | Promise<boolean>;
  /** Phase 3, once, sync: the peers this transport was chosen for (world ranks). */
  addPeers(peers: readonly number[]): void;
  /**
   * Phase 4, any number of times, async: the channel to `peer` (one of `addPeers`), opened on first
   * call; later calls return the same channel. Rejects if the peer cannot be reached.
   */
  connect(peer: number): Promise<Channel>;
  /**
   * Optional, phase 4, sync: {@link connect} done at once, for a transport whose dial needs no round
   * trip (shared memory carves or creates a ring and announces it). The core opens a channel with it
   * on first use, so that a program that polls `test()` without ever yielding to the event loop still
   * gets its first frame to a peer out (DESIGN section 3, progress); `connect` would settle only in a
   * later microtask. Returns the same channel as `connect`; throws what `connect` rejects with (the
   * core reports that as a failed dial, and does not call `connect` after it). It may report the peer
   * lost to the sink before it throws; the core expects either. Migration's switches still dial with
   * `connect`.
   */
  openNow?(peer: number): Channel;
  /**
   * Optional, sync: makes progress without the event loop (shared-memory transports poll their rings
   * here). Returns how many frames were delivered. The core calls it from `test()`, `iprobe()` and the
   * spin of blocking calls.
   */
  poll?(): number;
  /**
   * Optional, sync: the core gave up `peer`'s frame in progress on this transport — begun, not yet
   * committed — because the peer was lost and someone else said so (the launcher, a verdict on
   * another transport), and the receive it was landing in is settled (or handed back) next. Write
   * nothing more into the target `begin` returned, and deliver nothing more from `peer` (a later
   * message must not be matched where this one was dropped): as if the sink's `begin` had thrown
   * `error` for that frame — close the inbound side, and report `lost` if the transport would.
   * A transport whose frames never span calls (each `begin` and its `commit` in one synchronous
   * step, as `self`) needs none; one without it may go on writing a payload into memory the program
   * got back.
   */
  abandonFrame?(peer: number, error: Error): void;
  /**
   * Optional (migration): the card fields this transport would publish now, or `undefined` when it
   * cannot take new pairs (a revoked region). Its `probe` then accepts peers' fields of the same shape.
   */
  card?(): CardFields | undefined;
  /** Optional (migration): serve `peer` from now on — a probe proved it after start-up. Sync. */
  admit?(peer: number): void;
  /**
   * Optional (migration): the pair left this transport in both directions (or a negotiation that
   * reserved something here failed): close its channel after what is queued, free what the pair
   * holds. A later probe may admit the peer again. With `lost`, the peer was lost: what is queued
   * is dropped (failed with it), nothing is waited for.
   */
  release?(peer: number, lost?: Error): Promise<void>;
  /**
   * Optional: an administrator offers a resource to a running job (`vmcomm ivshmem attach PATH`).
   * Resolves to `undefined` when it was taken (the transport then reports {@link PathEvents.available}),
   * else why not.
   */
  attachResource?(resource: string): Promise<string | undefined>;
  /**
   * Optional: shared memory for the small collectives of one communicator (`lib/collectives/shared-memory.ts`):
   * a cell per member, readable by every member. `key` (0 ≤ key) names the communicator and is the
   * same on every member; `members` are its world ranks in communicator order, this rank among them,
   * every other one a peer this transport was chosen for. Returns `undefined` when it has no cell for
   * `key`. The answer must depend on `key` and `members` only, so every member answers alike: the core
   * uses the cells only when every pair of members was chosen this transport, and then on every member.
   */
  collectiveCells?(key: number, members: readonly number[]): CollectiveCells | undefined;
  /** Phase 5, once, async: close all channels and release resources. Idempotent. */
  stop(): Promise<void>;
}

/**
 * One communicator's cells in shared memory (see {@link Transport.collectiveCells}). Each member owns
 * one cell, writes only its own and reads the others'. A cell holds two words and two payload buffers:
 *
 * - the **stamp**: the owner stores it (sequentially consistent) after it wrote a payload, so a member
 *   that loaded the stamp reads that payload (the core numbers its calls in it and alternates buffers);
 * - the **presence** word: which collective call the owner is in, whatever its algorithm (so a member
 *   waiting on a cell can tell a rank that called something else);
 * - payload buffers 0 and 1 of {@link CollectiveCells.payloadBytes} bytes each, 8-byte aligned.
 *
 * What the words mean is the core's; the transport stores, loads and wakes.
 */
export interface CollectiveCells {
  /** Bytes of each payload buffer (at least 8). */
  readonly payloadBytes: number;
  /** Member `member`'s stamp (a sequentially consistent load). */
  stamp(member: number): number;
  /** Member `member`'s presence word. */
  presence(member: number): number;
  /** Member `member`'s payload buffer `parity` (0 or 1), as bytes; this rank's own is the one it writes. */
  payload(member: number, parity: number): Uint8Array;
  /** The same buffer as float64s (the one-number path reads no bytes). */
  doubles(member: number, parity: number): Float64Array;
  /** Stores this rank's stamp, then wakes members asleep in their transport's wait loop. */
  publish(stamp: number): void;
  /** Stores this rank's presence word (nobody is woken). */
  announce(presence: number): void;
  /**
   * Until it returns true, the transport calls `check` on every poll — from the core's spin and from
   * its own wait loop, which a member's {@link publish} wakes — so a waiting collective completes
   * without a message. `check` must be cheap and must not throw.
   */
  watch(check: () => boolean): void;
  /** Stops calling `check` (a call that failed). */
  unwatch(check: () => boolean): void;
}

/**
 * Builds a transport. A factory carries its `transportName` so the core can report it before building.
 *
 * @example
 * ```ts
 * import type { BackendFactory } from 'vmcomm/backend';
 * const mine: BackendFactory = Object.assign((c) => new MyTransport(c), { transportName: 'mine' });
 * const comm = await init({ backends: [mine] });
 * ```
 */
export interface BackendFactory {
  (components: BackendComponents): Transport;
  /** The name of the transport it builds. */
  readonly transportName: TransportName;
}
