/**
 * One rank's world: the bootstrap, the transports, the per-pair choice, the engine, and the lifecycle
 * from `init()` to `finalize()`.
 *
 * Start-up (phases as in `vmcomm/backend`): build every transport → `start()` each (card fields) →
 * round one: exchange cards → probe every peer with every transport both list → round two: exchange
 * reachability bitmaps → choose per pair (`locality.ts`) → `addPeers` → the engine takes traffic.
 *
 * @module
 */

import 'reflect-metadata';
import { inject, injectable, multiInject } from 'inversify';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { BackendComponents, BackendFactory, CardFields, CardValue, CollectiveCells, LocalityCard, Logger, Transport } from './backend.js';
import type { Bootstrap } from './bootstrap.js';
import { ValueCodec } from './codec.js';
import { CONTEXT_BLOCK } from './contexts.js';
import { Engine, type PeerPlan } from './engine.js';
import { VmcommError } from './errors.js';
import { PairMigration } from './migration/pair-migration.js';
import { choosePairTransport, encodeBitmap, explainNoTransport, type PairChoice, type Reachability } from './locality.js';
import { perTransport, type ParsedOptions } from './options.js';
import { TOKENS } from './tokens.js';

/** A random nonce per process (not per world, not per thread): equal nonces prove one process. */
const PROCESS_NONCE = randomBytes(16).toString('hex');

/** Events of a world, delivered to every communicator's listeners. */
export interface WorldEvents {
  /** A pair changed transport (migration; issue 10). */
  transport: { peer: number; from: string; to: string };
  /** A peer was lost. */
  'peer:lost': { peer: number; error: VmcommError };
}

/** The part of a communicator the world needs on a peer loss. */
export interface CommunicatorHandle {
  /** Rejects this communicator's receives waiting on world rank `peer` specifically. */
  peerLost(peer: number, error: VmcommError): void;
  /** The world ended (its transports stopped): waits that no message ends fail with `error`. */
  ended?(error: VmcommError): void;
}

/** A started world. Built by the container (`container.ts`). */
@injectable()
export class World {
  readonly engine: Engine;
  /** Moves pairs between transports while they run (`lib/migration/`). */
  readonly migration: PairMigration;
  readonly codec = new ValueCodec();
  /** This rank's card (after start). */
  card!: LocalityCard;
  /** Every rank's card (after start). */
  cards: readonly LocalityCard[] = [];
  /** Per peer: the transport choice and why (after start). */
  choices: readonly PairChoice[] = [];
  /** Transports that started, with the reason for each that did not. */
  readonly unavailable = new Map<string, string>();
  private transports: Transport[] = [];
  /** Transports that could not start but may, once a resource is attached (`vmcomm ivshmem attach`). */
  private readonly dormant: Transport[] = [];
  /** Debug output (`VMCOMM_DEBUG=1`), else warnings only, to stderr. */
  private readonly logger: Logger;
  private readonly listeners = new Map<keyof WorldEvents, Set<(e: never) => void>>();
  private readonly communicators = new Set<CommunicatorHandle>();
  private keepAlive: NodeJS.Timeout | undefined;
  private finalizing: Promise<void> | undefined;
  /** Set once finalize began: calls after it reject with this. */
  finalized: VmcommError | undefined;
  /** Every rank's round-two answers (after start): which peers each proved it reaches, per transport. */
  reach: readonly Reachability[] = [];
  /** Next free context id (a multiple of `CONTEXT_BLOCK`); the world communicator uses the first block. */
  nextContext = CONTEXT_BLOCK;
  /** Communicator creations on this rank run one after another (their context ids must not race). */
  creations: Promise<unknown> = Promise.resolve();

  constructor(
    @inject(TOKENS.Bootstrap) readonly bootstrap: Bootstrap,
    @multiInject(TOKENS.BackendFactory) private readonly factories: readonly BackendFactory[],
    @inject(TOKENS.Options) private readonly options: ParsedOptions,
  ) {
    this.engine = new Engine(bootstrap.rank, bootstrap.size, this.codec, {
      peerLost: (peer, error) => {
        this.migration.peerLost(peer, error);
        for (const c of this.communicators) c.peerLost(peer, error);
        this.emit('peer:lost', { peer, error });
      },
      abandonFrame: (peer, error) => this.migration.inbound.abandonLive(peer, error),
    });
    this.logger = debugLogger(options.env, bootstrap.rank);
    // Told later, from the event loop: a switch happens deep inside frame processing, where a
    // listener that throws must not break the pair.
    this.migration = new PairMigration(this.engine, bootstrap.rank, bootstrap.size, (peer, from, to) => void setImmediate(() => this.emitSafely('transport', { peer, from, to })), this.logger);
  }

  get rank(): number {
    return this.bootstrap.rank;
  }

  /** The environment `VMCOMM_*` settings are read from (`init({ env })`, else `process.env`). */
  get env(): Readonly<Record<string, string | undefined>> {
    return this.options.env;
  }
  get size(): number {
    return this.bootstrap.size;
  }

  /** Runs the start-up sequence. On failure, releases what it acquired and rethrows. */
  async start(): Promise<void> {
    const { bootstrap } = this;
    bootstrap.listen({
      peerLost: (rank, reason) => this.engine.lost(rank, new VmcommError('PEER_LOST', `rank ${rank} was lost: ${reason}`, { peer: rank })),
      attach: (resource) => this.attachResource(resource),
      abort: (code, fromRank, reason) => {
        process.stderr.write(`vmcomm: rank ${fromRank} aborted the job (code ${code}): ${reason}\n`);
        process.exit(code);
      },
    });
    // Held until finalize(): a pending wait keeps the process alive (Atomics.waitAsync would not).
    this.keepAlive = setInterval(() => undefined, 1 << 30);
    try {
      await this.startTransports();
      await this.select();
    } catch (e) {
      await this.release();
      throw e;
    }
  }

  private async startTransports(): Promise<void> {
    const common = {
      logger: this.logger,
      rank: this.rank,
      size: this.size,
      jobId: this.bootstrap.jobId,
      jobSecret: this.bootstrap.secret,
      processNonce: PROCESS_NONCE,
      address: this.bootstrap.address,
    };
    const seen = new Set<string>();
    const backends: Record<string, CardFields> = {};
    const priorities: Record<string, number> = {};
    for (const factory of this.factories) {
      const name = factory.transportName;
      if (seen.has(name)) continue;
      seen.add(name);
      if (this.options.only && !this.options.only.has(name)) {
        this.unavailable.set(name, 'excluded by VMCOMM_BACKENDS / init({ only })');
        continue;
      }
      // Each transport delivers to a sink of its own: the core knows which path every frame took.
      let built: Transport | undefined;
      const self = (): Transport => built!;
      const components: BackendComponents = { ...common, sink: this.migration.sinkFor(self), paths: this.migration.eventsFor(self) };
      const t = (built = factory(components));
      let fields: CardFields | undefined;
      try {
        fields = await t.start();
      } catch (e) {
        this.unavailable.set(name, `start failed: ${(e as Error).message}`);
        await t.stop().catch(() => undefined);
        continue;
      }
      if (fields === undefined) {
        this.unavailable.set(name, t.unavailableReason ?? 'not available here');
        // It may start later, when an operator attaches a resource to the running job.
        if (typeof t.attachResource === 'function') this.dormant.push(t);
        continue;
      }
      this.transports.push(t);
      backends[name] = fields;
      priorities[name] = t.priority;
    }
    // Peers can send once they have this rank's card, possibly before this rank chose a transport per
    // pair: until then the engine accepts eager messages up to the largest limit of any transport here.
    if (this.options.rendezvousWindow !== undefined) this.engine.rendezvousWindow = this.options.rendezvousWindow;
    this.engine.earlyEagerLimitBytes = Math.max(0, ...this.transports.map((t) => perTransport(this.options.eagerLimitBytes, t.name, t.eagerLimitBytes)));
    this.card = { rank: this.rank, processNonce: PROCESS_NONCE, hostname: hostname(), pid: process.pid, address: this.bootstrap.address, backends, priorities };
  }

  private async select(): Promise<void> {
    const { size, rank } = this;
    this.cards = (await this.bootstrap.allgather('cards', this.card as unknown as CardValue)) as unknown as LocalityCard[];
    const mine: Reachability = {};
    for (const t of this.transports) {
      const reach = await Promise.all(this.cards.map(async (card) => (t.name in card.backends ? Boolean(await t.probe(card)) : false)));
      mine[t.name] = encodeBitmap(size, (p) => reach[p]);
    }
    const reach = (await this.bootstrap.allgather('reach', mine)) as Reachability[];
    this.reach = reach;
    this.choices = this.cards.map((_, peer) => choosePairTransport(rank, peer, this.cards, reach));
    const plans: PeerPlan[] = [];
    const byTransport = new Map<Transport, number[]>();
    for (let peer = 0; peer < size; peer++) {
      const name = this.choices[peer].transport;
      const t = this.transports.find((x) => x.name === name);
      if (!t) throw new VmcommError('UNSUPPORTED', `${explainNoTransport(rank, peer, this.choices[peer])}; check VMCOMM_BACKENDS`);
      if (!byTransport.has(t)) byTransport.set(t, []);
      byTransport.get(t)!.push(peer);
      plans.push({
        transport: t,
        eagerLimitBytes: perTransport(this.options.eagerLimitBytes, t.name, t.eagerLimitBytes),
        eagerCredits: perTransport(this.options.eagerCredits, t.name, t.eagerCredits),
      });
    }
    // Every transport hears its peers — none, when no pair chose it, so it can release at once what
    // start() took for nobody (an ivshmem slot and ring reservations, a shm inbox).
    for (const t of this.transports) t.addPeers(byTransport.get(t) ?? []);
    this.engine.ready(plans);
    this.migration.start({ transports: this.transports, cards: this.cards, reach, chosen: plans.map((p) => p.transport) });
  }

  /** `vmcomm ivshmem attach PATH` reached this rank: every transport that can take it tries. */
  private attachResource(resource: string): void {
    if (this.finalized !== undefined) return;
    const takers = [...this.transports, ...this.dormant].filter((t) => typeof t.attachResource === 'function');
    void Promise.all(
      takers.map(async (t) => {
        const whyNot = await t.attachResource!(resource).catch((e: Error) => e.message);
        if (whyNot === undefined && this.dormant.includes(t)) {
          // Started by this resource: it runs from now on (its pairs come through the negotiation).
          this.dormant.splice(this.dormant.indexOf(t), 1);
          this.unavailable.delete(t.name);
          this.transports.push(t);
        }
        return whyNot;
      }),
    ).then((whyNot) => {
      if (whyNot.some((w) => w === undefined)) this.logger.debug(`attached ${resource}`);
      else this.logger.warn(`could not attach ${resource}: ${whyNot.filter(Boolean).join('; ') || 'no transport here takes attached resources'}`);
    });
  }

  /**
   * The shared-memory cells for the collectives of the communicator of `members` (world ranks, in its
   * order) whose cell key is `key`: when every pair of members was chosen one transport at start-up,
   * and it offers cells ({@link Transport.collectiveCells}). Every member computes the same answer —
   * the choice of any pair follows from the cards and the round-two bitmaps all ranks hold.
   */
  collectiveCells(key: number, members: readonly number[]): CollectiveCells | undefined {
    if (members.length < 2 || this.finalized !== undefined || this.cards.length === 0) return undefined;
    let name: string | undefined;
    for (let i = 0; i < members.length; i++) {
      for (let j = i + 1; j < members.length; j++) {
        const t = this.pairTransport(members[i], members[j]);
        if (t === undefined || (name !== undefined && t !== name)) return undefined;
        name = t;
      }
    }
    return this.transports.find((t) => t.name === name)?.collectiveCells?.(key, members);
  }

  /** The transport chosen at start-up for the pair (a, b), as every rank computes it (kept). */
  private pairTransport(a: number, b: number): string | undefined {
    const key = Math.min(a, b) * this.size + Math.max(a, b);
    if (!this.pairChoices.has(key)) this.pairChoices.set(key, choosePairTransport(a, b, this.cards, this.reach).transport);
    return this.pairChoices.get(key);
  }

  private readonly pairChoices = new Map<number, string | undefined>();

  /** Registers a communicator for peer-loss and end notices; returns the unregister function. */
  register(c: CommunicatorHandle): () => void {
    this.communicators.add(c);
    return () => this.communicators.delete(c);
  }

  /** Adds an event listener; returns its removal. */
  on<K extends keyof WorldEvents>(event: K, fn: (e: WorldEvents[K]) => void): () => void {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    const set = this.listeners.get(event)!;
    set.add(fn as (e: never) => void);
    return () => set.delete(fn as (e: never) => void);
  }

  private emit<K extends keyof WorldEvents>(event: K, e: WorldEvents[K]): void {
    for (const fn of this.listeners.get(event) ?? []) (fn as (e: WorldEvents[K]) => void)(e);
  }

  /** {@link emit}, with each listener's exception reported as a warning instead of thrown. */
  private emitSafely<K extends keyof WorldEvents>(event: K, e: WorldEvents[K]): void {
    for (const fn of this.listeners.get(event) ?? []) {
      try {
        (fn as (e: WorldEvents[K]) => void)(e);
      } catch (error) {
        this.logger.warn(`a '${event}' listener threw: ${(error as Error)?.message ?? String(error)}`);
      }
    }
  }

  /**
   * Ends the world: `drain` (the caller's barrier, after its own requests completed) runs first, then
   * channels close, transports stop and the launcher is told. Idempotent.
   */
  finalize(drain: () => Promise<void>): Promise<void> {
    return (this.finalizing ??= (async () => {
      try {
        await drain();
      } finally {
        this.finalized = new VmcommError('FINALIZED', 'the world was finalized; no further communication is possible');
        await this.release();
      }
    })());
  }

  private async release(): Promise<void> {
    const error = this.finalized ?? new VmcommError('FINALIZED', 'the world did not start');
    this.migration.stop();
    this.engine.beginClosing();
    await this.engine.closeAll();
    this.engine.failEverything(error);
    for (const c of this.communicators) c.ended?.(error);
    await Promise.all([...this.transports, ...this.dormant].map((t) => t.stop().catch(() => undefined)));
    await this.bootstrap.finalize().catch(() => undefined);
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.keepAlive = undefined;
  }

  /** Ends every rank of the job with `code` (best effort to tell the launcher), then this process. */
  abort(code: number, reason: string): never {
    void this.bootstrap.abort(code, reason).catch(() => undefined);
    process.exit(code);
  }
}

/** Warnings to stderr, and debug lines too when `VMCOMM_DEBUG` is set (not `0`). */
function debugLogger(env: Readonly<Record<string, string | undefined>>, rank: number): Logger {
  const debug = env.VMCOMM_DEBUG !== undefined && env.VMCOMM_DEBUG !== '' && env.VMCOMM_DEBUG !== '0';
  return {
    debug: debug ? (m) => process.stderr.write(`[rank ${rank}] ${m}\n`) : () => undefined,
    warn: (m) => process.stderr.write(`vmcomm: rank ${rank}: ${m}\n`),
  };
}
