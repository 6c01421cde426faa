/**
 * An in-memory transport for worlds that live in one process: frames are copied between their sinks
 * on a microtask. Used as the plug-in in tests (it implements only `vmcomm/backend`).
 */

import type { BackendComponents, BackendFactory, CardFields, Channel, CollectiveCells, FrameSink, LocalityCard, SendDone, Transport } from '../../lib/backend.js';
import { FRAME_HEADER_BYTES } from '../../lib/backend.js';

const buses = new Map<string, Map<number, FrameSink>>();

export interface MemoryInit {
  name?: string;
  priority?: number;
  /** Which peers this rank claims to reach (default all that share the bus). */
  reaches?: (self: number, peer: number) => boolean;
  eagerLimitBytes?: number;
  eagerCredits?: number;
  /** Offer collective cells (`Transport.collectiveCells`) of this many payload bytes; default none. */
  cellBytes?: number;
  /** Give channels the small-frame fast path (`Channel.trySend`), as the ring transports have; default not. */
  trySend?: boolean;
}

/** Per job: the transports on the bus that offer cells (to wake), and the cells' memory by `key:rank`. */
const cellJobs = new Map<string, { transports: Map<number, MemoryTransport>; memory: Map<string, SharedArrayBuffer> }>();

/** Cells in plain memory shared by the worlds of one process; a publish wakes the other members' watchers. */
class MemoryCells implements CollectiveCells {
  readonly #words: Int32Array[];
  readonly #buffers: SharedArrayBuffer[];
  constructor(
    readonly payloadBytes: number,
    buffers: SharedArrayBuffer[],
    private readonly self: number,
    private readonly members: readonly number[],
    private readonly owner: MemoryTransport,
    private readonly wake: (rank: number) => void,
  ) {
    this.#buffers = buffers;
    this.#words = buffers.map((b) => new Int32Array(b, 0, 2));
  }
  stamp(member: number): number {
    return Atomics.load(this.#words[member], 0);
  }
  presence(member: number): number {
    return Atomics.load(this.#words[member], 1);
  }
  payload(member: number, parity: number): Uint8Array {
    return new Uint8Array(this.#buffers[member], 8 + parity * this.payloadBytes, this.payloadBytes);
  }
  doubles(member: number, parity: number): Float64Array {
    return new Float64Array(this.#buffers[member], 8 + parity * this.payloadBytes, this.payloadBytes / 8);
  }
  publish(stamp: number): void {
    Atomics.store(this.#words[this.members.indexOf(this.self)], 0, stamp);
    for (const m of this.members) if (m !== this.self) this.wake(m);
  }
  announce(presence: number): void {
    Atomics.store(this.#words[this.members.indexOf(this.self)], 1, presence);
  }
  watch(check: () => boolean): void {
    this.owner.watchers.push(check);
    this.owner.runWatchersSoon();
  }
  unwatch(check: () => boolean): void {
    const i = this.owner.watchers.indexOf(check);
    if (i >= 0) this.owner.watchers.splice(i, 1);
  }
}

class MemoryChannel implements Channel {
  private queue: { header: Uint8Array; payload: Uint8Array | undefined; done: SendDone | undefined }[] = [];
  private scheduled = false;
  /** What the receiver threw at a frame: nothing more is delivered. */
  private broken: Error | undefined;
  constructor(
    private readonly from: number,
    private readonly to: FrameSink,
  ) {}
  send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone): void {
    if (this.broken !== undefined) return done?.(this.broken);
    this.queue.push({ header: header.slice(0, FRAME_HEADER_BYTES), payload, done });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }
  private flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    for (const f of batch) {
      if (this.broken !== undefined) {
        f.done?.(this.broken);
        continue;
      }
      try {
        const target = this.to.begin(this.from, f.header);
        if (target && f.payload) target.set(f.payload.subarray(0, target.byteLength));
        this.to.commit(this.from);
      } catch (error) {
        // As a real transport does with a frame its receiver refuses: the channel breaks, and the
        // receiver reports the sender lost.
        this.broken = error as Error;
        f.done?.(this.broken);
        this.to.lost(this.from, this.broken);
        continue;
      }
      f.done?.();
    }
  }
  async close(): Promise<void> {
    if (this.queue.length) this.flush();
  }
}

/** A {@link MemoryChannel} with the fast path: the frame is taken at once (its payload copied), as by `send`. */
class FastMemoryChannel extends MemoryChannel {
  constructor(
    from: number,
    to: FrameSink,
    private readonly owner: MemoryTransport,
  ) {
    super(from, to);
  }
  trySend(header: Uint8Array, payload: Uint8Array | undefined): boolean {
    this.send(header, payload?.slice(), undefined);
    this.owner.fastSends++;
    return true;
  }
}

export class MemoryTransport implements Transport {
  readonly name: string;
  readonly priority: number;
  readonly role = 'local' as const;
  readonly eagerLimitBytes: number;
  readonly eagerCredits: number;
  readonly connected: number[] = [];
  /** Checks of collectives waiting on cells; run when a member publishes. */
  readonly watchers: (() => boolean)[] = [];
  /** How many collectiveCells() gave out (for assertions). */
  cellsGiven = 0;
  /** Frames taken by the fast path (`trySend`, with the `trySend` option). */
  fastSends = 0;
  private watchScheduled = false;
  private channels = new Map<number, MemoryChannel>();
  constructor(
    private readonly c: BackendComponents,
    private readonly init: MemoryInit,
  ) {
    this.name = init.name ?? 'memory';
    this.priority = init.priority ?? 90;
    this.eagerLimitBytes = init.eagerLimitBytes ?? 4096;
    this.eagerCredits = init.eagerCredits ?? 8;
    if (init.cellBytes !== undefined) this.collectiveCells = (key, members) => this.cellsFor(key, members);
  }
  /** This transport's rank (for assertions). */
  get rank(): number {
    return this.c.rank;
  }
  /** Per job and transport name: two memory transports in one world keep their own. */
  private get busKey(): string {
    return `${this.c.jobId}/${this.name}`;
  }
  private get bus(): Map<number, FrameSink> {
    let b = buses.get(this.busKey);
    if (!b) buses.set(this.busKey, (b = new Map()));
    return b;
  }
  async start(): Promise<CardFields> {
    this.bus.set(this.c.rank, this.c.sink);
    return { bus: this.c.jobId };
  }
  probe(peer: LocalityCard): boolean {
    return peer.backends[this.name]?.bus === this.c.jobId && (this.init.reaches?.(this.c.rank, peer.rank) ?? true);
  }
  addPeers(): void {}

  /** Present only when the init asks for cells (a transport without them must not have the method). */
  declare collectiveCells?: (key: number, members: readonly number[]) => CollectiveCells | undefined;

  private cellJob() {
    let job = cellJobs.get(this.c.jobId);
    if (!job) cellJobs.set(this.c.jobId, (job = { transports: new Map(), memory: new Map() }));
    return job;
  }

  private cellsFor(key: number, members: readonly number[]): CollectiveCells | undefined {
    const bytes = this.init.cellBytes!;
    const job = this.cellJob();
    job.transports.set(this.c.rank, this);
    const buffers = members.map((m) => {
      const id = `${key}:${m}`;
      let b = job.memory.get(id);
      if (!b) job.memory.set(id, (b = new SharedArrayBuffer(8 + 2 * bytes)));
      return b;
    });
    this.cellsGiven++;
    return new MemoryCells(bytes, buffers, this.c.rank, members, this, (rank) => job.transports.get(rank)?.runWatchersSoon());
  }

  /** Runs the watchers on a later turn of the event loop (a member published). */
  runWatchersSoon(): void {
    if (this.watchScheduled) return;
    this.watchScheduled = true;
    setImmediate(() => {
      this.watchScheduled = false;
      for (let i = 0; i < this.watchers.length; i++) if (this.watchers[i]()) this.watchers.splice(i--, 1);
    });
  }
  async connect(peer: number): Promise<Channel> {
    let ch = this.channels.get(peer);
    if (!ch) {
      const sink = this.bus.get(peer);
      if (!sink) throw new Error(`rank ${peer} is not on the bus`);
      this.channels.set(peer, (ch = this.init.trySend ? new FastMemoryChannel(this.c.rank, sink, this) : new MemoryChannel(this.c.rank, sink)));
      this.connected.push(peer);
    }
    return ch;
  }
  async stop(): Promise<void> {
    for (const ch of this.channels.values()) await ch.close();
    this.bus.delete(this.c.rank);
    if (this.bus.size === 0) buses.delete(this.busKey);
    const job = cellJobs.get(this.c.jobId);
    job?.transports.delete(this.c.rank);
    if (job && job.transports.size === 0) cellJobs.delete(this.c.jobId);
  }
}

/** A factory for the memory transport; `instances` collects what it built (for assertions). */
export function memory(init: MemoryInit = {}): BackendFactory & { instances: MemoryTransport[] } {
  const instances: MemoryTransport[] = [];
  return Object.assign(
    (c: BackendComponents) => {
      const t = new MemoryTransport(c, init);
      instances.push(t);
      return t;
    },
    { transportName: init.name ?? 'memory', instances },
  );
}
