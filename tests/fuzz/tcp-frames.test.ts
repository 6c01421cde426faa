// Property-based fuzzing of what a tcp connection carries, in this process: random and mutated frames
// (truncated headers, huge lengths, wrong versions, unknown kinds, bad msgpack, spliced bytes), read
// in random pieces by the real frame reader and endpoint into the real core (lib/engine.ts), and
// arbitrary handshake bytes into the handshake parsers. Expected every time: the offending channel
// closes with CORRUPT, nothing escapes as an exception, nothing is allocated because a header asked
// for it, and the other peers keep working. (tcp-sockets.test.ts does the same over real sockets,
// before and after the HMAC handshake.) Bugs these properties found are kept as plain regression
// cases at the end.
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isVmcommError, VmcommError } from '../../lib/errors.js';
import { emptyHeader, encodeHeader, FRAME_HEADER_BYTES, FrameKind, frameLength } from '../../lib/protocol.js';
import { createRequest } from '../../lib/request.js';
import { DIRECT_READ_MIN_BYTES, FrameReader, type FrameHandler } from '../../backends/tcp/frame-reader.js';
import { authMessage, checkAuth, helloMessage, jobHash, MAX_MESSAGE_BYTES, MessageAssembler, newChallenge, parseAnswer, parseHello, refusalMessage, verdictMessage } from '../../backends/tcp/handshake.js';
import { ReadRoute } from '../../backends/tcp/socket-reads.js';
import { TcpEndpoint } from '../../backends/tcp/tcp-endpoint.js';
import { checkingSink, EAGER_LIMIT, engineHarness, FUZZED, honestPeerWorks, MAX_POSTED, problems } from './engine-harness.js';
import { certainlyCorrupt, cuts, frameBytes, frameStream, mutate, mutation, setU64, streamBytes, type Mutation } from './frames.js';
import { expectCode, guardProcess, runFuzz } from './fuzz.js';

guardProcess('tcp-frames');

/** Frames come from the fuzzed peer (communicator rank 1) in the world's p2p context mostly. */
const STREAM = frameStream({ sources: [1], contexts: [0], maxPayload: 64, maxFrames: 5 });
/** The largest target a valid stream can ask the engine for: an eager message, a posted buffer or a rendezvous object. */
const MAX_TARGET = Math.max(EAGER_LIMIT, MAX_POSTED, 4 * 64);

/** A socket that goes nowhere: the endpoint writes into it, a test destroys it. */
class NullSocket extends EventEmitter {
  destroyed = false;
  setNoDelay(): this {
    return this;
  }
  write(_chunk: Uint8Array, cb?: (err?: Error | null) => void): boolean {
    if (cb) queueMicrotask(() => cb());
    return true;
  }
  cork(): void {}
  uncork(): void {}
  end(): this {
    return this;
  }
  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true;
      queueMicrotask(() => this.emit('close'));
    }
    return this;
  }
}

/** Feeds `bytes` to an endpoint of the fuzzed peer in reads cut at `at`, the way a socket's `onread` would. */
function feedEndpoint(sink: ReturnType<typeof checkingSink>, bytes: Uint8Array, at: readonly number[]): { endpoint: TcpEndpoint; socket: NullSocket } {
  const socket = new NullSocket();
  const route = new ReadRoute({ buffer: () => new Uint8Array(1), read: () => undefined });
  const endpoint = new TcpEndpoint({
    peer: FUZZED,
    socket: socket as unknown as net.Socket,
    route,
    // A small pool, so that headers often arrive split across reads.
    pool: new Uint8Array(96),
    sink,
    coalesceLimitBytes: 1024,
    closeTimeoutMs: 1000,
    onLost: (_e, error) => sink.lost(FUZZED, error),
  });
  let from = 0;
  for (const to of [...at, bytes.byteLength]) {
    if (to > from) route.feed(bytes.subarray(from, to));
    from = to;
  }
  return { endpoint, socket };
}

describe('fuzz: tcp frames in process (frame reader → endpoint → engine)', () => {
  it('closes the fuzzed channel with CORRUPT or takes the frames; typed errors only; the honest peer keeps working', async () => {
    const seen = { corrupt: 0, taken: 0 };
    await runFuzz(
      'tcp: mutated frame streams',
      fc.asyncProperty(STREAM, fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }), async (frames, fractions) => {
        const h = engineHarness();
        const bytes = streamBytes(frames);
        const { socket } = feedEndpoint(checkingSink(h, MAX_TARGET), bytes, cuts(bytes.byteLength, fractions));
        const bad = problems(h);
        if (bad.length > 0) throw new Error(bad.join('\n'));
        const lost = h.lost.find((l) => l.peer === FUZZED);
        if (lost !== undefined && !socket.destroyed) throw new Error('the engine saw CORRUPT but the socket was not destroyed');
        if (frames[0].mutations.length === 1 && certainlyCorrupt(frames[0].mutations[0]) && lost === undefined) {
          throw new Error('a certainly invalid first header did not close the channel');
        }
        if (lost === undefined) seen.taken++;
        else seen.corrupt++;
        const honest = await honestPeerWorks(h);
        if (honest !== undefined) throw new Error(honest);
      }),
      { numRuns: 40_000, timeLimitMs: 8_000 },
    );
    // Both outcomes happened: streams the core took, and streams it closed as CORRUPT.
    expect(seen.corrupt).toBeGreaterThan(seen.taken / 10);
    expect(seen.taken).toBeGreaterThan(seen.corrupt / 10);
  });

  it('treats frames that arrive before selection finished the same way (they are kept, then replayed)', async () => {
    await runFuzz(
      'tcp: mutated frames before ready',
      fc.asyncProperty(STREAM, fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 }), async (frames, fractions) => {
        const h = engineHarness({ early: true });
        const bytes = streamBytes(frames);
        const sink = checkingSink(h, MAX_TARGET);
        feedEndpoint(sink, bytes, cuts(bytes.byteLength, fractions));
        try {
          h.ready();
        } catch (e) {
          throw new Error(`ready() threw while replaying early frames: ${(e as Error).message}`, { cause: e });
        }
        const bad = problems(h);
        if (bad.length > 0) throw new Error(bad.join('\n'));
        if (frames[0].mutations.length === 1 && certainlyCorrupt(frames[0].mutations[0]) && !h.lost.some((l) => l.peer === FUZZED)) {
          throw new Error('a certainly invalid first header from before selection was not reported once the engine was ready');
        }
        const honest = await honestPeerWorks(h);
        if (honest !== undefined) throw new Error(honest);
      }),
      { numRuns: 15_000, timeLimitMs: 3_000 },
    );
  });

  it('reads arbitrary bytes: CORRUPT or nothing, never another throw, never a target the header asked for', async () => {
    await runFuzz(
      'tcp: arbitrary bytes',
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 }), async (bytes, fractions) => {
        const h = engineHarness();
        feedEndpoint(checkingSink(h, MAX_TARGET), bytes, cuts(bytes.byteLength, fractions));
        const bad = problems(h);
        if (bad.length > 0) throw new Error(bad.join('\n'));
        const honest = await honestPeerWorks(h);
        if (honest !== undefined) throw new Error(honest);
      }),
      { numRuns: 15_000, timeLimitMs: 1_500 },
    );
  });

  it('frame reader alone: only CORRUPT (or the handler\'s own error) escapes, and it never allocates by length', async () => {
    await runFuzz(
      'tcp: frame reader alone',
      fc.property(STREAM, fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }), fc.nat({ max: 200 }), (frames, fractions, poolBytes) => {
        const handler: FrameHandler = { begin: () => undefined, commit: () => undefined, control: () => undefined };
        const reader = new FrameReader(new Uint8Array(poolBytes + 1), handler);
        const bytes = streamBytes(frames);
        let from = 0;
        try {
          for (const to of [...cuts(bytes.byteLength, fractions), bytes.byteLength]) {
            // Through buffer()/read() as a socket delivers: each read at most the buffer offered.
            while (from < to) {
              const into = reader.buffer();
              if (into.byteLength === 0) throw new Error('buffer() offered an empty buffer');
              const n = Math.min(into.byteLength, to - from);
              into.set(bytes.subarray(from, from + n));
              reader.read(n);
              from += n;
            }
          }
        } catch (e) {
          expectCode(e, 'frame reader', 'CORRUPT');
        }
      }),
      { numRuns: 20_000, timeLimitMs: 2_000 },
    );
  });
});

describe('fuzz: tcp frame reader, large payloads', () => {
  it('reads large payloads straight into targets (shorter ones too), mutated or not: exact bytes, or CORRUPT', async () => {
    // Payloads of 32 KiB and more are read directly into the target, in pieces the socket decides.
    const big = fc.record({
      length: fc.integer({ min: DIRECT_READ_MIN_BYTES, max: 3 * DIRECT_READ_MIN_BYTES }),
      target: fc.oneof(fc.constant('whole' as const), fc.constant('none' as const), fc.integer({ min: 0, max: 4 * DIRECT_READ_MIN_BYTES })),
      mutations: fc.oneof(fc.constant([] as Mutation[]), fc.array(mutation, { minLength: 1, maxLength: 2 })),
    });
    await runFuzz(
      'tcp: frame reader, large payloads',
      fc.property(STREAM, big, STREAM, fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 8 }), (before, b, after, readSizes) => {
        const fill = 0x5a;
        const frame = frameBytes({ header: { ...emptyHeader(), kind: FrameKind.EAGER, tag: 77, payloadBytes: b.length, messageBytes: b.length }, payload: new Uint8Array(b.length).fill(fill) });
        const mutated = b.mutations.reduce<Uint8Array>((x, m) => mutate(x, m), frame);
        const bytes = Buffer.concat([streamBytes(before), mutated, streamBytes(after)]);
        const committed: { tag: number; length: number; target: Uint8Array | undefined }[] = [];
        let open: { tag: number; length: number; target: Uint8Array | undefined } | undefined;
        const handler: FrameHandler = {
          begin: (h) => {
            const length = frameLength(h);
            const tag = h[12] | (h[13] << 8);
            const target = tag !== 77 ? undefined : b.target === 'none' ? undefined : new Uint8Array(b.target === 'whole' ? Math.min(length, 4 * DIRECT_READ_MIN_BYTES) : Math.min(b.target, length));
            open = { tag, length, target };
            return target;
          },
          commit: () => {
            if (open !== undefined) committed.push(open);
            open = undefined;
          },
          control: () => undefined,
        };
        const reader = new FrameReader(new Uint8Array(1024), handler);
        let at = 0;
        let k = 0;
        try {
          while (at < bytes.byteLength) {
            const into = reader.buffer();
            const n = Math.min(into.byteLength, readSizes[k++ % readSizes.length], bytes.byteLength - at);
            into.set(bytes.subarray(at, at + n));
            reader.read(n);
            at += n;
          }
        } catch (e) {
          expectCode(e, 'frame reader', 'CORRUPT');
          return;
        }
        // Unmutated and complete: the big frame arrived whole, as far as its target reached.
        if (b.mutations.length === 0) {
          const got = committed.find((c) => c.tag === 77 && c.length === b.length);
          if (got === undefined && before.every((f) => f.mutations.length === 0)) throw new Error('the large frame was not committed');
          if (got?.target !== undefined && Buffer.compare(got.target, new Uint8Array(got.target.byteLength).fill(fill)) !== 0) throw new Error('the large payload arrived changed');
        }
      }),
      { numRuns: 5_000, timeLimitMs: 2_500 },
    );
  });
});

describe('fuzz: tcp handshake parsers', () => {
  it('assemble and check arbitrary handshake bytes without throwing, holding at most one message', async () => {
    const secret = Buffer.alloc(32, 3);
    const hash = jobHash('fuzz-job');
    const context = { secret, jobHash: hash, dialerRank: 1, listenerRank: 0, listenerChallenge: newChallenge(), dialerChallenge: newChallenge() };
    const genuine = [helloMessage(context.listenerChallenge), authMessage(context), verdictMessage(context, 'accept'), refusalMessage('auth')];
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 300 }),
      fc.tuple(fc.constantFrom(...genuine), fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([m, ms]) => ms.reduce<Uint8Array>((b, x) => mutate(b, x), Uint8Array.from(m))),
    );
    await runFuzz(
      'tcp: handshake parsers',
      fc.property(input, fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 }), (bytes, fractions) => {
        const assembler = new MessageAssembler();
        let from = 0;
        for (const to of [...cuts(bytes.byteLength, fractions), bytes.byteLength]) {
          let at = from;
          while (at < to) {
            const taken = assembler.push(bytes, at, to);
            if (typeof taken === 'string') return; // refused: the connection ends here
            if (taken <= 0 && assembler.message === undefined) throw new Error('push made no progress');
            at += taken;
            const body = assembler.message;
            if (body === undefined) continue;
            if (body.byteLength > MAX_MESSAGE_BYTES) throw new Error(`a ${body.byteLength}-byte message was assembled`);
            // Every parser answers with a value or a sentence; none throws on what a stranger sent.
            parseHello(body);
            checkAuth(body, { secret, jobHash: hash, listenerRank: 0, size: 4, listenerChallenge: context.listenerChallenge });
            parseAnswer(body, context);
          }
          from = to;
        }
      }),
      { numRuns: 20_000, timeLimitMs: 2_000 },
    );
  });
});

/** A frame's bytes from header fields (lengths as bigints, so that 2^53 and beyond can be written). */
function rawFrame(kind: number, o: { payload?: bigint; message?: bigint; flags?: number; context?: number; source?: number; tag?: number; version?: number; body?: Uint8Array } = {}): Uint8Array {
  const body = o.body ?? new Uint8Array(0);
  const h = encodeHeader({ ...emptyHeader(), kind: kind as FrameKind, flags: o.flags ?? 0, context: o.context ?? 0, source: o.source ?? FUZZED, tag: o.tag ?? 5 }, new Uint8Array(FRAME_HEADER_BYTES));
  if (o.version !== undefined) h[0] = o.version;
  setU64(h, 32, o.payload ?? BigInt(body.byteLength));
  setU64(h, 40, o.message ?? o.payload ?? BigInt(body.byteLength));
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.byteLength);
  out.set(h);
  out.set(body, FRAME_HEADER_BYTES);
  return out;
}

function lossOf(h: ReturnType<typeof engineHarness>, peer = FUZZED): Error | undefined {
  return h.lost.find((l) => l.peer === peer)?.error;
}

/** Regression examples found by the properties above (kept as plain cases; see the report in the commit). */
describe('fuzz regressions: tcp frames into the core', () => {
  it('a corrupt frame that arrived before selection finished closes only its channel: ready() does not throw, the peer is lost as CORRUPT', async () => {
    // Found by "tcp: mutated frames before ready": ready() rethrew the replay's CORRUPT, failing init().
    const h = engineHarness({ early: true });
    const { socket } = feedEndpoint(checkingSink(h, MAX_TARGET), Uint8Array.from([...rawFrame(FrameKind.RTS, { version: 0 }), ...rawFrame(FrameKind.RTS)]), []);
    expect(socket.destroyed).toBe(true);
    expect(() => h.ready()).not.toThrow();
    expect(lossOf(h)).toMatchObject({ name: 'VmcommError', code: 'CORRUPT' });
    expect(await honestPeerWorks(h)).toBeUndefined();
  });

  it('an early eager frame announcing 2^31 bytes is CORRUPT, not a 2 GiB allocation', () => {
    // Found by "tcp: mutated frames before ready": early frames were kept unchecked, their payload allocated.
    const h = engineHarness({ early: true });
    const { socket } = feedEndpoint(checkingSink(h, MAX_TARGET), rawFrame(FrameKind.EAGER, { payload: 2n ** 31n }), []);
    expect(socket.destroyed).toBe(true);
    expect(h.largestTarget).toBe(0);
    h.ready();
    expect(lossOf(h)).toMatchObject({ code: 'CORRUPT' });
  });

  it.each([
    ['64 KiB (a spliced header)', 2n ** 16n],
    ['2^32 + 1 (a RangeError that surfaced as PEER_LOST)', 2n ** 32n + 1n],
    ['2^53 − 1', 2n ** 53n - 1n],
  ])('an eager frame of %s above the pair\'s eager limit is CORRUPT before anything is allocated', (_what, length) => {
    // Found by "tcp: mutated frame streams" and "tcp sockets: after the handshake".
    const h = engineHarness();
    const { socket } = feedEndpoint(checkingSink(h, MAX_TARGET), rawFrame(FrameKind.EAGER, { payload: length, tag: 9 }), []);
    expect(socket.destroyed).toBe(true);
    expect(h.largestTarget).toBe(0);
    expect(lossOf(h)).toMatchObject({ code: 'CORRUPT' });
    expect(problems(h)).toEqual([]);
  });

  it('an RTS announcing more than this process can allocate fails the object receive with CORRUPT, in either order, and throws nothing', () => {
    // The receive is posted first: the RTS matches it as it arrives (the wildcard value receive of the harness).
    const h = engineHarness();
    feedEndpoint(checkingSink(h, MAX_TARGET), rawFrame(FrameKind.RTS, { payload: 0n, message: 2n ** 40n, flags: 1, tag: 9 }), []);
    expect(h.requests.some((r) => isVmcommError(r.error, 'CORRUPT'))).toBe(true);
    expect(problems(h)).toEqual([]);
    // The RTS first, then the receive: recv() must reject, not throw a RangeError.
    const g = engineHarness();
    feedEndpoint(checkingSink(g, MAX_TARGET), rawFrame(FrameKind.RTS, { payload: 0n, message: 2n ** 40n, flags: 1, context: 5, tag: 9 }), []);
    const [request, control] = createRequest<unknown>(undefined);
    expect(() => g.engine.receive(5, { source: FUZZED, tag: 9, mode: 'value', bytes: undefined, control }, (r) => r)).not.toThrow();
    expect(request.error).toMatchObject({ name: 'VmcommError', code: 'CORRUPT' });
  });

  it('a channel that broke before selection finished is reported once the engine is ready (no receive waits forever)', () => {
    const h = engineHarness({ early: true });
    checkingSink(h, MAX_TARGET).lost(FUZZED, new VmcommError('PEER_LOST', 'reset before selection'));
    h.ready();
    expect(lossOf(h)).toMatchObject({ code: 'PEER_LOST' });
    const [request, control] = createRequest<unknown>(undefined);
    h.engine.receive(0, { source: FUZZED, tag: 3, mode: 'value', bytes: undefined, control }, (r) => r);
    expect(request.error).toMatchObject({ code: 'PEER_LOST' });
  });

  it('an early eager frame within the early limit but above the pair\'s limit fails that peer at ready(), not the start-up', () => {
    const h = engineHarness({ early: true });
    h.engine.earlyEagerLimitBytes = 2 * EAGER_LIMIT;
    feedEndpoint(checkingSink(h, 2 * EAGER_LIMIT), rawFrame(FrameKind.EAGER, { body: new Uint8Array(EAGER_LIMIT + 8), tag: 9 }), []);
    expect(h.lost).toEqual([]);
    expect(() => h.ready()).not.toThrow();
    expect(lossOf(h)).toMatchObject({ code: 'CORRUPT' });
  });

  it('frames that may only answer this rank (CTS, DATA, CREDIT, CANCEL_REPLY) are CORRUPT before it is ready', () => {
    for (const kind of [FrameKind.CTS, FrameKind.DATA, FrameKind.CREDIT, FrameKind.CANCEL_REPLY]) {
      const h = engineHarness({ early: true });
      const { socket } = feedEndpoint(checkingSink(h, MAX_TARGET), rawFrame(kind), []);
      expect(socket.destroyed).toBe(true);
      h.ready();
      expect(lossOf(h)).toMatchObject({ code: 'CORRUPT' });
    }
  });
});
