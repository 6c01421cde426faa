/**
 * The receiving core of one rank, in this process, for fuzzing: a real {@link Engine} (rank 0 of a
 * small world) whose peers' channels are fakes that record what is sent, with receives and a
 * rendezvous send already posted — so mutated frames can name live request ids — and checks of what
 * the engine did with a frame stream: which errors it reported, how much it allocated, and whether an
 * honest peer still gets through afterwards.
 */

import type { Channel, FrameSink, Transport } from '../../lib/backend.js';
import { ValueCodec } from '../../lib/codec.js';
import { ANY_SOURCE, ANY_TAG } from '../../lib/constants.js';
import { Engine } from '../../lib/engine.js';
import { isVmcommError } from '../../lib/errors.js';
import { emptyHeader, encodeHeader, FRAME_HEADER_BYTES, frameLength, FrameKind } from '../../lib/protocol.js';
import { createRequest, type Request } from '../../lib/request.js';

/** This rank. */
export const SELF = 0;
/** The peer whose frames are fuzzed. */
export const FUZZED = 1;
/** A peer that only ever sends valid frames. */
export const HONEST = 2;
export const WORLD_SIZE = 3;
export const EAGER_LIMIT = 4096;
export const CREDITS = 8;
/** The context the honest peer's check uses. */
const HONEST_CONTEXT = 12;
/** Posted receive buffers are at most this long. */
export const MAX_POSTED = 64;

/** An engine with its observations. */
export interface EngineHarness {
  readonly engine: Engine;
  /** Peers the engine reported lost, with the error. */
  readonly lost: { peer: number; error: Error }[];
  /** Receives and sends posted before the stream (their outcomes are checked). */
  readonly requests: Request<unknown>[];
  /** Peers frames were sent to. */
  readonly sentTo: number[];
  /** What the engine's targets looked like (see {@link checkingSink}). */
  readonly violations: string[];
  /** The largest target `begin` returned. */
  largestTarget: number;
}

/** Builds the engine (ready unless `early`: then frames arrive before selection finished). */
export function engineHarness(o: { early?: boolean; postedSizes?: readonly number[] } = {}): EngineHarness & { ready(): void } {
  const lost: { peer: number; error: Error }[] = [];
  const sentTo: number[] = [];
  const engine = new Engine(SELF, WORLD_SIZE, new ValueCodec(), { peerLost: (peer, error) => lost.push({ peer, error }) });
  // As the world sets it: the largest eager limit of its transports.
  engine.earlyEagerLimitBytes = EAGER_LIMIT;
  const channel = (peer: number): Channel => ({
    send: (_h, _p, done) => {
      sentTo.push(peer);
      done?.();
    },
    close: async () => undefined,
  });
  const transport: Transport = {
    name: 'fuzz',
    priority: 0,
    role: 'network',
    eagerLimitBytes: EAGER_LIMIT,
    eagerCredits: CREDITS,
    start: async () => ({}),
    probe: () => true,
    addPeers: () => undefined,
    connect: async (peer) => channel(peer),
    stop: async () => undefined,
  };
  const h: EngineHarness & { ready(): void } = {
    engine,
    lost,
    requests: [],
    sentTo,
    violations: [],
    largestTarget: 0,
    ready() {
      engine.ready(Array.from({ length: WORLD_SIZE }, () => ({ transport, eagerLimitBytes: EAGER_LIMIT, eagerCredits: CREDITS })));
      post(h, o.postedSizes ?? [8, 0, 64]);
    },
  };
  if (!o.early) h.ready();
  return h;
}

/** Posts receives from the fuzzed peer (buffers and values, wildcards too) and one rendezvous send to it. */
function post(h: EngineHarness, sizes: readonly number[]): void {
  const { engine } = h;
  const recv = (source: number, tag: number, mode: 'value' | 'message' | 'buffer', bytes?: Uint8Array): void => {
    const [request, control] = createRequest<unknown>(undefined);
    engine.receive(0, { source, tag, mode, bytes, control }, (r) => r);
    h.requests.push(request);
  };
  sizes.forEach((n, i) => recv(FUZZED, i, 'buffer', new Uint8Array(Math.min(n, MAX_POSTED))));
  recv(ANY_SOURCE, ANY_TAG, 'value');
  recv(FUZZED, 1, 'message');
  // A rendezvous send (longer than the eager limit): CTS frames from the fuzzed peer can name it (send id 1).
  const [request, control] = createRequest<void>(undefined);
  engine.send(0, SELF, FUZZED, 2, new Uint8Array(EAGER_LIMIT + 1), 0, control, false);
  h.requests.push(request as Request<unknown>);
}

/**
 * A sink in front of the engine that records what a transport could not see: the size of each target
 * (an allocation the header asked for) against `maxTarget`, and a target longer than the frame.
 */
export function checkingSink(h: EngineHarness, maxTarget: number): FrameSink {
  return {
    begin(peer, header) {
      const target = h.engine.begin(peer, header);
      if (target !== undefined) {
        h.largestTarget = Math.max(h.largestTarget, target.byteLength);
        if (target.byteLength > maxTarget) h.violations.push(`begin returned a ${target.byteLength}-byte target (at most ${maxTarget} expected)`);
        if (target.byteLength > frameLength(header)) h.violations.push(`a ${target.byteLength}-byte target for a ${frameLength(header)}-byte payload`);
      }
      return target;
    },
    commit(peer) {
      h.engine.commit(peer);
    },
    lost(peer, error) {
      h.engine.lost(peer, error);
    },
  };
}

/** Errors that a request of the harness may settle with after a corrupt stream. */
const REQUEST_CODES = ['CORRUPT', 'TRUNCATE', 'PEER_LOST'] as const;

/**
 * Checks the harness after a stream: every reported loss is `CORRUPT` (or one of `lossCodes`), every
 * failed request failed with a typed error, no violation was recorded. Returns a sentence per problem.
 */
export function problems(h: EngineHarness, lossCodes: readonly string[] = ['CORRUPT']): string[] {
  const out = [...h.violations];
  for (const { peer, error } of h.lost) {
    if (!isVmcommError(error) || !lossCodes.includes(error.code)) {
      out.push(`peer ${peer} lost with ${error.name} ${(error as { code?: string }).code ?? ''}: ${error.message}${error.cause instanceof Error ? ` (cause: ${error.cause.name}: ${error.cause.message})` : ''}`);
    }
  }
  for (const r of h.requests) {
    const e = r.error;
    if (e !== undefined && !REQUEST_CODES.some((c) => isVmcommError(e, c))) out.push(`a request failed with ${e.name}: ${e.message}`);
  }
  return out;
}

/**
 * The honest peer still gets through: a receive from it completes with its bytes, and a send to it is
 * handed to its channel. Returns a problem sentence, or undefined.
 */
export async function honestPeerWorks(h: EngineHarness, tag = 7): Promise<string | undefined> {
  const { engine } = h;
  // A context of its own: the wildcard receive posted in context 0 would (rightly) take the message.
  const context = HONEST_CONTEXT;
  const [request, control] = createRequest<unknown>(undefined);
  const into = new Uint8Array(4);
  engine.receive(context, { source: HONEST, tag, mode: 'buffer', bytes: into, control }, (r) => r);
  const header = encodeHeader({ ...emptyHeader(), kind: FrameKind.EAGER, context, source: HONEST, tag, payloadBytes: 4, messageBytes: 4, aux: CREDITS }, new Uint8Array(FRAME_HEADER_BYTES));
  const target = engine.begin(HONEST, header);
  target?.set([1, 2, 3, 4]);
  engine.commit(HONEST);
  if (request.state !== 'fulfilled') return `a receive from the honest peer is ${request.state}${request.error ? ` (${request.error.message})` : ''}`;
  if (into.join() !== '1,2,3,4') return `the honest peer's bytes arrived as ${into.join()}`;
  const before = h.sentTo.filter((p) => p === HONEST).length;
  const [sent, sendControl] = createRequest<void>(undefined);
  engine.send(context, SELF, HONEST, tag, new Uint8Array(3), 0, sendControl, false);
  // The channel opens on first use (a microtask or two), then the frame goes out.
  for (let i = 0; i < 4 && h.sentTo.filter((p) => p === HONEST).length === before; i++) await Promise.resolve();
  if (h.sentTo.filter((p) => p === HONEST).length === before) return 'a send to the honest peer never reached its channel';
  if (sent.state === 'rejected') return `a send to the honest peer failed: ${sent.error?.message}`;
  return undefined;
}
