// The rendezvous server and client in one process: authentication, allgather, and the failure
// paths that keep init() from hanging (peer-lost, abort, a launcher that goes away).
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { BootstrapEvents } from '../../lib/bootstrap.js';
import type { CardValue } from '../../lib/backend.js';
import { VmcommError } from '../../lib/errors.js';
import { deriveJobId } from '../../lib/launch/environment.js';
import { RendezvousClient } from '../../lib/launch/rendezvous-client.js';
import {
  LineDecoder,
  MAX_HANDSHAKE_LINE_BYTES,
  RENDEZVOUS_PROTOCOL_VERSION,
  clientProof,
  newChallenge,
} from '../../lib/launch/rendezvous-protocol.js';
import { RendezvousServer, type RendezvousServerOptions } from '../../lib/launch/rendezvous-server.js';

interface Job {
  server: RendezvousServer;
  port: number;
  secret: Uint8Array;
  jobId: string;
  size: number;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startJob(size: number, extra: Partial<RendezvousServerOptions> = {}): Promise<Job> {
  const secret = randomBytes(32);
  const jobId = deriveJobId(secret);
  const server = new RendezvousServer({ size, jobId, secret, ...extra });
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => server.close());
  return { server, port, secret, jobId, size };
}

async function join(job: Job, rank: number, overrides: { secret?: Uint8Array; size?: number; jobId?: string } = {}): Promise<RendezvousClient> {
  const client = await RendezvousClient.connect({
    host: '127.0.0.1',
    port: job.port,
    rank,
    size: overrides.size ?? job.size,
    jobId: overrides.jobId ?? job.jobId,
    secret: overrides.secret ?? job.secret,
    timeoutMs: 5_000,
  });
  cleanups.push(() => void client.abort(0, 'test cleanup').catch(() => undefined));
  return client;
}

/** Records a client's events; `next(kind)` resolves with the next one of that kind. */
function recorder(client: RendezvousClient): {
  events: { kind: string; args: unknown[] }[];
  next(kind: 'peerLost' | 'abort'): Promise<unknown[]>;
} {
  const events: { kind: string; args: unknown[] }[] = [];
  const waiters: { kind: string; resolve(args: unknown[]): void }[] = [];
  const push = (kind: string, args: unknown[]): void => {
    const waiter = waiters.findIndex((w) => w.kind === kind);
    if (waiter !== -1) waiters.splice(waiter, 1)[0].resolve(args);
    else events.push({ kind, args });
  };
  const handlers: BootstrapEvents = {
    peerLost: (...args) => push('peerLost', args),
    abort: (...args) => push('abort', args),
  };
  client.listen(handlers);
  return {
    events,
    next: (kind) => {
      const queued = events.findIndex((e) => e.kind === kind);
      if (queued !== -1) return Promise.resolve(events.splice(queued, 1)[0].args);
      return new Promise((resolve) => waiters.push({ kind, resolve }));
    },
  };
}

/** A raw member: does the handshake by hand, so a test can then misbehave or vanish. */
async function rawJoin(job: Job, rank: number): Promise<{ socket: Socket; lines: string[] }> {
  const socket = connect({ host: '127.0.0.1', port: job.port });
  cleanups.push(() => void socket.destroy());
  const decoder = new LineDecoder(MAX_HANDSHAKE_LINE_BYTES * 1024);
  const lines: string[] = [];
  await new Promise<void>((resolve, reject) => {
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      for (const line of decoder.push(chunk)) {
        const message = JSON.parse(line) as { type: string; challenge?: string };
        if (message.type === 'hello') {
          socket.write(
            JSON.stringify({
              type: 'auth',
              protocol: RENDEZVOUS_PROTOCOL_VERSION,
              rank,
              size: job.size,
              jobId: job.jobId,
              proof: clientProof(job.secret, message.challenge ?? '', rank, job.jobId),
              challenge: newChallenge(),
            }) + '\n',
          );
        } else if (message.type === 'welcome') {
          resolve();
        } else {
          lines.push(line);
        }
      }
    });
  });
  return { socket, lines };
}

function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) resolve();
    else socket.once('close', () => resolve());
  });
}

describe('rendezvous authentication', () => {
  it('admits ranks that hold the secret and reports the local address', async () => {
    const job = await startJob(2);
    const joined: number[] = [];
    job.server.on('joined', (rank) => joined.push(rank));
    const [a, b] = await Promise.all([join(job, 0), join(job, 1)]);
    expect(a.address).toBe('127.0.0.1');
    expect([a.rank, b.rank, a.size, a.jobId]).toEqual([0, 1, 2, job.jobId]);
    expect(joined.sort()).toEqual([0, 1]);
    expect(job.server.stateOf(0)).toBe('joined');
  });

  it('refuses a client with the wrong secret (AUTH) and keeps serving', async () => {
    const job = await startJob(1);
    const refused: string[] = [];
    job.server.on('refused', (_remote, code) => refused.push(code));
    const error = await join(job, 0, { secret: randomBytes(32) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VmcommError);
    expect(error).toMatchObject({ name: 'VmcommError', code: 'AUTH' });
    expect((error as Error).message).toMatch(/secret/);
    expect(refused).toEqual(['AUTH']);
    // The rank was not taken by the failed attempt, and the server still answers.
    const good = await join(job, 0);
    expect(await good.allgather('one', 'x')).toEqual(['x']);
  });

  it('refuses a client whose job id differs, even with the right secret', async () => {
    const job = await startJob(1);
    await expect(join(job, 0, { jobId: 'another-job' })).rejects.toMatchObject({ code: 'AUTH', message: expect.stringMatching(/job/) });
  });

  it('refuses a duplicate rank, a rank out of range and a wrong size (INVALID_ARGUMENT)', async () => {
    const job = await startJob(2);
    await join(job, 0);
    await expect(join(job, 0)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/already joined/) });
    await expect(join(job, 1, { size: 3 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/VMCOMM_SIZE=3/) });
    await expect(join(job, 2, { size: 3 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // Still serving: rank 1 can join.
    await join(job, 1);
  });

  it('rejects a server that cannot prove the secret (mutual authentication)', async () => {
    const job = await startJob(1);
    // A fake rendezvous without the secret: it accepts any proof and answers with a made-up one.
    const { createServer } = await import('node:net');
    const fake = createServer((socket) => {
      socket.write(JSON.stringify({ type: 'hello', protocol: RENDEZVOUS_PROTOCOL_VERSION, challenge: newChallenge() }) + '\n');
      socket.once('data', () => socket.write(JSON.stringify({ type: 'welcome', proof: 'ab'.repeat(32) }) + '\n'));
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => fake.close(() => resolve())));
    const port = (fake.address() as { port: number }).port;
    await expect(
      RendezvousClient.connect({ host: '127.0.0.1', port, rank: 0, size: 1, jobId: job.jobId, secret: job.secret, timeoutMs: 5_000 }),
    ).rejects.toMatchObject({ code: 'AUTH', message: expect.stringMatching(/could not prove/) });
  });

  it('closes a connection that sends an over-long line before authenticating', async () => {
    const job = await startJob(1);
    const socket = connect({ host: '127.0.0.1', port: job.port });
    cleanups.push(() => void socket.destroy());
    socket.on('error', () => undefined);
    socket.resume(); // read (and drop) the hello, so the server's close is seen
    socket.write('x'.repeat(MAX_HANDSHAKE_LINE_BYTES * 4));
    await closed(socket);
  });

  it('validates connect options with INVALID_ARGUMENT', async () => {
    const base = { host: '127.0.0.1', port: 1, rank: 0, size: 1, jobId: 'j', secret: randomBytes(32) };
    await expect(RendezvousClient.connect({ ...base, rank: 1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/rank/) });
    await expect(RendezvousClient.connect({ ...base, secret: randomBytes(4) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/secret/) });
    await expect(RendezvousClient.connect({ ...base, port: 70000 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('retries a refused connection until the rendezvous listens, then times out with TIMEOUT', async () => {
    const secret = randomBytes(32);
    // A port nobody listens on: find one by binding and closing.
    const { createServer } = await import('node:net');
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    await expect(
      RendezvousClient.connect({ host: '127.0.0.1', port, rank: 0, size: 1, jobId: deriveJobId(secret), secret, timeoutMs: 300 }),
    ).rejects.toMatchObject({ code: 'TIMEOUT', message: expect.stringMatching(/ECONNREFUSED/) });
  });
});

describe('rendezvous allgather', () => {
  it('gathers the values of 4 ranks, indexed by rank, whatever the order of arrival', async () => {
    const job = await startJob(4);
    const clients = await Promise.all([0, 1, 2, 3].map((rank) => join(job, rank)));
    const results: Promise<CardValue[]>[] = [];
    for (const rank of [2, 0, 3, 1]) {
      results.push(clients[rank].allgather('cards', { rank, nested: [rank, `r${rank}`, null, true] }));
    }
    const expected = [0, 1, 2, 3].map((rank) => ({ rank, nested: [rank, `r${rank}`, null, true] }));
    for (const values of await Promise.all(results)) expect(values).toEqual(expected);
    // Rounds are independent and may overlap.
    const [x, y] = await Promise.all([
      Promise.all(clients.map((c) => c.allgather('x', c.rank * 10))),
      Promise.all(clients.map((c) => c.allgather('y', String(c.rank)))),
    ]);
    expect(x[3]).toEqual([0, 10, 20, 30]);
    expect(y[0]).toEqual(['0', '1', '2', '3']);
  });

  it('rejects a round name used twice', async () => {
    const job = await startJob(1);
    const client = await join(job, 0);
    await client.allgather('once', 1);
    await expect(client.allgather('once', 2)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('rejects a value too large, or not JSON, before sending it', async () => {
    const job = await startJob(1);
    const client = await join(job, 0);
    await expect(client.allgather('huge', 'x'.repeat(17 * 1024 * 1024))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/limit/) });
    // Not JSON: refused locally too, never sent (the server would have to drop the rank).
    await expect(client.allgather('bigint', { n: 1n } as unknown as CardValue)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/not JSON/) });
    await expect(client.allgather('undef', undefined as unknown as CardValue)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // The connection is intact.
    expect(await client.allgather('small', 1)).toEqual([1]);
  });
});

describe('rendezvous failures', () => {
  it('fans out peer-lost when a rank disconnects without finalize, and fails the rounds waiting for it', async () => {
    const job = await startJob(4);
    const clients = await Promise.all([0, 1, 2].map((rank) => join(job, rank)));
    const raw = await rawJoin(job, 3);
    const recorders = clients.map(recorder);
    const lost: [number, string][] = [];
    job.server.on('lost', (rank, reason) => lost.push([rank, reason]));
    // Ranks 0-2 wait in a round rank 3 never joins.
    const pending = clients.map((c) => c.allgather('init', c.rank).catch((e: unknown) => e));
    raw.socket.destroy();
    for (const r of recorders) {
      const [rank, reason] = await r.next('peerLost');
      expect(rank).toBe(3);
      expect(reason).toMatch(/rank 3/);
    }
    for (const error of await Promise.all(pending)) {
      expect(error).toMatchObject({ name: 'VmcommError', code: 'PEER_LOST', peer: 3 });
    }
    expect(lost.map(([rank]) => rank)).toEqual([3]);
    expect(job.server.stateOf(3)).toBe('lost');
    // A new round can never complete either: it fails at once instead of hanging.
    await expect(clients[0].allgather('later', 0)).rejects.toMatchObject({ code: 'PEER_LOST' });
  });

  it("uses the launcher's reason when markLost comes within lostGraceMs of the disconnect", async () => {
    const job = await startJob(2, { lostGraceMs: 60_000 });
    const survivor = await join(job, 0);
    const events = recorder(survivor);
    const raw = await rawJoin(job, 1);
    job.server.on('disconnected', (rank) => {
      if (rank === 1) job.server.markLost(1, 'rank 1 (pid 42) was killed by SIGKILL before finalize');
    });
    raw.socket.destroy();
    expect(await events.next('peerLost')).toEqual([1, 'rank 1 (pid 42) was killed by SIGKILL before finalize']);
  });

  it('markLost works for a rank that never joined: others are told, and it cannot join later', async () => {
    const job = await startJob(2);
    const a = await join(job, 0);
    const events = recorder(a);
    const pending = a.allgather('init', 0);
    expect(job.server.markLost(1, 'rank 1 (pid 7) exited with code 2 before finalize')).toBe(true);
    expect(job.server.markLost(1, 'again')).toBe(false);
    expect(await events.next('peerLost')).toEqual([1, 'rank 1 (pid 7) exited with code 2 before finalize']);
    await expect(pending).rejects.toMatchObject({ code: 'PEER_LOST', peer: 1 });
    await expect(join(job, 1)).rejects.toMatchObject({ code: 'PEER_LOST' });
  });

  it('tells a late joiner about ranks lost before it joined', async () => {
    const job = await startJob(3);
    job.server.markLost(2, 'gone early');
    const late = await join(job, 0);
    const events = recorder(late);
    expect(await events.next('peerLost')).toEqual([2, 'gone early']);
  });

  it('fans out abort to the other ranks and fails pending rounds with ABORTED', async () => {
    const job = await startJob(3);
    const clients = await Promise.all([0, 1, 2].map((rank) => join(job, rank)));
    const recorders = clients.map(recorder);
    const aborts: unknown[][] = [];
    job.server.on('abort', (...args) => aborts.push(args));
    const pending = [clients[0].allgather('r', 0), clients[2].allgather('r', 2)].map((p) => p.catch((e: unknown) => e));
    await clients[1].abort(7, 'rank 1 gave up');
    for (const rank of [0, 2]) expect(await recorders[rank].next('abort')).toEqual([7, 1, 'rank 1 gave up']);
    for (const error of await Promise.all(pending)) expect(error).toMatchObject({ code: 'ABORTED', message: expect.stringMatching(/code 7/) });
    expect(aborts).toEqual([[7, 1, 'rank 1 gave up']]);
    expect(recorders[1].events).toEqual([]);
  });

  it('a rank that finalized and then disconnects is not lost', async () => {
    const job = await startJob(3);
    const clients = await Promise.all([0, 1, 2].map((rank) => join(job, rank)));
    const recorders = clients.map(recorder);
    const lost: number[] = [];
    const finalized: number[] = [];
    let allFinalized = 0;
    job.server.on('lost', (rank) => lost.push(rank));
    job.server.on('finalized', (rank) => finalized.push(rank));
    job.server.on('all-finalized', () => (allFinalized += 1));
    const disconnected = new Promise<void>((resolve) => {
      let n = 0;
      job.server.on('disconnected', () => {
        n += 1;
        if (n === 3) resolve();
      });
    });
    await Promise.all(clients.map((c) => c.allgather('last', c.rank)));
    await Promise.all(clients.map((c) => c.finalize()));
    await disconnected;
    expect(finalized.sort()).toEqual([0, 1, 2]);
    expect(allFinalized).toBe(1);
    expect(lost).toEqual([]);
    for (const r of recorders) expect(r.events).toEqual([]);
    expect([0, 1, 2].map((rank) => job.server.stateOf(rank))).toEqual(['finalized', 'finalized', 'finalized']);
    // Finalize is idempotent, and later requests say why they cannot run.
    await clients[0].finalize();
    await expect(clients[0].allgather('after', 0)).rejects.toMatchObject({ code: 'FINALIZED' });
  });

  it('fails a round waiting for a rank that finalized without contributing', async () => {
    const job = await startJob(2);
    const [a, b] = await Promise.all([join(job, 0), join(job, 1)]);
    const pending = a.allgather('orphan', 0);
    await b.finalize();
    await expect(pending).rejects.toMatchObject({ code: 'PEER_LOST', peer: 1, message: expect.stringMatching(/finalized/) });
  });

  it('reports a lost launcher as abort(1, -1) and rejects pending rounds with PEER_LOST', async () => {
    const job = await startJob(2);
    const a = await join(job, 0);
    const events = recorder(a);
    const pending = a.allgather('never', 0);
    await job.server.close();
    const [code, fromRank, reason] = await events.next('abort');
    expect([code, fromRank]).toEqual([1, -1]);
    expect(reason).toMatch(/lost the connection to the launcher/);
    await expect(pending).rejects.toMatchObject({ code: 'PEER_LOST', message: expect.stringMatching(/launcher/) });
    await expect(a.finalize()).rejects.toMatchObject({ code: 'PEER_LOST' });
  });

  it('closes a member that sends garbage, and reports it lost with the reason', async () => {
    const job = await startJob(2);
    const a = await join(job, 0);
    const events = recorder(a);
    const raw = await rawJoin(job, 1);
    raw.socket.on('error', () => undefined);
    raw.socket.write('{"type":"allgather","round":""}\n');
    const [rank, reason] = await events.next('peerLost');
    expect(rank).toBe(1);
    expect(reason).toMatch(/invalid rendezvous message/);
    await closed(raw.socket);
  });
});
