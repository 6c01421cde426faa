// Property-based fuzzing of the tcp transport over real loopback sockets, with the real core behind it
// (lib/engine.ts as the frame sink). Rank 0 and rank 1 are honest; every case, a stranger or a rank
// of the job misbehaves towards rank 0:
// - before the handshake: garbage, or a genuine AUTH message mutated (bit flips, truncation, bad
//   lengths): rank 0 refuses it (REFUSE, then close; a warning in its log) and no peer is affected;
// - as a fake listener: garbage where HELLO or VERDICT belongs makes a real dial fail with AUTH;
// - after the handshake (an authenticated rank): mutated frame streams: rank 0 closes that channel with
//   CORRUPT (PEER_LOST when the stream just ends), never another error;
// and after each case ranks 0 and 1 still exchange messages both ways.
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Transport } from '../../lib/backend.js';
import { ValueCodec } from '../../lib/codec.js';
import { Engine } from '../../lib/engine.js';
import { isVmcommError, VmcommError } from '../../lib/errors.js';
import { createRequest } from '../../lib/request.js';
import { tcp } from '../../backends/tcp/index.js';
import { Dial } from '../../backends/tcp/dialer.js';
import { authMessage, helloMessage, jobHash, newChallenge, refusalMessage } from '../../backends/tcp/handshake.js';
import { cardOf, RecordingLogger } from '../../backends/tcp/test/helpers.js';
import { certainlyCorrupt, frameStream, mutate, streamBytes } from './frames.js';
import { guardProcess, runFuzz } from './fuzz.js';

guardProcess('tcp-sockets');

const EAGER = 4096;
const CREDITS = 8;
/** Ranks 2… of the world are the misbehaving ones; each is used once (rank 0 keeps a lost rank lost). */
const ATTACKER_RANKS = 3000;
const SIZE = 2 + ATTACKER_RANKS;
/** How long a case may take before it counts as a hang (a safety net, not a speed assertion). */
const CASE_TIMEOUT_MS = 5_000;

interface Rank {
  readonly engine: Engine;
  readonly transport: Transport;
  readonly lost: { peer: number; error: Error }[];
  readonly logger: RecordingLogger;
}

let ranks: Rank[] = [];
let port = 0;
let secret: Uint8Array;
let jobId: string;
let nextAttacker = 2;
let nextTag = 100;

beforeAll(async () => {
  secret = Buffer.alloc(32, 7);
  jobId = 'fuzz-job';
  ranks = [0, 1].map((rank) => {
    const lost: { peer: number; error: Error }[] = [];
    const logger = new RecordingLogger();
    const engine = new Engine(rank, SIZE, new ValueCodec(), { peerLost: (peer, error) => lost.push({ peer, error }) });
    engine.earlyEagerLimitBytes = EAGER;
    const transport = tcp({ handshakeTimeoutMs: 3_000, closeTimeoutMs: 500 })({
      rank,
      size: SIZE,
      jobId,
      jobSecret: secret,
      processNonce: `nonce-${rank}`,
      address: '127.0.0.1',
      sink: engine,
      logger,
    });
    return { engine, transport, lost, logger };
  });
  const fields = await Promise.all(ranks.map((r) => r.transport.start()));
  port = (fields[0] as { port: number }).port;
  ranks[0].transport.probe(cardOf(1, fields[1]));
  ranks[1].transport.probe(cardOf(0, fields[0]));
  ranks[0].transport.addPeers([1]);
  ranks[1].transport.addPeers([0]);
  for (const r of ranks) r.engine.ready(Array.from({ length: SIZE }, () => ({ transport: r.transport, eagerLimitBytes: EAGER, eagerCredits: CREDITS })));
});

afterAll(async () => {
  for (const r of ranks) r.engine.beginClosing();
  await Promise.all(ranks.map((r) => r.transport.stop()));
});

/** Rejects after `ms` with `what`: a case that does not end is a hang. */
function within<T>(p: PromiseLike<T>, what: string, ms = CASE_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    Promise.resolve(p).finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no outcome within ${ms} ms`)), ms))),
  ]);
}

/** Ranks 0 and 1 exchange one eager and one rendezvous message each way (the honest pair keeps working). */
async function honestExchange(): Promise<void> {
  for (const [from, to] of [
    [0, 1],
    [1, 0],
  ] as const) {
    for (const n of [16, EAGER + 1]) {
      const tag = nextTag++;
      const data = Uint8Array.from({ length: n }, (_, i) => (i * 13 + tag) & 0xff);
      const into = new Uint8Array(n);
      const [received, rc] = createRequest<unknown>(undefined);
      ranks[to].engine.receive(12, { source: from, tag, mode: 'buffer', bytes: into, control: rc }, (r) => r);
      const [sent, sc] = createRequest<void>(undefined);
      ranks[from].engine.send(12, from, to, tag, data, 0, sc, false);
      await within(Promise.all([received, sent]), `honest message ${from} → ${to} (${n} bytes)`);
      if (Buffer.compare(into, data) !== 0) throw new Error(`honest message ${from} → ${to} arrived changed`);
    }
  }
  for (const r of ranks) {
    const honestLoss = r.lost.find((l) => l.peer === 0 || l.peer === 1);
    if (honestLoss !== undefined) throw new Error(`an honest rank was reported lost: ${honestLoss.error.message}`);
  }
}

/** Dials rank 0 as `rank` with the job secret, writes `bytes` once accepted, ends; resolves when the socket closed. */
function authenticatedStream(rank: number, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    new Dial(
      { host: '127.0.0.1', port, rank, peer: 0, secret, jobHash: jobHash(jobId), handshakeTimeoutMs: 3_000, pool: new Uint8Array(512) },
      {
        accepted: (socket) => {
          socket.on('error', () => undefined);
          socket.on('close', () => setImmediate(resolve));
          if (bytes.byteLength > 0) socket.write(bytes);
          socket.end();
        },
        yielded: () => reject(new Error(`rank ${rank}'s dial was answered LOSE`)),
        failed: (error) => reject(error),
      },
    );
  });
}

/**
 * Connects to rank 0 as a stranger: waits for HELLO (unless `eager`), writes what `build` makes of
 * the listener's challenge, ends; resolves with every byte rank 0 sent after HELLO once it closed.
 */
function strangerConnection(build: (listenerChallenge: Uint8Array) => Uint8Array, eager: boolean): Promise<Buffer> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let got = Buffer.alloc(0);
    let sent = false;
    const send = (challenge: Uint8Array): void => {
      sent = true;
      socket.write(build(challenge));
      socket.end();
    };
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (!sent && got.byteLength >= 36) {
        const challenge = Uint8Array.from(got.subarray(4, 36));
        got = got.subarray(36);
        send(challenge);
      }
    });
    if (eager) socket.on('connect', () => send(new Uint8Array(32)));
    socket.on('close', () => setImmediate(() => resolve(eager ? got.subarray(Math.min(36, got.byteLength)) : got)));
  });
}

/** A change that certainly breaks an AUTH message (so it must be refused, never accepted). */
const authBreak = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('prefix' as const), value: fc.oneof(fc.constantFrom(0, 1, 108, 110, 0xffff), fc.nat({ max: 0xffff })) }),
  fc.record({ kind: fc.constant('garbage' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 200 }) }),
  fc.record({ kind: fc.constant('wrong-secret' as const) }),
);

describe('fuzz: tcp over sockets', () => {
  it('before authentication: garbage and broken AUTH messages are refused and closed; no peer is touched', async () => {
    const refusalBytes = (reason: Parameters<typeof refusalMessage>[0]) => [...refusalMessage(reason)].join();
    const refusals = new Set((['malformed', 'job', 'rank', 'auth'] as const).map(refusalBytes));
    const seen = { refused: 0, closed: 0 };
    await runFuzz(
      'tcp sockets: before the handshake',
      fc.asyncProperty(authBreak, fc.boolean(), fc.integer({ min: 2, max: SIZE - 1 }), async (change, eager, claimed) => {
        const warningsBefore = ranks[0].logger.warnings.length;
        const lossesBefore = ranks[0].lost.length;
        const answer = await within(
          strangerConnection((listenerChallenge) => {
            const auth = authMessage({
              secret: change.kind === 'wrong-secret' ? Buffer.alloc(32, 9) : secret,
              jobHash: jobHash(jobId),
              dialerRank: claimed,
              listenerRank: 0,
              listenerChallenge,
              dialerChallenge: newChallenge(),
            });
            switch (change.kind) {
              case 'flip':
                return mutate(auth, { kind: 'flip', at: change.at % auth.byteLength, bit: change.bit });
              case 'truncate':
                return auth.subarray(0, change.at % auth.byteLength);
              case 'prefix': {
                const b = Buffer.from(auth);
                b.writeUInt16LE(change.value === 109 ? 108 : change.value, 0);
                return b;
              }
              case 'garbage':
                return change.bytes;
              case 'wrong-secret':
                return auth;
            }
          }, eager && change.kind === 'garbage'),
          'a stranger connection',
        );
        // Either nothing (an incomplete message, then the stranger's end) or exactly one refusal.
        if (answer.byteLength > 0 && !refusals.has([...answer].join())) throw new Error(`rank 0 answered a stranger with ${answer.toString('hex')}`);
        if (answer.byteLength > 0 && ranks[0].logger.warnings.length === warningsBefore) throw new Error('a refusal was not logged');
        if (ranks[0].lost.length !== lossesBefore) throw new Error(`a stranger made rank 0 report a loss: ${ranks[0].lost.at(-1)?.error.message}`);
        if (answer.byteLength > 0) seen.refused++;
        else seen.closed++;
        await honestExchange();
      }),
      { numRuns: 600, timeLimitMs: 4_000 },
    );
    // Both: complete garbage was refused, incomplete garbage just closed.
    expect(seen.refused).toBeGreaterThan(0);
    expect(seen.closed).toBeGreaterThan(0);
  });

  it('as a fake listener: garbage in place of HELLO or VERDICT makes a real dial fail with AUTH (PEER_LOST if it just closes)', async () => {
    const listenerChallenge = newChallenge();
    await runFuzz(
      'tcp sockets: fake listener',
      fc.asyncProperty(fc.boolean(), fc.uint8Array({ maxLength: 160 }), async (afterHello, garbage) => {
        const server = net.createServer((s) => {
          s.on('error', () => undefined);
          s.resume(); // read (and drop) the AUTH a dial sends, so the end of the connection is seen
          s.end(afterHello ? Buffer.concat([helloMessage(listenerChallenge), garbage]) : garbage);
        });
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        const fakePort = (server.address() as net.AddressInfo).port;
        try {
          const outcome = await within(
            new Promise<{ error?: Error }>((resolve) => {
              new Dial(
                { host: '127.0.0.1', port: fakePort, rank: 1, peer: 0, secret, jobHash: jobHash(jobId), handshakeTimeoutMs: 3_000, pool: new Uint8Array(512) },
                {
                  accepted: (socket) => {
                    socket.destroy();
                    resolve({ error: new Error('a fake listener without the secret was accepted') });
                  },
                  yielded: () => resolve({ error: new Error('a fake listener without the secret made the dial yield') }),
                  failed: (error) => resolve({ error }),
                },
              );
            }),
            'a dial to a fake listener',
          );
          const e = outcome.error;
          if (!(e instanceof VmcommError) || (e.code !== 'AUTH' && e.code !== 'PEER_LOST')) throw e ?? new Error('no outcome');
          // A complete first message after HELLO (or instead of it) that is garbage must be AUTH.
          const first = garbage.byteLength >= 2 ? garbage[0] | (garbage[1] << 8) : -1;
          const completeGarbage = first === 0 || first > 109 || (first > 0 && garbage.byteLength >= 2 + first);
          const stopping = afterHello && first === 2 && garbage[2] === 4 && garbage[3] === 5; // a genuine REFUSE "stopping"
          if (completeGarbage && !stopping && e.code !== 'AUTH') throw new Error(`garbage ${afterHello ? 'after' : 'instead of'} HELLO gave ${e.code}: ${e.message}`);
        } finally {
          await new Promise<void>((resolve) => server.close(() => resolve()));
        }
      }),
      { numRuns: 300, timeLimitMs: 1_500 },
    );
  });

  it('after authentication: mutated frames close that channel with CORRUPT (PEER_LOST at a plain end), typed only; ranks 0 and 1 keep working', async () => {
    const stream = frameStream({ sources: [0], contexts: [0], maxPayload: 64, maxFrames: 4 });
    const seen = { CORRUPT: 0, PEER_LOST: 0, none: 0 };
    await runFuzz(
      'tcp sockets: after the handshake',
      fc.asyncProperty(stream, async (frames) => {
        if (nextAttacker >= SIZE) throw new Error('out of attacker ranks: raise ATTACKER_RANKS');
        const rank = nextAttacker++;
        const bytes = streamBytes(frames);
        await within(authenticatedStream(rank, bytes), `rank ${rank}'s stream`);
        const losses = ranks[0].lost.filter((l) => l.peer === rank);
        if (losses.length > 1) throw new Error(`rank ${rank} was reported lost ${losses.length} times`);
        const error = losses[0]?.error;
        if (error !== undefined) {
          if (!isVmcommError(error, 'CORRUPT') && !isVmcommError(error, 'PEER_LOST')) throw new Error(`rank ${rank} lost with ${error.name}: ${error.message}`, { cause: error });
          // A PEER_LOST that hides another error (a RangeError from a length, say) is a bug.
          const cause = error.cause as { code?: unknown } | undefined;
          if (isVmcommError(error, 'PEER_LOST') && cause !== undefined && typeof cause.code !== 'string') throw new Error(`PEER_LOST hides ${String(cause)}`, { cause });
        }
        seen[error === undefined ? 'none' : (error as VmcommError).code === 'CORRUPT' ? 'CORRUPT' : 'PEER_LOST']++;
        if (frames[0].mutations.length === 1 && certainlyCorrupt(frames[0].mutations[0]) && !isVmcommError(error, 'CORRUPT')) {
          throw new Error(`a certainly invalid first header gave ${error === undefined ? 'no loss' : (error as Error).message}`);
        }
        await honestExchange();
      }),
      { numRuns: 1_000, timeLimitMs: 5_000 },
    );
    // Corrupt streams closed as CORRUPT; streams that were valid up to their end as PEER_LOST (an end
    // without a goodbye), or as nothing (a stream that happened to end with a goodbye).
    expect(seen.CORRUPT).toBeGreaterThan(0);
    expect(seen.PEER_LOST).toBeGreaterThan(0);
  });

  it.each([
    ['a zero-length message instead of HELLO', Buffer.from([0, 0])],
    ['an oversized length instead of HELLO', Buffer.from([0xff, 0xff, 1, 2])],
    ['a complete message that is not HELLO', Buffer.from([3, 0, 9, 9, 9])],
  ])('regression: %s fails the dial with AUTH (it was PEER_LOST)', async (_what, garbage) => {
    const server = net.createServer((s) => {
      s.on('error', () => undefined);
      s.resume();
      s.end(garbage);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const error = await within(
        new Promise<Error>((resolve) => {
          new Dial(
            { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, rank: 1, peer: 0, secret, jobHash: jobHash(jobId), handshakeTimeoutMs: 3_000, pool: new Uint8Array(512) },
            { accepted: () => resolve(new Error('accepted')), yielded: () => resolve(new Error('yielded')), failed: resolve },
          );
        }),
        'a dial to a fake listener',
      );
      expect(error).toMatchObject({ name: 'VmcommError', code: 'AUTH' });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
