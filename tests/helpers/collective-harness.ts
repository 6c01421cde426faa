/**
 * Runs a collective algorithm on `size` simulated ranks in this process, each with its own
 * {@link CollectiveIO} over in-memory FIFO mailboxes (one per ordered pair). Deliveries are delayed by
 * a seeded random number of macrotask turns, so ranks interleave differently from run to run while
 * every pair stays FIFO, as real channels are. Sends complete at once (eager), except messages over
 * `rendezvousBytes`, which complete only once received (so an algorithm that would deadlock under
 * rendezvous does so here too, and the harness reports it instead of hanging).
 */

import type { CollectiveIO } from '../../lib/collectives/io.js';
import { VmcommError } from '../../lib/errors.js';

export interface HarnessOptions {
  /** Seed for the delivery delays (default 1). */
  seed?: number;
  /** Messages longer than this complete their send only when received (default 64 KiB). */
  rendezvousBytes?: number;
  /** Give up after this many ms and report who waits on whom (default 10 s). */
  timeoutMs?: number;
}

/** Traffic counters of a run. */
export interface HarnessStats {
  /** Messages sent, per rank. */
  messages: number[];
  /** Bytes sent, per rank. */
  bytes: number[];
}

interface Envelope {
  bytes: Uint8Array;
  delivered: () => void;
}

interface Waiter {
  accept: (bytes: Uint8Array) => void;
}

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

/**
 * Runs `body` on every rank and returns each rank's result (by rank). Rejects with the first rank's
 * error, or with a report of unmatched traffic when the run does not finish in time.
 */
export async function runCollective<T>(size: number, body: (io: CollectiveIO) => Promise<T>, options: HarnessOptions = {}): Promise<{ results: T[]; stats: HarnessStats }> {
  const random = rng(options.seed ?? 1);
  const rendezvous = options.rendezvousBytes ?? 65536;
  // mail[from][to]: messages in flight; waiting[to][from]: receives posted, in order.
  const mail = Array.from({ length: size }, () => Array.from({ length: size }, () => [] as Envelope[]));
  const waiting = Array.from({ length: size }, () => Array.from({ length: size }, () => [] as Waiter[]));
  const stats: HarnessStats = { messages: new Array(size).fill(0), bytes: new Array(size).fill(0) };
  // Per pair, deliveries are chained so FIFO holds whatever the random delays.
  const lastDelivery = Array.from({ length: size }, () => Array.from({ length: size }, () => Promise.resolve()));

  const delay = () =>
    new Promise<void>((resolve) => {
      let turns = Math.floor(random() * 3);
      const step = () => (turns-- <= 0 ? resolve() : setImmediate(step));
      step();
    });

  const match = (from: number, to: number) => {
    const box = mail[from][to];
    const posted = waiting[to][from];
    while (box.length > 0 && posted.length > 0) {
      const env = box.shift()!;
      posted.shift()!.accept(env.bytes);
      env.delivered();
    }
  };

  const ioFor = (rank: number): CollectiveIO => ({
    rank,
    size,
    send(peer, bytes) {
      check(peer, size, 'send to');
      stats.messages[rank]++;
      stats.bytes[rank] += bytes.byteLength;
      const copy = bytes.slice(); // the sender may reuse its buffer once the send completes
      let delivered!: () => void;
      const received = new Promise<void>((r) => (delivered = r));
      lastDelivery[rank][peer] = lastDelivery[rank][peer].then(delay).then(() => {
        mail[rank][peer].push({ bytes: copy, delivered });
        match(rank, peer);
      });
      return bytes.byteLength > rendezvous ? received : Promise.resolve();
    },
    recv(peer, into) {
      check(peer, size, 'receive from');
      return new Promise<void>((resolve, reject) => {
        waiting[rank][peer].push({
          accept: (bytes) => {
            if (bytes.byteLength !== into.byteLength) {
              reject(new VmcommError('INVALID_ARGUMENT', `rank ${rank} expected ${into.byteLength} bytes from rank ${peer}, got ${bytes.byteLength}`));
              return;
            }
            into.set(bytes);
            resolve();
          },
        });
        match(peer, rank);
      });
    },
    recvBytes(peer) {
      check(peer, size, 'receive from');
      return new Promise<Uint8Array>((resolve) => {
        waiting[rank][peer].push({ accept: resolve });
        match(peer, rank);
      });
    },
    async waitAll(pending) {
      const settled = await Promise.allSettled(pending);
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
    },
  });

  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const report: string[] = [];
      for (let to = 0; to < size; to++) {
        for (let from = 0; from < size; from++) {
          if (waiting[to][from].length) report.push(`rank ${to} waits on ${waiting[to][from].length} message(s) from ${from}`);
          if (mail[from][to].length) report.push(`${mail[from][to].length} message(s) ${from}→${to} unreceived`);
        }
      }
      reject(new Error(`collective did not finish in ${options.timeoutMs ?? 10_000} ms: ${report.join('; ') || 'no traffic pending'}`));
    }, options.timeoutMs ?? 10_000);
  });
  try {
    const results = await Promise.race([Promise.all(Array.from({ length: size }, (_, r) => body(ioFor(r)))), timeout]);
    // Every message sent must have been received: a leftover means the algorithm's pattern is wrong.
    const leftovers: string[] = [];
    await Promise.all(lastDelivery.flat());
    for (let from = 0; from < size; from++) for (let to = 0; to < size; to++) if (mail[from][to].length) leftovers.push(`${from}→${to}: ${mail[from][to].length}`);
    if (leftovers.length) throw new Error(`messages sent but never received: ${leftovers.join(', ')}`);
    return { results, stats };
  } finally {
    clearTimeout(timer);
  }
}

function check(peer: number, size: number, what: string): void {
  if (!Number.isInteger(peer) || peer < 0 || peer >= size) throw new Error(`algorithm tried to ${what} rank ${peer} (size ${size})`);
}
