// A peer that dies without a word (SIGKILL: its inbox stays OPEN, the kernel drops its lock) is found
// by the shm transport itself within 2 s — also by a rank that only waits to receive from it, and
// with no launcher to tell (these in-process worlds have none). A live, idle peer is never reported.
import { afterEach, describe, expect, it } from 'vitest';
import { ANY_SOURCE } from '../../../lib/constants.js';
import { isVmcommError } from '../../../lib/errors.js';
import { addon, finalizeAll, startJob, type ShmJob } from './helpers.js';

let job: ShmJob | undefined;
afterEach(async () => {
  if (job) await finalizeAll(job).catch(() => undefined);
  job = undefined;
});

describe.skipIf(addon === undefined)('shm peer liveness', () => {
  it('a receive from a peer whose inbox lock vanished fails with PEER_LOST within 2 s', async () => {
    job = await startJob(3);
    const [a, , c] = job.comms;
    // Every pair talks once, so rank 0 has a channel to rank 1 both ways.
    await Promise.all(job.comms.map((comm) => comm.allreduce(1, 'SUM')));
    const started = performance.now();
    const waiting = a.recv(1, 77).then(
      () => 'received',
      (e: unknown) => (isVmcommError(e, 'PEER_LOST') ? 'PEER_LOST' : String(e)),
    );
    // Rank 1 "dies": its lock goes, its inbox stays OPEN (what SIGKILL leaves).
    (job.transports[1] as unknown as { inboxFile: { release(): void } }).inboxFile.release();
    expect(await waiting).toBe('PEER_LOST');
    expect(performance.now() - started).toBeLessThan(2_000);
    // The others still talk.
    const [got] = await Promise.all([a.recv(2, 5), c.send('still here', 0, 5)]);
    expect(got).toBe('still here');
    // The survivors finalize without it.
    await Promise.all([a.finalize(), c.finalize()]);
    // What the dead rank's process would do at exit (this one lives on): its files go.
    job.transports[1].gone();
    job = undefined;
  });

  it('a loop of test() that never yields to the event loop learns of it too (no timer runs there)', async () => {
    job = await startJob(2);
    const [a] = job.comms;
    await Promise.all(job.comms.map((comm) => comm.barrier()));
    const request = a.irecv(1, 79);
    (job.transports[1] as unknown as { inboxFile: { release(): void } }).inboxFile.release();
    const until = performance.now() + 5_000;
    while (!request.test() && performance.now() < until);
    expect(request.state).toBe('rejected');
    expect(request.error).toMatchObject({ code: 'PEER_LOST', peer: 1 });
    await a.finalize();
    job.transports[1].gone();
    job = undefined;
  });

  it('a peer killed between claiming a slot of an inbox and filling it does not hide the rings announced after it', async () => {
    job = await startJob(3);
    const [a, b, c] = job.comms;
    // Rank 1 claims a slot in rank 0's inbox and "dies" before it fills it (its process lives on here,
    // so it is not reported: only the slot stalls).
    const links = (job.transports[1] as unknown as { links: Map<number, { inbox: { claim(): number } }> }).links;
    expect(links.get(0)!.inbox.claim()).toBeGreaterThanOrEqual(0);
    // Rank 2's first message to rank 0 announces its ring behind that claim: before rank 0 gave stalled
    // claims up, it never looked at that ring and this receive timed out.
    const [got] = await Promise.all([a.recv(2, 6, { timeout: 8_000 }), c.send('behind a dead claim', 0, 6)]);
    expect(got).toBe('behind a dead claim');
    await Promise.all([b.send('and the claimant itself', 0, 7), expect(a.recv(1, 7, { timeout: 8_000 })).resolves.toBe('and the claimant itself')]);
  }, 20_000);

  it('a live peer that sends nothing for a while is not reported', async () => {
    job = await startJob(2);
    const [a] = job.comms;
    await Promise.all(job.comms.map((comm) => comm.barrier()));
    const outcome = await a.recv(1, 78, { timeout: 1_500 }).then(
      () => 'received',
      (e: unknown) => (isVmcommError(e) ? e.code : String(e)),
    );
    expect(outcome).toBe('TIMEOUT');
  });

  it('a record of a peer already reported lost, cut short by a later report of the transport’s own: the ANY_SOURCE receive it had taken serves the others', async () => {
    // An eager message four times the ring: it streams through it (a rendezvous one would wait for a
    // CTS, which this rank no longer sends to a peer it lost).
    job = await startJob(3, { ringBytes: 16 * 1024, cma: false }, { eagerLimitBytes: 64 * 1024 });
    const [a, b, c] = job.comms;
    await Promise.all([a.send('ring opened', 1, 8), b.recv(0, 8)]);
    const reader = job.transports[1] as unknown as { lost(peer: number, error: Error): void };
    // The sweep's first report (rank 0's process looks dead): its ring stays polled for what it finished.
    reader.lost(0, new Error('first report'));
    const n = 64 * 1024;
    const into = new Uint8Array(n);
    const recv = b.irecvBuffer(into, ANY_SOURCE, 9);
    const send = a.isendBuffer(new Uint8Array(n).fill(7), 1, 9);
    for (let step = 0; into[0] === 0; step++) {
      send.test();
      expect(recv.test()).toBe(false);
      if (step % 8 === 7) await new Promise((r) => setImmediate(r));
    }
    // Half in; then a second report (its outbound channel failing, say): the record is cut short.
    reader.lost(0, new Error('second report'));
    await c.sendBuffer(new Uint8Array(4).fill(3), 1, 9);
    expect(await recv).toEqual({ source: 2, tag: 9, bytes: 4 });
  });

  it('a live sender whose reader gave its ring up learns it from its sweep: a rendezvous send waiting for its CTS fails PEER_LOST', async () => {
    job = await startJob(2, {}, { eagerLimitBytes: 1024 });
    const [a, b] = job.comms;
    await Promise.all([a.send('ring opened', 1, 8), b.recv(0, 8)]);
    // Rank 1 gives rank 0 up while both run (what a refused frame, or a loss reported while a frame
    // of rank 0 was half in, does there): rank 0's ring is read no more.
    job.transports[1].abandonFrame(0, new Error('given up in a test'));
    // Its RTS fits the ring, so nothing blocks: only the sweep can tell it no CTS will come.
    const started = performance.now();
    const outcome = await a.sendBuffer(new Uint8Array(64 * 1024), 1, 9).then(
      () => 'sent',
      (e: unknown) => (isVmcommError(e) ? e.code : String(e)),
    );
    expect(outcome).toBe('PEER_LOST');
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
