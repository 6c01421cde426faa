import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Channel } from '../../../lib/backend.js';
import { Dial } from '../dialer.js';
import { jobHash } from '../handshake.js';
import { TcpTransport } from '../index.js';
import {
  RecordingSink,
  cardOf,
  gatedProxy,
  header,
  makeTransport,
  makeWorld,
  pattern,
  same,
  send,
  settle,
  stopAll,
  waitFor,
} from './helpers.js';

afterEach(stopAll);

/** The socket under a channel (tests only). */
function socketOf(channel: Channel): net.Socket {
  return (channel as unknown as { socket: net.Socket }).socket;
}

describe('card and probe', () => {
  it('publishes host and port and probes only cards that list tcp', async () => {
    const { transports, cards } = await makeWorld(2, { addPeers: false });
    const [a] = transports;
    expect(a.name).toBe('tcp');
    expect(a.priority).toBe(0);
    expect(a.role).toBe('network');
    expect(a.eagerLimitBytes).toBe(64 * 1024);
    expect(a.eagerCredits).toBe(64);
    const fields = cards[0].backends.tcp as { host: string; port: number };
    expect(fields.host).toBe('127.0.0.1');
    expect(Number.isInteger(fields.port) && fields.port > 0).toBe(true);
    expect(await a.probe(cards[1])).toBe(true);
    expect(await a.probe(cardOf(1, undefined))).toBe(false);
    expect(await a.probe(cardOf(1, { host: '127.0.0.1' }))).toBe(false);
    expect(await a.probe(cardOf(1, { host: '127.0.0.1', port: 70000 }))).toBe(false);
    // A rank reaches itself through `self`, not tcp.
    expect(await a.probe(cards[0])).toBe(false);
  });

  it('binds to the given address only, and takes overrides from TcpInit', async () => {
    const { transports, cards } = await makeWorld(1, { init: { eagerLimitBytes: 1000, eagerCredits: 3 } });
    expect(transports[0].eagerLimitBytes).toBe(1000);
    expect(transports[0].eagerCredits).toBe(3);
    const { port } = cards[0].backends.tcp as { port: number };
    const other = net.connect({ host: '127.0.0.2', port });
    const outcome = await new Promise<string>((resolve) => {
      other.on('connect', () => resolve('connected'));
      other.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    other.destroy();
    expect(outcome).toBe('ECONNREFUSED');
  });

  it('reports a listening failure as unavailable instead of throwing', async () => {
    const { cards, secret, jobId } = await makeWorld(1);
    const { port } = cards[0].backends.tcp as { port: number };
    const { transport, logger } = makeTransport(0, 1, { secret, jobId, init: { port } });
    expect(await transport.start()).toBeUndefined();
    expect(transport.unavailableReason).toMatch(/cannot listen/);
    expect(logger.warnings.length).toBe(1);
  });
});

describe('connect and frames', () => {
  it('carries frames both ways, in order, on one channel per pair', async () => {
    const { transports, sinks } = await makeWorld(2);
    const [a, b] = transports;
    const ab = await a.connect(1);
    expect(await a.connect(1)).toBe(ab);
    const ba = await b.connect(0);
    for (let i = 0; i < 5; i++) {
      void send(ab, pattern(10 + i, i), 7, i);
      void send(ba, pattern(20 + i, 100 + i), 8, i);
    }
    await sinks[1].until(() => sinks[1].frames.length === 5);
    await sinks[0].until(() => sinks[0].frames.length === 5);
    sinks[1].frames.forEach((f, i) => {
      expect(f.peer).toBe(0);
      expect(f.header.tag).toBe(7);
      expect(f.header.seq).toBe(i);
      expect(f.target).toEqual(pattern(10 + i, i));
    });
    sinks[0].frames.forEach((f, i) => {
      expect(f.peer).toBe(1);
      expect(f.header.tag).toBe(8);
      expect(f.target).toEqual(pattern(20 + i, 100 + i));
    });
    // Both ends are the two sides of the same TCP connection.
    expect(socketOf(ab).localPort).toBe(socketOf(ba).remotePort);
    expect(sinks[0].violations).toEqual([]);
    expect(sinks[1].violations).toEqual([]);
  });

  it.each([
    ['0 bytes', 0],
    ['8 bytes', 8],
    ['just below the coalesce limit', 16 * 1024 - 48],
    ['just above the coalesce limit', 16 * 1024 - 47],
    ['64 KiB', 64 * 1024],
    ['1 MiB', 1024 * 1024],
    ['64 MiB', 64 * 1024 * 1024],
  ])('delivers a payload of %s intact', async (_name, length) => {
    const { transports, sinks } = await makeWorld(2);
    const ab = await transports[0].connect(1);
    const payload = pattern(length, length);
    await send(ab, payload, 1, 1);
    // A second frame right behind proves the stream stayed aligned.
    await send(ab, pattern(3, 9), 2, 2);
    await sinks[1].until(() => sinks[1].frames.length === 2);
    const [first, second] = sinks[1].frames;
    expect(first.header.payloadBytes).toBe(length);
    expect(first.target!.byteLength).toBe(length);
    expect(same(first.target!, payload)).toBe(true);
    expect(second.target).toEqual(pattern(3, 9));
  });

  it('sends payloads backed by a SharedArrayBuffer', async () => {
    const { transports, sinks } = await makeWorld(2);
    const ab = await transports[0].connect(1);
    for (const length of [16, 256 * 1024]) {
      const shared = new Uint8Array(new SharedArrayBuffer(length));
      shared.set(pattern(length, 5));
      await send(ab, shared);
    }
    await sinks[1].until(() => sinks[1].frames.length === 2);
    expect(sinks[1].frames[0].target).toEqual(pattern(16, 5));
    expect(same(sinks[1].frames[1].target!, pattern(256 * 1024, 5))).toBe(true);
  });

  it('writes the payload into the target the sink returns, and discards what does not fit', async () => {
    const { transports, sinks } = await makeWorld(2);
    const ab = await transports[0].connect(1);
    const sink = sinks[1];
    const big = new Uint8Array(2 * 1024 * 1024);
    const short = new Uint8Array(100_000);
    const tiny = new Uint8Array(5);
    // By tag: where the payload goes. Tag 3 is discarded; tag 5 gets a fresh buffer.
    const targets = new Map<number, Uint8Array | undefined>([[1, big], [2, short], [3, undefined], [4, tiny]]);
    sink.targetFor = (_peer, h, length) => (targets.has(h.tag) ? targets.get(h.tag) : new Uint8Array(length));
    const p1 = pattern(big.byteLength, 1);
    const p2 = pattern(300_000, 2); // longer than its target: truncated
    const p3 = pattern(50_000, 3); // discarded entirely
    const p4 = pattern(40, 4); // small and truncated
    await Promise.all([send(ab, p1, 1), send(ab, p2, 2), send(ab, p3, 3), send(ab, p4, 4), send(ab, pattern(7, 5), 5)]);
    await sink.until(() => sink.frames.length === 5);
    const [f1, f2, f3, f4, f5] = sink.frames;
    expect(f1.target === big).toBe(true);
    expect(same(big, p1)).toBe(true);
    expect(f2.target === short).toBe(true);
    expect(same(short, p2.subarray(0, short.byteLength))).toBe(true);
    expect(f3.target).toBeUndefined();
    expect(f3.header.tag).toBe(3);
    expect(f4.target === tiny).toBe(true);
    expect([...tiny]).toEqual([...p4.subarray(0, 5)]);
    expect(f5.header.tag).toBe(5);
    expect(f5.target).toEqual(pattern(7, 5));
    expect(sink.violations).toEqual([]);
  });

  it('keeps 1,000 small frames in order', async () => {
    const { transports, sinks } = await makeWorld(2);
    const ab = await transports[0].connect(1);
    const sent: Promise<void>[] = [];
    for (let i = 0; i < 1000; i++) sent.push(send(ab, pattern(i % 200, i), i % 7, i));
    await Promise.all(sent);
    await sinks[1].until(() => sinks[1].frames.length === 1000);
    sinks[1].frames.forEach((f, i) => {
      expect(f.header.seq).toBe(i);
      expect(f.target).toEqual(pattern(i % 200, i));
    });
  });

  it('copies the header before send returns and completes each send once, in order', async () => {
    const { transports, sinks } = await makeWorld(2);
    const ab = await transports[0].connect(1);
    const order: number[] = [];
    const h = new Uint8Array(48);
    for (let i = 0; i < 50; i++) {
      h.set(header(i % 2 === 0 ? 4 : 40_000, 1, i));
      ab.send(h, pattern(i % 2 === 0 ? 4 : 40_000, i), () => order.push(i));
      h.fill(0); // reused at once, as the core does
    }
    await sinks[1].until(() => sinks[1].frames.length === 50);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(sinks[1].frames.map((f) => f.header.seq)).toEqual([...Array(50).keys()]);
    expect(order).toEqual([...Array(50).keys()]);
  });

  it('rejects a header that does not announce the payload length through done, without sending', async () => {
    const { transports, sinks } = await makeWorld(2);
    const ab = await transports[0].connect(1);
    const r = await settle(
      new Promise<void>((resolve, reject) => ab.send(header(10), pattern(11), (e) => (e ? reject(e) : resolve()))),
    );
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatchObject({ name: 'VmcommError', code: 'INVALID_ARGUMENT' });
    await send(ab, pattern(3), 9);
    await sinks[1].until(() => sinks[1].frames.length === 1);
    expect(sinks[1].frames[0].header.tag).toBe(9);
  });

  it('serves three ranks over three connections', async () => {
    const { transports, sinks } = await makeWorld(3);
    const channels = await Promise.all(
      transports.flatMap((t, me) => [0, 1, 2].filter((p) => p !== me).map(async (p) => [me, p, await t.connect(p)] as const)),
    );
    await Promise.all(channels.map(([me, p, ch]) => send(ch, pattern(16, me * 10 + p), me)));
    for (const [rank, sink] of sinks.entries()) {
      await sink.until(() => sink.frames.length === 2);
      for (const f of sink.frames) expect(f.target).toEqual(pattern(16, f.peer * 10 + rank));
    }
  });
});

describe('who dials', () => {
  it('accepts a peer that connects before addPeers, and connect() returns that channel', async () => {
    const { transports, sinks } = await makeWorld(2, { addPeers: false });
    const [a, b] = transports;
    b.addPeers([0]);
    const ba = await b.connect(0);
    await send(ba, pattern(9, 1), 3);
    await sinks[0].until(() => sinks[0].frames.length === 1);
    expect(sinks[0].frames[0].peer).toBe(1);
    a.addPeers([1]);
    const ab = await a.connect(1);
    expect(socketOf(ab).remotePort).toBe(socketOf(ba).localPort);
    await send(ab, pattern(9, 2), 4);
    await sinks[1].until(() => sinks[1].frames.length === 1);
    expect(sinks[1].frames[0].target).toEqual(pattern(9, 2));
  });

  it('keeps exactly one connection when both ranks dial at once (20 fresh pairs)', async () => {
    for (let i = 0; i < 20; i++) {
      const { transports, sinks } = await makeWorld(2);
      const [a, b] = transports;
      // Alternate who calls first within the tick.
      const [ab, ba] = i % 2 === 0 ? await Promise.all([a.connect(1), b.connect(0)]) : (await Promise.all([b.connect(0), a.connect(1)])).reverse();
      expect(socketOf(ab).localPort).toBe(socketOf(ba).remotePort);
      expect(socketOf(ab).remotePort).toBe(socketOf(ba).localPort);
      expect(await a.connect(1)).toBe(ab);
      expect(await b.connect(0)).toBe(ba);
      await Promise.all([send(ab, pattern(32, i), 1), send(ba, pattern(32, -i), 2)]);
      await sinks[1].until(() => sinks[1].frames.length === 1);
      await sinks[0].until(() => sinks[0].frames.length === 1);
      expect(sinks[1].frames[0].target).toEqual(pattern(32, i));
      expect(sinks[0].frames[0].target).toEqual(pattern(32, -i));
      await Promise.all(transports.map((t) => t.stop()));
      expect(sinks[0].losses).toEqual([]);
      expect(sinks[1].losses).toEqual([]);
    }
  });

  it('resolves every connect() when the peer is mid-dial in either direction', async () => {
    // The higher rank dials first and the lower rank dials while that handshake is in flight.
    for (let i = 0; i < 10; i++) {
      const { transports, sinks } = await makeWorld(2);
      const [a, b] = transports;
      const fromB = b.connect(0);
      await new Promise<void>((resolve) => (i % 2 === 0 ? setImmediate(resolve) : process.nextTick(resolve)));
      const [ab, ba] = await Promise.all([a.connect(1), fromB]);
      expect(socketOf(ab).localPort).toBe(socketOf(ba).remotePort);
      await send(ba, pattern(4, i));
      await sinks[0].until(() => sinks[0].frames.length === 1);
    }
  });

  it('lower rank dialing, higher rank dials in: the higher rank gets LOSE and uses the lower rank\'s dial', async () => {
    const { transports, sinks, loggers } = await makeWorld(2);
    const [a, b] = transports;
    const { port: bPort } = (await b.start())!;
    const held = await gatedProxy(bPort as number);
    a.probe(cardOf(1, { host: '127.0.0.1', port: held.port }));
    const fromA = a.connect(1); // frozen in the relay
    await waitFor(() => held.accepted() === 1);
    const fromB = b.connect(0); // reaches rank 0 while its own dial is under way
    await waitFor(() => loggers[0].debugs.some((d) => /answered LOSE/.test(d)));
    held.open();
    const [ab, ba] = await Promise.all([fromA, fromB]);
    expect(socketOf(ab).remotePort).toBe(held.port); // rank 0's dial survived
    expect(await b.connect(0)).toBe(ba);
    await Promise.all([send(ab, pattern(6, 1)), send(ba, pattern(6, 2))]);
    await sinks[1].until(() => sinks[1].frames.length === 1);
    await sinks[0].until(() => sinks[0].frames.length === 1);
    expect(sinks[1].frames[0].target).toEqual(pattern(6, 1));
    expect(sinks[0].frames[0].target).toEqual(pattern(6, 2));
    await Promise.all(transports.map((t) => t.stop()));
    await held.close();
    expect([...sinks[0].losses, ...sinks[1].losses]).toEqual([]);
  });

  it('higher rank dialing, lower rank dials in: the higher rank accepts and drops its own dial', async () => {
    const { transports, sinks, loggers } = await makeWorld(2);
    const [a, b] = transports;
    const { port: aPort } = (await a.start())!;
    const { port: bPort } = (await b.start())!;
    const held = await gatedProxy(aPort as number);
    b.probe(cardOf(0, { host: '127.0.0.1', port: held.port }));
    const fromB = b.connect(0); // frozen in the relay
    await waitFor(() => held.accepted() === 1);
    const ab = await a.connect(1); // rank 1 accepts although it is dialing
    const ba = await fromB; // and its connect() resolves with rank 0's connection
    expect(socketOf(ba).localPort).toBe(bPort);
    expect(socketOf(ab).remotePort).toBe(bPort);
    held.open(); // rank 1's late dial now reaches rank 0, which already has its channel
    await waitFor(() => loggers[0].debugs.some((d) => /answered LOSE/.test(d)));
    expect(await b.connect(0)).toBe(ba);
    await Promise.all([send(ab, pattern(6, 3)), send(ba, pattern(6, 4))]);
    await sinks[1].until(() => sinks[1].frames.length === 1);
    await sinks[0].until(() => sinks[0].frames.length === 1);
    expect(sinks[0].frames[0].target).toEqual(pattern(6, 4));
    await Promise.all(transports.map((t) => t.stop()));
    await held.close();
    expect([...sinks[0].losses, ...sinks[1].losses]).toEqual([]);
  });

  it('rejects connect() to a rank it does not serve', async () => {
    const { transports } = await makeWorld(3, { addPeers: false });
    transports[0].addPeers([1]);
    for (const peer of [0, 2, 3, -1, 1.5]) {
      const r = await settle(transports[0].connect(peer));
      expect(!r.ok && r.error).toMatchObject({ name: 'VmcommError', code: 'INVALID_ARGUMENT' });
    }
  });

  it('fails connect() with PEER_LOST when nobody listens, and tries again on the next call', async () => {
    const { transports, cards } = await makeWorld(2);
    const [a, b] = transports;
    await b.stop();
    const first = await settle(a.connect(1));
    expect(!first.ok && first.error).toMatchObject({ name: 'VmcommError', code: 'PEER_LOST' });
    const second = a.connect(1);
    expect(await settle(second)).toMatchObject({ ok: false });
    expect(cards.length).toBe(2);
  });
});

describe('authentication', () => {
  it('refuses a rank without the secret: the dialer gets AUTH, the listener logs and carries on', async () => {
    const { transports, sinks, loggers, cards, jobId, secret } = await makeWorld(2);
    const [a] = transports;
    const wrong = makeTransport(1, 2, { secret: Buffer.alloc(32, 1), jobId });
    await wrong.transport.start();
    wrong.transport.probe(cards[0]);
    wrong.transport.addPeers([0]);
    const r = await settle(wrong.transport.connect(0));
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatchObject({ name: 'VmcommError', code: 'AUTH' });
    expect(loggers[0].warnings.some((w) => /could not prove the job secret/.test(w))).toBe(true);
    expect(sinks[0].losses).toEqual([]);
    // The genuine rank 1 still gets through, both ways.
    const ba = await transports[1].connect(0);
    await send(ba, pattern(8, 8));
    await sinks[0].until(() => sinks[0].frames.length === 1);
    const ab = await a.connect(1);
    await send(ab, pattern(8, 9));
    await sinks[1].until(() => sinks[1].frames.length === 1);
    expect(secret.byteLength).toBe(32);
  });

  it('refuses another job and a rank outside the world', async () => {
    const { sinks, loggers, cards, secret, jobId } = await makeWorld(2);
    const otherJob = makeTransport(1, 2, { secret, jobId: `${jobId}-other` });
    const outside = makeTransport(5, 6, { secret, jobId });
    for (const { transport } of [otherJob, outside]) {
      await transport.start();
      transport.probe(cards[0]);
      transport.addPeers([0]);
      const r = await settle(transport.connect(0));
      expect(!r.ok && r.error).toMatchObject({ name: 'VmcommError', code: 'AUTH' });
    }
    expect(loggers[0].warnings.filter((w) => /refused/.test(w)).length).toBe(2);
    expect(sinks[0].losses).toEqual([]);
  });

  it('rejects a listener that cannot prove the secret with AUTH', async () => {
    // An impostor listens where rank 0's card says rank 0 is, with the wrong secret.
    const { cards, secret, jobId } = await makeWorld(2, { addPeers: false });
    const impostor = makeTransport(0, 2, { secret: Buffer.alloc(32, 2), jobId });
    const fields = await impostor.transport.start();
    const dialer = makeTransport(1, 2, { secret, jobId });
    await dialer.transport.start();
    dialer.transport.probe(cardOf(0, fields));
    dialer.transport.addPeers([0]);
    const r = await settle(dialer.transport.connect(0));
    expect(!r.ok && r.error).toMatchObject({ name: 'VmcommError', code: 'AUTH' });
    expect(impostor.sink.losses).toEqual([]);
    expect(cards.length).toBe(2);
  });

  it('drops junk and silent clients without disturbing the peers', async () => {
    const { transports, sinks, loggers, cards } = await makeWorld(2, { init: { handshakeTimeoutMs: 300 } });
    const { port } = cards[0].backends.tcp as { port: number };
    const junk = net.connect({ host: '127.0.0.1', port });
    junk.on('error', () => undefined);
    junk.resume(); // read the refusal, so the client sees the listener's end
    junk.write(Buffer.alloc(4096, 0xff));
    const silent = net.connect({ host: '127.0.0.1', port });
    silent.on('error', () => undefined);
    silent.resume();
    await Promise.all([junk, silent].map((s) => new Promise((resolve) => s.on('close', resolve))));
    expect(loggers[0].warnings.some((w) => /refused/.test(w))).toBe(true);
    expect(loggers[0].warnings.some((w) => /did not authenticate/.test(w))).toBe(true);
    const ab = await transports[0].connect(1);
    await send(ab, pattern(5));
    await sinks[1].until(() => sinks[1].frames.length === 1);
    expect(sinks[0].losses).toEqual([]);
  });
});

describe('failures and closing', () => {
  it('reports lost exactly once when the peer vanishes without a goodbye', async () => {
    const { transports, sinks } = await makeWorld(2);
    const ab = await transports[0].connect(1);
    await send(ab, pattern(4));
    await sinks[1].until(() => sinks[1].frames.length === 1);
    const ba = await transports[1].connect(0);
    socketOf(ba).destroy();
    await sinks[0].until(() => sinks[0].losses.length === 1);
    expect(sinks[0].losses[0].peer).toBe(1);
    expect(sinks[0].losses[0].error).toMatchObject({ name: 'VmcommError', code: 'PEER_LOST' });
    // Sends after the loss fail through done, never by throwing.
    const r = await settle(send(ab, pattern(4)));
    expect(!r.ok && r.error).toMatchObject({ name: 'VmcommError', code: 'PEER_LOST' });
    await transports[0].stop();
    expect(sinks[0].losses.length).toBe(1);
  });

  it('reports a reset as lost, once, and fails the sends still pending', async () => {
    const { transports, sinks } = await makeWorld(2);
    const ab = await transports[0].connect(1);
    const ba = await transports[1].connect(0);
    sinks[1].targetFor = () => undefined;
    // Far more than the socket buffers hold, so some sends are still pending at the reset.
    const pending = Array.from({ length: 64 }, () => settle(send(ab, new Uint8Array(1024 * 1024))));
    socketOf(ba).resetAndDestroy();
    const outcomes = await Promise.all(pending);
    await sinks[0].until(() => sinks[0].losses.length === 1);
    expect(outcomes.some((o) => !o.ok)).toBe(true);
    for (const o of outcomes) if (!o.ok) expect(o.error).toMatchObject({ name: 'VmcommError', code: 'PEER_LOST' });
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(sinks[0].losses.length).toBe(1);
  });

  it('reports a peer that authenticates and then drops the connection', async () => {
    const { sinks, cards, secret, jobId } = await makeWorld(2);
    const { port } = cards[0].backends.tcp as { port: number };
    await new Promise<void>((resolve, reject) => {
      new Dial(
        { host: '127.0.0.1', port, rank: 1, peer: 0, secret, jobHash: jobHash(jobId), handshakeTimeoutMs: 10_000, pool: new Uint8Array(1024) },
        {
          accepted: (socket) => {
            socket.write(Buffer.concat([header(3), Buffer.from([1, 2, 3])]));
            socket.end(() => resolve());
          },
          yielded: () => reject(new Error('unexpected LOSE')),
          failed: reject,
        },
      );
    });
    await sinks[0].until(() => sinks[0].losses.length === 1);
    expect(sinks[0].frames.map((f) => [...f.target!])).toEqual([[1, 2, 3]]);
    expect(sinks[0].losses[0].error).toMatchObject({ name: 'VmcommError', code: 'PEER_LOST' });
  });

  it('closes gracefully: queued frames arrive, the peer reports no loss', async () => {
    const { transports, sinks } = await makeWorld(2);
    const ab = await transports[0].connect(1);
    const sent = Array.from({ length: 20 }, (_, i) => send(ab, pattern(i * 1000, i), 0, i));
    await ab.close();
    await Promise.all(sent);
    await sinks[1].until(() => sinks[1].frames.length === 20);
    expect(sinks[1].losses).toEqual([]);
    expect(sinks[0].losses).toEqual([]);
    const r = await settle(send(ab, pattern(1)));
    expect(!r.ok && r.error).toMatchObject({ name: 'VmcommError' });
    // The other side sees the channel closed too: its sends fail, and it still reports no loss.
    const ba = await transports[1].connect(0);
    const r2 = await settle(send(ba, pattern(1)));
    expect(!r2.ok && r2.error).toMatchObject({ name: 'VmcommError', code: 'PEER_LOST' });
    await ba.close();
    await Promise.all(transports.map((t) => t.stop()));
    expect(sinks[1].losses).toEqual([]);
    expect(sinks[0].losses).toEqual([]);
  });

  it('stops both ends at once without any loss; stop is idempotent', async () => {
    const { transports, sinks } = await makeWorld(3);
    await Promise.all([transports[0].connect(1), transports[0].connect(2), transports[2].connect(1)]);
    await Promise.all([...transports.map((t) => t.stop()), ...transports.map((t) => t.stop())]);
    await transports[0].stop();
    for (const s of sinks) expect(s.losses).toEqual([]);
    const r = await settle(transports[0].connect(1));
    expect(r.ok).toBe(true); // the same (now closed) channel
    const fresh = await settle(transports[1].connect(2));
    expect(fresh.ok).toBe(true);
  });

  it('closes the channel with CORRUPT on a frame the core rejects', async () => {
    const { transports, sinks } = await makeWorld(2);
    const ab = await transports[0].connect(1);
    const bad = header(2);
    bad[0] = 9; // wrong version
    ab.send(bad, new Uint8Array(2));
    await sinks[1].until(() => sinks[1].losses.length === 1);
    expect(sinks[1].losses[0].error).toMatchObject({ name: 'VmcommError', code: 'CORRUPT' });
    await sinks[0].until(() => sinks[0].losses.length === 1);
    expect(sinks[0].losses[0].error).toMatchObject({ name: 'VmcommError', code: 'PEER_LOST' });
    await transports[1].stop();
    expect(sinks[1].losses.length).toBe(1);
  });

  it('rejects pending connects when stopped', async () => {
    const { transports } = await makeWorld(2);
    const pending = transports[0].connect(1);
    await transports[0].stop();
    const r = await settle(pending);
    // Either the dial won the race (a channel, closed by stop) or it was cut short.
    if (!r.ok) expect(r.error).toMatchObject({ name: 'VmcommError', code: 'FINALIZED' });
    const after = await settle(transports[0].connect(1));
    if (!r.ok) expect(!after.ok && after.error).toMatchObject({ name: 'VmcommError', code: 'FINALIZED' });
  });
});

describe('TcpTransport', () => {
  it('is the class the factory builds', async () => {
    const { transports } = await makeWorld(1);
    expect(transports[0]).toBeInstanceOf(TcpTransport);
    expect(Object.prototype.toString.call(transports[0])).toBe('[object @vmcomm/tcp]');
    expect(new RecordingSink().frames).toEqual([]);
  });
});
