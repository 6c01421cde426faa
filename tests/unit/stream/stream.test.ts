// vmcomm/stream between two ranks of an in-process job (memory transport): the Duplex's semantics,
// fast. The same behaviours across real processes and transports: tests/integration/stream.test.ts.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { openStream, STREAM_TAG_UB, type VmcommStream } from 'vmcomm/stream';
import { ANY_SOURCE, ANY_TAG } from '../../../lib/constants.js';
import type { Communicator } from '../../../lib/communicator.js';
import { createLocalJob, reportLocalPeerLost } from '../../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../../lib/start-world.js';
import { memory } from '../../helpers/memory-transport.js';
import { finalizeAfterEach, sleep, within } from '../../helpers/settle.js';

const finalizeLater = finalizeAfterEach();

async function job(n = 2, finalizeAfter = true) {
  const j = createLocalJob(n);
  const comms = await Promise.all(j.map((b) => initWithBootstrap(b, { backends: [memory()], only: ['memory'] })));
  if (finalizeAfter) finalizeLater(comms);
  return { job: j, comms };
}

/** Everything `s` delivers until 'end'. */
function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (c: Buffer) => parts.push(c));
  return once(s, 'end').then(() => Buffer.concat(parts));
}

/** Resolves on 'close' (unlike `once`, an 'error' before it does not reject). */
function closed(s: Duplex): Promise<void> {
  return s.closed ? Promise.resolve() : new Promise((resolve) => s.once('close', () => resolve()));
}

/** The error `s` emits (a listener is attached at once, so nothing is unhandled). */
function errorOf(s: Duplex): Promise<Error & { code?: string }> {
  return new Promise((resolve) => s.once('error', resolve));
}

/** Streams left in the side context: none may leave a message behind. */
function leftovers(comms: Communicator[]): unknown[] {
  return comms.map((c) => c.sideContext().iprobe(ANY_SOURCE, ANY_TAG)).filter((x) => x !== undefined);
}

async function waitFor(cond: () => boolean, ms = 2000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not reached');
    await sleep(2);
  }
}

describe('vmcomm/stream: arguments', () => {
  it('a bad comm, peer, tag or option is INVALID_ARGUMENT naming it, thrown by openStream', async () => {
    const { comms } = await job(3);
    const c = comms[0] as never;
    const bad: [() => unknown, RegExp][] = [
      [() => openStream({} as never, 1), /^comm must be/],
      [() => openStream(undefined as never, 1), /^comm must be/],
      [() => openStream(c, 3), /^peer must be a rank from 0 to 2/],
      [() => openStream(c, -1), /^peer must be/],
      [() => openStream(c, 1.5), /^peer must be/],
      [() => openStream(c, '1' as never), /^peer must be/],
      [() => openStream(c, 0), /^peer must be another rank/],
      [() => openStream(c, 1, { tag: -1 }), /^tag must be a whole number from 0 to/],
      [() => openStream(c, 1, { tag: STREAM_TAG_UB + 1 }), /^tag must be/],
      [() => openStream(c, 1, { tag: 'x' as never }), /^tag must be/],
      [() => openStream(c, 1, { chunkBytes: 0 }), /^chunkBytes must be/],
      [() => openStream(c, 1, { windowChunks: 1e9 }), /^windowChunks must be/],
      [() => openStream(c, 1, { highWaterMark: -1 }), /^highWaterMark must be/],
      [() => openStream(c, 1, { allowHalfOpen: 1 as never }), /^allowHalfOpen must be/],
      [() => openStream(c, 1, { tga: 1 } as never), /unknown openStream\(\) option "tga"/],
      [() => openStream(c, 1, null as never), /^options must be/],
    ];
    for (const [call, message] of bad) {
      let thrown: unknown;
      try {
        call();
      } catch (e) {
        thrown = e;
      }
      expect(thrown, String(message)).toMatchObject({ name: 'VmcommError', code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) });
    }
  });

  it('a (peer, tag) open on this rank cannot be opened twice; other tags and other peers can', async () => {
    const { comms } = await job(3);
    const a = openStream(comms[0], 1, { tag: 4 });
    expect(() => openStream(comms[0], 1, { tag: 4 })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('already open') }));
    const others = [openStream(comms[0], 1, { tag: 5 }), openStream(comms[0], 2, { tag: 4 })];
    for (const s of [a, ...others]) s.destroy();
  });

  it('after finalize: FINALIZED, synchronously', async () => {
    const { comms } = await job();
    await Promise.all(comms.map((c) => c.finalize()));
    expect(() => openStream(comms[0], 1)).toThrow(expect.objectContaining({ code: 'FINALIZED' }));
  });
});

describe('vmcomm/stream: data', () => {
  it('moves every byte both ways at once, through small chunks and a small window', async () => {
    const { comms } = await job();
    const opts = { tag: 1, chunkBytes: 1000, windowChunks: 2 };
    const [a, b] = [openStream(comms[0], 1, opts), openStream(comms[1], 0, opts)];
    const payload = (seed: number) => Array.from({ length: 60 }, (_, i) => randomBytes([1, 10, 999, 1000, 1001, 5000, 20_000][(i + seed) % 7]));
    const [pa, pb] = [payload(0), payload(3)];
    const got = [readAll(b), readAll(a)];
    for (const [s, parts] of [[a, pa], [b, pb]] as const) {
      void (async () => {
        for (const p of parts) if (!s.write(p)) await once(s, 'drain');
        s.end();
      })();
    }
    const [atB, atA] = await Promise.all(got);
    expect(atB.equals(Buffer.concat(pa))).toBe(true);
    expect(atA.equals(Buffer.concat(pb))).toBe(true);
    await Promise.all([once(a, 'close'), once(b, 'close')].map((p) => within(p, 2000)));
    expect(a.destroyed && b.destroyed).toBe(true);
    expect(a.bytesRead).toBe(atA.length);
    expect(b.bytesWritten).toBe(atA.length);
    expect(leftovers(comms)).toEqual([]);
  });

  it('half-close, each way: the side that ended still reads; the other still writes until it ends', async () => {
    const { comms } = await job();
    for (const first of [0, 1]) {
      const s = [openStream(comms[0], 1, { tag: 2 }), openStream(comms[1], 0, { tag: 2 })];
      const bothClosed = s.map(closed);
      const [ender, other] = [s[first], s[1 - first]];
      const ended = readAll(other);
      ender.end('question');
      expect((await ended).toString()).toBe('question');
      expect(ender.writableFinished || (await once(ender, 'finish'), true)).toBe(true);
      const answer = readAll(ender);
      other.write('answer, ');
      other.end('in two parts');
      expect((await answer).toString()).toBe('answer, in two parts');
      await Promise.all(bothClosed);
    }
    expect(leftovers(comms)).toEqual([]);
  });

  it('the stream connects once both ends opened: writes wait, `connecting` and `connect` say when', async () => {
    const { comms } = await job();
    const a = openStream(comms[0], 1, { tag: 3 });
    expect(a.connecting).toBe(true);
    a.write('early');
    await sleep(50);
    expect(a.connecting).toBe(true);
    const connected = once(a, 'connect');
    const b = openStream(comms[1], 0, { tag: 3 });
    await connected;
    expect(a.connecting).toBe(false);
    a.end();
    expect((await readAll(b)).toString()).toBe('early');
    b.end();
    a.resume();
    await once(a, 'close');
  });

  it('a paused reader stops the writer: write() returns false, no drain, memory bounded; then all arrives', async () => {
    const { comms } = await job();
    const chunkBytes = 1024;
    const windowChunks = 2;
    const opts = { tag: 9, chunkBytes, windowChunks, readableHighWaterMark: 4096, writableHighWaterMark: 8192 };
    const [w, r] = [openStream(comms[0], 1, opts), openStream(comms[1], 0, opts)];
    const sent: Buffer[] = [];
    let refused = 0;
    for (let i = 0; i < 1000 && refused === 0; i++) {
      const chunk = randomBytes(700);
      sent.push(chunk);
      if (!w.write(chunk)) refused = i + 1;
    }
    expect(refused).toBeGreaterThan(0);
    let drained = false;
    w.once('drain', () => (drained = true));
    await sleep(300);
    expect(drained).toBe(false);
    // The reader holds at most its high-water mark plus one window; the rest is in the writer's buffer.
    expect(r.readableLength).toBeLessThanOrEqual(4096 + windowChunks * chunkBytes);
    expect(w.bytesWritten - r.readableLength).toBeLessThanOrEqual(windowChunks * chunkBytes);
    expect(w.writableLength).toBeGreaterThanOrEqual(8192 - 700);
    const all = readAll(r);
    await within(once(w, 'drain'), 2000);
    expect(drained).toBe(true);
    w.end();
    expect((await all).equals(Buffer.concat(sent))).toBe(true);
    r.end();
    w.resume();
    await once(w, 'close');
  });

  it('streams with different tags run at once; the application’s own messages never meet them', async () => {
    const { comms } = await job();
    const app = comms[1].recvMessage(ANY_SOURCE, ANY_TAG); // posted before any stream traffic
    const tags = [5, 6];
    const ends = tags.map((tag) => [openStream(comms[0], 1, { tag, chunkBytes: 512 }), openStream(comms[1], 0, { tag, chunkBytes: 512 })]);
    const payloads = tags.map(() => randomBytes(20_000));
    const got = ends.map(([, b]) => readAll(b));
    ends.forEach(([a], i) => a.end(payloads[i]).resume());
    expect((await got[0]).equals(payloads[0])).toBe(true);
    expect((await got[1]).equals(payloads[1])).toBe(true);
    expect((await within(app, 50)).status).toBe('pending');
    await comms[0].send('app message', 1, 5);
    expect(await app).toEqual({ data: 'app message', source: 0, tag: 5 });
    for (const [a, b] of ends) {
      b.end();
      await once(a, 'close');
    }
    expect(leftovers(comms)).toEqual([]);
  });
});

describe('vmcomm/stream: reset, close and reopening', () => {
  it('destroy(err) reaches the peer as an ECONNRESET-like VmcommError carrying the reason', async () => {
    const { comms } = await job();
    const [a, b] = [openStream(comms[0], 1), openStream(comms[1], 0)];
    const bothClosed = [closed(a), closed(b)];
    const failed = errorOf(b);
    const own = errorOf(a); // destroy(err) emits it here too, as on any Node stream
    a.write('some data');
    await once(a, 'connect');
    a.destroy(new Error('boom'));
    expect((await own).message).toBe('boom');
    const err = await failed;
    expect(err).toMatchObject({ name: 'VmcommError', code: 'ABORTED', message: expect.stringMatching(/^ECONNRESET: rank 0 reset the stream \(tag 0\): boom/) });
    await Promise.all(bothClosed);
    await waitFor(() => leftovers(comms).length === 0);
  });

  it('destroy() closes this end: the peer reads what was sent, ends and closes by itself, without an error', async () => {
    const { comms } = await job();
    const [a, b] = [openStream(comms[0], 1), openStream(comms[1], 0)];
    const bClosed = closed(b);
    let bError: unknown;
    b.on('error', (e) => (bError = e));
    const got = readAll(b);
    a.write('last words');
    await once(a, 'connect');
    await new Promise<void>((resolve) => a.write('', () => resolve()));
    a.destroy();
    expect((await got).toString()).toBe('last words');
    await bClosed;
    expect(bError).toBeUndefined();
    expect(b.writableFinished).toBe(true);
    await waitFor(() => leftovers(comms).length === 0);
  });

  it('a write the peer can no longer read (it was destroyed) fails with EPIPE', async () => {
    const { comms } = await job();
    const [a, b] = [openStream(comms[0], 1), openStream(comms[1], 0)];
    const failed = errorOf(b);
    // a never reads: after its first window b has no credit left, so most of this stays unsent.
    b.write(Buffer.alloc(10 * 1024 * 1024, 1));
    await once(a, 'connect');
    await sleep(50);
    a.destroy();
    expect(await failed).toMatchObject({ code: 'ABORTED', message: expect.stringMatching(/^EPIPE/) });
    await waitFor(() => leftovers(comms).length === 0);
  });

  it('a (peer, tag) can be opened again right after close; each incarnation gets only its own bytes', async () => {
    const { comms } = await job();
    for (let i = 0; i < 12; i++) {
      const [a, b] = [openStream(comms[0], 1, { tag: 8, chunkBytes: 256, windowChunks: 1 }), openStream(comms[1], 0, { tag: 8, chunkBytes: 256, windowChunks: 1 })];
      const bothClosed = [closed(a), closed(b)];
      a.on('error', () => undefined);
      b.on('error', () => undefined);
      const got = readAll(b);
      got.catch(() => undefined); // rejects when b is reset
      a.write(Buffer.alloc(3000, i));
      switch (i % 3) {
        case 0: // a clean close both ways
          a.end();
          expect((await got).equals(Buffer.alloc(3000, i))).toBe(true);
          b.end();
          a.resume();
          break;
        case 1: // reset by the writer mid-stream: data in flight is absorbed
          a.destroy(new Error('again'));
          break;
        case 2: // reset by the reader, which has not read everything
          b.destroy(new Error('enough'));
          break;
      }
      await Promise.all(bothClosed);
    }
    await waitFor(() => leftovers(comms).length === 0);
  });
});

describe('vmcomm/stream: failures never hang', () => {
  it('a lost peer fails the stream with PEER_LOST', async () => {
    const { job: j, comms } = await job(3, false);
    const a = openStream(comms[0], 2);
    const failed = errorOf(a);
    a.write(randomBytes(100_000));
    reportLocalPeerLost(j, 2, 'killed');
    expect(await within(failed, 2000)).toMatchObject({ status: 'fulfilled', value: { code: 'PEER_LOST' } });
    await Promise.all(comms.slice(0, 2).map((c) => within(c.finalize(), 3000)));
  });

  it('a revoked communicator leaves its streams working: they are point-to-point, on the side context', async () => {
    const { comms } = await job();
    const [a, b] = [openStream(comms[0], 1), openStream(comms[1], 0)];
    await once(a, 'connect');
    // A collective that times out on one rank revokes the communicator's collectives everywhere.
    await expect(comms[0].barrier({ timeout: 20 })).rejects.toMatchObject({ code: 'TIMEOUT' });
    await expect(comms[0].allreduce(1, 'SUM')).rejects.toMatchObject({ code: 'REVOKED' });
    const payload = randomBytes(300_000);
    const got = readAll(b);
    a.resume();
    a.end(payload);
    b.end();
    const arrived = await within(got, 5000);
    expect(arrived.status === 'fulfilled' && arrived.value.equals(payload)).toBe(true);
    await Promise.all([closed(a), closed(b)]);
  });

  it('finalize fails a stream still open with FINALIZED', async () => {
    const { comms } = await job();
    const [a, b] = [openStream(comms[0], 1), openStream(comms[1], 0)];
    const failed = [errorOf(a), errorOf(b)];
    await Promise.all(comms.map((c) => c.finalize()));
    expect(await Promise.all(failed.map((p) => within(p, 2000)))).toMatchObject([{ value: { code: 'FINALIZED' } }, { value: { code: 'FINALIZED' } }]);
  });

  it('finalize does not fail a stream whose both directions are over, even with its end unread', async () => {
    const { comms } = await job();
    const [a, b] = [openStream(comms[0], 1, { allowHalfOpen: false }), openStream(comms[1], 0, { allowHalfOpen: false })];
    let errors = 0;
    for (const s of [a, b]) s.on('error', () => errors++);
    const got = readAll(b);
    a.end('one way');
    expect((await got).toString()).toBe('one way'); // b ends its side by itself; a never reads its end
    if (!a.writableFinished) await once(a, 'finish');
    await Promise.all(comms.map((c) => c.finalize()));
    await sleep(20);
    expect(errors).toBe(0);
  });

  it('setTimeout emits timeout after idleness and leaves the stream open (timeouts are the program’s)', async () => {
    const { comms } = await job();
    const [a, b] = [openStream(comms[0], 1), openStream(comms[1], 0)];
    let fired = 0;
    a.setTimeout(60, () => fired++);
    expect(a.timeout).toBe(60);
    await sleep(150);
    expect(fired).toBe(1);
    expect(a.destroyed).toBe(false);
    a.setTimeout(0);
    expect(a.timeout).toBeUndefined();
    a.end();
    b.end();
    b.resume();
    a.resume();
    await once(a, 'close');
  });
});

describe('vmcomm/stream: Node http over a stream', () => {
  it('serves two keep-alive requests (a GET with a body each way) over one stream', async () => {
    const { comms } = await job();
    const [client, serverSide] = [openStream(comms[0], 1, { tag: 80 }), openStream(comms[1], 0, { tag: 80 })];
    const server = http.createServer((req, res) => {
      const hash = createHash('sha256');
      req.on('data', (c) => hash.update(c));
      req.on('end', () => res.end(`${req.method} ${req.url} ${hash.digest('hex')}`));
    });
    server.emit('connection', serverSide);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let connections = 0;
    (agent as unknown as { createConnection: () => VmcommStream }).createConnection = () => (connections++, client);
    for (const [path, body] of [['/one', randomBytes(10)], ['/two', randomBytes(300_000)]] as const) {
      const req = http.request({ agent, path, method: 'GET', headers: { 'content-length': body.length } });
      req.end(body);
      const [res] = (await once(req, 'response')) as [http.IncomingMessage];
      expect(res.statusCode).toBe(200);
      expect((await readAll(res)).toString()).toBe(`GET ${path} ${createHash('sha256').update(body).digest('hex')}`);
      expect(req.reusedSocket).toBe(path === '/two');
    }
    expect(connections).toBe(1);
    const bothClosed = [closed(client), closed(serverSide)];
    agent.destroy();
    await Promise.all(bothClosed);
    expect(leftovers(comms)).toEqual([]);
  });

  it('an idle keep-alive connection the server closes (keepAliveTimeout) closes cleanly at the client; its agent lets it go', async () => {
    const { comms } = await job();
    const [client, serverSide] = [openStream(comms[0], 1, { tag: 81 }), openStream(comms[1], 0, { tag: 81 })];
    const server = http.createServer((_req, res) => res.end('ok'));
    server.keepAliveTimeout = 100;
    server.emit('connection', serverSide);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    (agent as unknown as { createConnection: () => VmcommStream }).createConnection = () => client;
    // The agent would close the idle socket itself on the server's hint (Keep-Alive: timeout=0): let the server do it.
    agent.keepSocketAlive = () => true;
    let clientError: unknown;
    client.on('error', (e) => (clientError = e));
    const req = http.get({ agent, path: '/' });
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    expect((await readAll(res)).toString()).toBe('ok');
    const idle = Date.now();
    await Promise.all([closed(client), closed(serverSide)]);
    expect(Date.now() - idle).toBeGreaterThanOrEqual(50); // the server's keepAliveTimeout, not at once
    expect(clientError).toBeUndefined();
    await waitFor(() => Object.keys(agent.freeSockets).length === 0);
    agent.destroy();
    expect(leftovers(comms)).toEqual([]);
  });
});
