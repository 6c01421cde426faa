import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CompletionQueue } from '../completion-queue.js';
import {
  MAX_MESSAGE_BYTES,
  MessageAssembler,
  authMessage,
  checkAuth,
  helloMessage,
  jobHash,
  newChallenge,
  parseAnswer,
  parseHello,
  refusalMessage,
  verdictMessage,
  type HandshakeContext,
} from '../handshake.js';
import {
  DEFAULT_CLOSE_TIMEOUT_MS,
  DEFAULT_COALESCE_LIMIT_BYTES,
  DEFAULT_EAGER_CREDITS,
  DEFAULT_EAGER_LIMIT_BYTES,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_PORT,
  DEFAULT_READ_BUFFER_BYTES,
  parseTcpInit,
  tcp,
  type TcpInit,
} from '../index.js';
import { FrameKind, emptyHeader, encodeHeader } from '../../../lib/protocol.js';
import { FrameReader } from '../frame-reader.js';
import { ReadRoute } from '../socket-reads.js';
import { StagingRing } from '../staging-ring.js';

describe('parseTcpInit and tcp()', () => {
  it('applies the defaults', () => {
    expect(parseTcpInit()).toEqual({
      port: DEFAULT_PORT,
      eagerLimitBytes: DEFAULT_EAGER_LIMIT_BYTES,
      eagerCredits: DEFAULT_EAGER_CREDITS,
      handshakeTimeoutMs: DEFAULT_HANDSHAKE_TIMEOUT_MS,
      closeTimeoutMs: DEFAULT_CLOSE_TIMEOUT_MS,
      coalesceLimitBytes: DEFAULT_COALESCE_LIMIT_BYTES,
      readBufferBytes: DEFAULT_READ_BUFFER_BYTES,
    });
    expect(DEFAULT_EAGER_LIMIT_BYTES).toBe(65_536);
    expect(DEFAULT_EAGER_CREDITS).toBe(64);
    expect(parseTcpInit({ port: 4000, eagerCredits: 2 })).toMatchObject({ port: 4000, eagerCredits: 2, eagerLimitBytes: 65_536 });
  });

  it.each([
    [{ port: -1 }],
    [{ port: 65_536 }],
    [{ port: 1.5 }],
    [{ eagerCredits: 0 }],
    [{ eagerLimitBytes: Number.NaN }],
    [{ handshakeTimeoutMs: 0 }],
    [{ coalesceLimitBytes: 10 }],
    [{ readBufferBytes: 10 }],
    [{ port: '80' }],
    [{ prot: 80 }],
    [null],
    ['tcp'],
  ])('rejects %j with INVALID_ARGUMENT', (init) => {
    expect(() => parseTcpInit(init as TcpInit)).toThrow(expect.objectContaining({ name: 'VmcommError', code: 'INVALID_ARGUMENT' }));
    expect(() => tcp(init as TcpInit)).toThrow(expect.objectContaining({ name: 'VmcommError', code: 'INVALID_ARGUMENT' }));
  });

  it('carries its transport name', () => {
    expect(tcp().transportName).toBe('tcp');
  });
});

describe('handshake messages', () => {
  const secret = randomBytes(32);
  const job = jobHash('job-1');
  const body = (m: Buffer): Buffer => m.subarray(2, 2 + m.readUInt16LE(0));

  function exchange(dialerSecret: Uint8Array, o: { dialerRank?: number; listenerRank?: number; job?: Buffer } = {}) {
    const listenerChallenge = newChallenge();
    const hello = parseHello(body(helloMessage(listenerChallenge)));
    if (typeof hello === 'string') throw new Error(hello);
    const dialer: HandshakeContext = {
      secret: dialerSecret,
      jobHash: o.job ?? job,
      dialerRank: o.dialerRank ?? 1,
      listenerRank: o.listenerRank ?? 0,
      listenerChallenge: hello.listenerChallenge,
      dialerChallenge: newChallenge(),
    };
    const checked = checkAuth(body(authMessage(dialer)), { secret, jobHash: job, listenerRank: 0, size: 4, listenerChallenge });
    return { dialer, checked };
  }

  it('authenticates both ways with the same secret', () => {
    const { dialer, checked } = exchange(secret);
    expect('context' in checked).toBe(true);
    if (!('context' in checked)) return;
    expect(checked.context.dialerRank).toBe(1);
    for (const verdict of ['accept', 'lose'] as const) {
      expect(parseAnswer(body(verdictMessage(checked.context, verdict)), dialer)).toEqual({ verdict });
    }
  });

  it('refuses a wrong secret, another job and impossible ranks', () => {
    expect(exchange(randomBytes(32)).checked).toMatchObject({ refusal: 'auth' });
    expect(exchange(secret, { job: jobHash('job-2') }).checked).toMatchObject({ refusal: 'job' });
    expect(exchange(secret, { dialerRank: 4 }).checked).toMatchObject({ refusal: 'rank' });
    expect(exchange(secret, { dialerRank: 0 }).checked).toMatchObject({ refusal: 'rank' });
    expect(exchange(secret, { listenerRank: 2 }).checked).toMatchObject({ refusal: 'rank' });
  });

  it('rejects a verdict from a listener without the secret, or for another challenge', () => {
    const { dialer, checked } = exchange(secret);
    if (!('context' in checked)) throw new Error('expected success');
    const forged = { ...checked.context, secret: randomBytes(32) };
    expect(typeof parseAnswer(body(verdictMessage(forged, 'accept')), dialer)).toBe('string');
    const replayed = { ...checked.context, dialerChallenge: newChallenge() };
    expect(typeof parseAnswer(body(verdictMessage(replayed, 'accept')), dialer)).toBe('string');
    expect(parseAnswer(body(refusalMessage('auth')), dialer)).toEqual({ refusal: 'auth' });
  });

  it('never puts the secret on the wire', () => {
    const { dialer, checked } = exchange(secret);
    if (!('context' in checked)) throw new Error('expected success');
    for (const m of [authMessage(dialer), verdictMessage(checked.context, 'accept')]) {
      expect(m.includes(secret)).toBe(false);
    }
  });

  it('assembles messages split anywhere and refuses oversized ones', () => {
    const stream = Buffer.concat([helloMessage(newChallenge()), refusalMessage('job')]);
    for (let cut = 1; cut < stream.byteLength; cut++) {
      const a = new MessageAssembler();
      const bodies: Buffer[] = [];
      for (const part of [stream.subarray(0, cut), stream.subarray(cut)]) {
        let at = 0;
        while (at < part.byteLength) {
          const n = a.push(part, at, part.byteLength);
          if (typeof n === 'string') throw new Error(n);
          at += n;
          if (a.message) bodies.push(Buffer.from(a.message));
        }
      }
      expect(bodies.map((b) => b[0])).toEqual([1, 4]);
    }
    const huge = Buffer.alloc(4);
    huge.writeUInt16LE(MAX_MESSAGE_BYTES + 1, 0);
    expect(typeof new MessageAssembler().push(huge, 0, 4)).toBe('string');
  });
});

describe('StagingRing', () => {
  it('never hands out overlapping live slices, and reuses memory once released', () => {
    const ring = new StagingRing(1000);
    const live: { start: number; end: number }[] = [];
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    let wrapped = 0;
    for (let step = 0; step < 20_000; step++) {
      if (live.length > 0 && rand(3) === 0) {
        const oldest = live.shift()!;
        ring.release(oldest.end);
        continue;
      }
      const n = 1 + rand(300);
      const start = ring.alloc(n);
      if (start < 0) {
        if (live.length === 0) throw new Error('an empty ring refused a slice');
        continue;
      }
      if (start === 0 && live.length > 0) wrapped++;
      expect(start + n).toBeLessThanOrEqual(1000);
      for (const s of live) expect(start + n <= s.start || start >= s.end).toBe(true);
      live.push({ start, end: start + n });
    }
    expect(wrapped).toBeGreaterThan(0);
  });
});

describe('CompletionQueue', () => {
  it('is first-in first-out across growth', () => {
    const q = new CompletionQueue();
    const calls: number[] = [];
    let next = 0;
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 100 * (round + 1); i++) {
        const id = next++;
        q.push(() => calls.push(id), id);
      }
      while (q.length > 30) {
        const done = q.shift();
        expect(q.shiftedEnd).toBe(calls.length);
        done?.();
      }
    }
    while (q.length > 0) q.shift()?.();
    expect(calls).toEqual([...Array(next).keys()]);
  });
});

describe('ReadRoute.feed (the fallback for sockets without onread)', () => {
  it('copies chunks into whatever buffer the reader offers, direct targets included', () => {
    const length = 300_000;
    const payload = Buffer.alloc(length);
    for (let i = 0; i < length; i++) payload[i] = (i * 13) & 0xff;
    const header = encodeHeader({ ...emptyHeader(), kind: FrameKind.EAGER, payloadBytes: length, messageBytes: length }, new Uint8Array(48));
    const small = encodeHeader({ ...emptyHeader(), kind: FrameKind.EAGER, tag: 2, payloadBytes: 1, messageBytes: 1 }, new Uint8Array(48));
    const stream = Buffer.concat([header, payload, small, Buffer.of(99)]);
    const target = new Uint8Array(length);
    const tiny = new Uint8Array(1);
    const commits: number[] = [];
    const targets = [target, tiny];
    const reader = new FrameReader(new Uint8Array(1024), {
      begin: () => targets.shift(),
      commit: () => commits.push(commits.length),
      control: () => undefined,
    });
    const route = new ReadRoute({ buffer: () => reader.buffer(), read: (n) => reader.read(n) });
    for (let at = 0; at < stream.byteLength; at += 65_536) route.feed(stream.subarray(at, at + 65_536));
    expect(commits).toEqual([0, 1]);
    expect(Buffer.from(target).equals(payload)).toBe(true);
    expect(tiny[0]).toBe(99);
  });
});
