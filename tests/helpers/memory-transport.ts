/**
 * An in-memory transport for worlds that live in one process: frames are copied between their sinks
 * on a microtask. Used as the plug-in in tests (it implements only `vmcomm/backend`).
 */

import type { BackendComponents, BackendFactory, CardFields, Channel, FrameSink, LocalityCard, SendDone, Transport } from '../../lib/backend.js';
import { FRAME_HEADER_BYTES } from '../../lib/backend.js';

const buses = new Map<string, Map<number, FrameSink>>();

export interface MemoryInit {
  name?: string;
  priority?: number;
  /** Which peers this rank claims to reach (default all that share the bus). */
  reaches?: (self: number, peer: number) => boolean;
  eagerLimitBytes?: number;
  eagerCredits?: number;
}

class MemoryChannel implements Channel {
  private queue: { header: Uint8Array; payload: Uint8Array | undefined; done: SendDone | undefined }[] = [];
  private scheduled = false;
  constructor(
    private readonly from: number,
    private readonly to: FrameSink,
  ) {}
  send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone): void {
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
      const target = this.to.begin(this.from, f.header);
      if (target && f.payload) target.set(f.payload.subarray(0, target.byteLength));
      this.to.commit(this.from);
      f.done?.();
    }
  }
  async close(): Promise<void> {
    if (this.queue.length) this.flush();
  }
}

export class MemoryTransport implements Transport {
  readonly name: string;
  readonly priority: number;
  readonly role = 'local' as const;
  readonly eagerLimitBytes: number;
  readonly eagerCredits: number;
  readonly connected: number[] = [];
  private channels = new Map<number, MemoryChannel>();
  constructor(
    private readonly c: BackendComponents,
    private readonly init: MemoryInit,
  ) {
    this.name = init.name ?? 'memory';
    this.priority = init.priority ?? 90;
    this.eagerLimitBytes = init.eagerLimitBytes ?? 4096;
    this.eagerCredits = init.eagerCredits ?? 8;
  }
  private get bus(): Map<number, FrameSink> {
    let b = buses.get(this.c.jobId);
    if (!b) buses.set(this.c.jobId, (b = new Map()));
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
  async connect(peer: number): Promise<Channel> {
    let ch = this.channels.get(peer);
    if (!ch) {
      const sink = this.bus.get(peer);
      if (!sink) throw new Error(`rank ${peer} is not on the bus`);
      this.channels.set(peer, (ch = new MemoryChannel(this.c.rank, sink)));
      this.connected.push(peer);
    }
    return ch;
  }
  async stop(): Promise<void> {
    for (const ch of this.channels.values()) await ch.close();
    this.bus.delete(this.c.rank);
    if (this.bus.size === 0) buses.delete(this.c.jobId);
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
