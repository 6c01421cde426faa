// Fakes for testing lib/migration/ordered-inbound.ts (and lib/endpoint.ts) without a world: an engine
// that records what reaches it, transports that are plain objects, and frame builders.
import type { Channel, FrameSink, SendDone, Transport } from '../../../lib/backend.js';
import { ValueCodec } from '../../../lib/codec.js';
import { Engine, type EngineHooks, type PeerPlan } from '../../../lib/engine.js';
import type { InboundHooks } from '../../../lib/migration/ordered-inbound.js';
import { encodePath, PathStep, type PathFrame } from '../../../lib/migration/path-frames.js';
import { decodeHeader, emptyHeader, encodeHeader, FRAME_HEADER_BYTES, FrameKind, type FrameHeader } from '../../../lib/protocol.js';

/** A frame as a transport would carry it. */
export interface Frame {
  readonly header: Uint8Array;
  readonly payload: Uint8Array | undefined;
}

/** What reached the fake engine, per committed frame. */
export interface Delivered {
  readonly peer: number;
  readonly kind: number;
  readonly tag: number;
  /** The payload as the engine saw it at commit time. */
  readonly payload: number[];
}

/**
 * Records every begin/commit, checks they alternate per peer (the engine keeps one inbound frame per
 * peer: a second begin before the commit would clobber it), and hands out its own buffers.
 */
export class FakeEngine {
  earlyEagerLimitBytes = 1024;
  /** What `payloadLimit` allows for EAGER frames once started. */
  eagerLimit = 4096;
  readonly delivered: Delivered[] = [];
  readonly violations: string[] = [];
  /** Peers the inbound layer declared lost to the engine directly. */
  readonly losses: { peer: number; error: Error }[] = [];
  /** The buffer the last `begin` handed out, per peer. */
  readonly handedOut = new Map<number, Uint8Array | undefined>();
  /** Throws from `begin` for frames this returns true for (as the engine does for corrupt frames). */
  rejectFrame: ((peer: number, h: FrameHeader) => boolean) | undefined;
  private readonly inProgress = new Map<number, { h: FrameHeader; buf: Uint8Array | undefined }>();

  begin(peer: number, bytes: Uint8Array): Uint8Array | undefined {
    const h = decodeHeader(bytes, emptyHeader());
    if (h.kind === FrameKind.PATH) this.violations.push(`a PATH frame from rank ${peer} reached the engine`);
    if (this.inProgress.has(peer)) this.violations.push(`begin for rank ${peer} while a frame was in progress`);
    if (this.rejectFrame?.(peer, h)) throw new Error(`engine rejects tag ${h.tag} from rank ${peer}`);
    const buf = h.payloadBytes > 0 ? new Uint8Array(h.payloadBytes) : undefined;
    this.inProgress.set(peer, { h, buf });
    this.handedOut.set(peer, buf);
    return buf;
  }

  commit(peer: number): void {
    const f = this.inProgress.get(peer);
    if (f === undefined) {
      this.violations.push(`commit for rank ${peer} with no frame in progress`);
      return;
    }
    this.inProgress.delete(peer);
    this.delivered.push({ peer, kind: f.h.kind, tag: f.h.tag, payload: f.buf ? [...f.buf] : [] });
  }

  lost(peer: number, error: Error): void {
    this.losses.push({ peer, error });
  }

  /** Frames of a peer this fake was told about are refused (the real engine: only a stream given up). */
  refusedError(peer: number): Error | undefined {
    return this.losses.find((l) => l.peer === peer)?.error;
  }

  payloadLimit(_peer: number, h: FrameHeader): number {
    return h.kind === FrameKind.EAGER ? this.eagerLimit : 0;
  }

  /** What `heldBudget` allows (the real engine derives it from credits, the window and receives). */
  budget = { frames: 1_000, bytes: 1 << 20 };

  heldBudget(_peer: number): { frames: number; bytes: number } {
    return this.budget;
  }

  /** Tags delivered from `peer`, in order. */
  tags(peer = 0): number[] {
    return this.delivered.filter((d) => d.peer === peer).map((d) => d.tag);
  }

  asEngine(): Engine {
    return this as unknown as Engine;
  }
}

/** Records what the ordered inbound layer tells the migration. */
export class RecordingHooks implements InboundHooks {
  readonly switches: { peer: number; from: string; to: string; epoch: number }[] = [];
  readonly steps: { peer: number; frame: PathFrame }[] = [];
  readonly losses: { transport: string; peer: number; error: Error }[] = [];
  constructor(private readonly transports: readonly Transport[]) {}
  switched(peer: number, from: Transport, to: Transport, epoch: number): void {
    this.switches.push({ peer, from: from.name, to: to.name, epoch });
  }
  step(peer: number, frame: PathFrame): void {
    this.steps.push({ peer, frame });
  }
  lost(transport: Transport, peer: number, error: Error): void {
    this.losses.push({ transport: transport.name, peer, error });
  }
  transportNamed(name: string): Transport | undefined {
    return this.transports.find((t) => t.name === name);
  }
}

/** A transport as the inbound layer sees it: a name and a priority. */
export function fakeTransport(name: string, priority: number, connect?: (peer: number) => Promise<Channel>): Transport {
  return {
    name,
    priority,
    role: 'local',
    eagerLimitBytes: 4096,
    eagerCredits: 8,
    start: async () => ({}),
    probe: () => true,
    addPeers: () => undefined,
    connect: connect ?? (async () => Promise.reject(new Error('not used'))),
    stop: async () => undefined,
  };
}

/**
 * A real engine of rank `rank` of `size`, ready, every pair on one transport whose channels accept
 * every frame: for tests of what the engine does with the frames it is handed (it is a FrameSink).
 */
export function readyEngine(
  rank: number,
  size: number,
  limits: { eagerLimitBytes: number; eagerCredits: number } = { eagerLimitBytes: 64, eagerCredits: 8 },
  hooks: EngineHooks = { peerLost: () => undefined },
): Engine {
  const channel: Channel = { send: (_h, _p, done) => done?.(), close: async () => undefined };
  const t: Transport = { ...fakeTransport('fake', 1, async () => channel), ...limits };
  const plans: PeerPlan[] = Array.from({ length: size }, () => ({ transport: t, ...limits }));
  const e = new Engine(rank, size, new ValueCodec(), hooks);
  e.ready(plans);
  return e;
}

/** A frame of `kind` with `tag` (to tell frames apart) and `payload` bytes. */
export function frame(kind: FrameKind, tag: number, payload: number[] = [], over: Partial<FrameHeader> = {}): Frame {
  const h = emptyHeader();
  h.kind = kind;
  h.tag = tag;
  h.payloadBytes = payload.length;
  h.messageBytes = payload.length;
  Object.assign(h, over);
  return { header: encodeHeader(h, new Uint8Array(FRAME_HEADER_BYTES)), payload: payload.length > 0 ? Uint8Array.from(payload) : undefined };
}

/** An eager message frame. */
export const eager = (tag: number, payload: number[] = []): Frame => frame(FrameKind.EAGER, tag, payload);

/** A SWITCH marker opening `epoch` on `to`. */
export function marker(epoch: number, to: string, empty = false): Frame {
  return encodePath(PathStep.SWITCH, epoch, { to }, empty);
}

/** Hands a whole frame to `sink`, as a transport does: begin, copy, commit. */
export function deliver(sink: FrameSink, peer: number, f: Frame): void {
  const target = sink.begin(peer, f.header);
  if (target !== undefined && f.payload !== undefined) target.set(f.payload.subarray(0, target.byteLength));
  sink.commit(peer);
}

/** Begins a frame; the returned function copies its payload and commits (a payload over several reads). */
export function deliverLater(sink: FrameSink, peer: number, f: Frame): () => void {
  const target = sink.begin(peer, f.header);
  return () => {
    if (target !== undefined && f.payload !== undefined) target.set(f.payload.subarray(0, target.byteLength));
    sink.commit(peer);
  };
}

/** A channel that records what was sent through it. */
export class RecordingChannel implements Channel {
  readonly frames: Frame[] = [];
  closed = false;
  send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone): void {
    this.frames.push({ header: header.slice(0, FRAME_HEADER_BYTES), payload: payload?.slice() });
    done?.();
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}
