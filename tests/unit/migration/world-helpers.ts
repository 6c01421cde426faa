// In-process worlds with two switchable plug-in transports ('fast' 50 and 'slow' 10), and a
// sequenced, checksummed message stream to run while the test moves pairs between them.
import type { Communicator } from '../../../lib/communicator.js';
import { ANY_SOURCE } from '../../../lib/constants.js';
import { createLocalJob } from '../../../lib/local-bootstrap.js';
import type { InitOptions } from '../../../lib/options.js';
import { initWithBootstrap } from '../../../lib/start-world.js';
import { switchable, type SwitchableInit } from './switchable-transport.js';

export const TAG = 11;
/** Small enough that a good share of the stream goes rendezvous (RTS → CTS → DATA). */
export const EAGER_LIMIT = 256;

/** Rejects with `what` when `p` has not settled within `ms` (every wait of these tests has a deadline). */
export function deadline<T>(p: PromiseLike<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    Promise.resolve(p).then(
      (v) => (clearTimeout(timer), resolve(v)),
      (e) => (clearTimeout(timer), reject(e)),
    );
  });
}

/** Waits until `cond()` holds; throws with `what` (and `detail()`) after `ms`. */
export async function until(cond: () => boolean, ms: number, what: string, detail?: () => unknown): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${detail ? `: ${JSON.stringify(detail())}` : ''}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The two transports of these tests. `fast` delivers on the next turn, `slow` after a millisecond, payloads in two steps. */
export function transports(over: { fast?: Partial<SwitchableInit>; slow?: Partial<SwitchableInit> } = {}) {
  return {
    fast: switchable({ name: 'fast', priority: 50, ...over.fast }),
    slow: switchable({ name: 'slow', priority: 10, delayMs: 1, splitPayloads: true, ...over.slow }),
  };
}

/** Starts `n` ranks in this process on the given plug-ins only. */
export async function startWorld(n: number, backends: InitOptions['backends'], options: InitOptions = {}): Promise<Communicator[]> {
  const only = (backends ?? []).map((f) => f.transportName);
  return deadline(
    Promise.all(createLocalJob(n).map((b) => initWithBootstrap(b, { backends, only, eagerLimitBytes: EAGER_LIMIT, ...options }))),
    10_000,
    `init of ${n} ranks`,
  );
}

/** Every other rank. */
export const peersOf = (rank: number, size: number): number[] => Array.from({ length: size }, (_, p) => p).filter((p) => p !== rank);

// ---------------------------------------------------------------------------------------- the stream

/** Mixed sizes around the eager limit: empty, eager, just over, rendezvous of a few KiB. */
export const sizeOf = (i: number): number => [0, 3, 40, 180, 300, 700, 2000, 5000][i % 8] + (i % 5);

export function payloadOf(src: number, dst: number, i: number): Uint8Array {
  const a = new Uint8Array(sizeOf(i));
  for (let k = 0; k < a.length; k++) a[k] = (src * 7 + dst * 13 + i + k) & 255;
  return a;
}

export interface Msg {
  readonly s: number;
  readonly i: number;
  readonly d: Uint8Array;
}

/** Counters the test reads to pace its steps: per direction `${src}>${dst}`. */
export class Traffic {
  readonly sent = new Map<string, number>();
  readonly received = new Map<string, number>();
  get totalReceived(): number {
    let n = 0;
    for (const v of this.received.values()) n += v;
    return n;
  }
  /** Messages sent and not yet received, over every direction. */
  get inFlight(): number {
    let n = 0;
    for (const [k, v] of this.sent) n += v - (this.received.get(k) ?? 0);
    return n;
  }
  bump(map: Map<string, number>, src: number, dst: number): void {
    const k = `${src}>${dst}`;
    map.set(k, (map.get(k) ?? 0) + 1);
  }
}

/**
 * Sends `count` messages to `dest`, keeping up to `window` in flight; before message `i` it awaits
 * `gate(i)` (the test holds the tail of the stream back until its steps are done).
 */
export async function sendStream(comm: Communicator, dest: number, count: number, traffic: Traffic, gate?: (i: number) => Promise<void> | undefined, window = 16): Promise<void> {
  const inFlight: PromiseLike<void>[] = [];
  for (let i = 0; i < count; i++) {
    const g = gate?.(i);
    if (g) await g;
    inFlight.push(comm.isend({ s: comm.rank, i, d: payloadOf(comm.rank, dest, i) } satisfies Msg, dest, TAG));
    traffic.bump(traffic.sent, comm.rank, dest);
    if (inFlight.length >= window) await inFlight.shift();
  }
  await Promise.all(inFlight);
}

/**
 * Receives `count` messages, from `source` or (ANY_SOURCE) from anyone, with `window` receives posted
 * at a time. Returns them in the order the receives were posted (= the order they matched).
 */
export async function recvStream(comm: Communicator, source: number, count: number, traffic: Traffic, window = 8): Promise<Msg[]> {
  const got: Msg[] = [];
  const posted: PromiseLike<Msg>[] = [];
  let next = 0;
  const post = () => {
    posted.push(comm.irecv<Msg>(source, TAG));
    next++;
  };
  while (next < count && posted.length < window) post();
  while (posted.length > 0) {
    const m = await posted.shift()!;
    got.push(m);
    traffic.bump(traffic.received, m.s, comm.rank);
    if (next < count) post();
  }
  return got;
}

/** Problems with what `dst` received from `src` (expected: i = 0 … count − 1 in order, payloads intact). */
export function checkStream(got: readonly Msg[], src: number, dst: number, count: number): string[] {
  const mine = got.filter((m) => m.s === src);
  const problems: string[] = [];
  if (mine.length !== count) problems.push(`${src}>${dst}: ${mine.length} messages, expected ${count}`);
  const seen = new Set<number>();
  mine.forEach((m, k) => {
    if (seen.has(m.i)) problems.push(`${src}>${dst}: message ${m.i} duplicated`);
    seen.add(m.i);
    if (m.i !== k) problems.push(`${src}>${dst}: position ${k} holds message ${m.i}`);
    const want = payloadOf(src, dst, m.i);
    if (!(m.d instanceof Uint8Array) || m.d.length !== want.length || m.d.some((b, x) => b !== want[x])) problems.push(`${src}>${dst}: message ${m.i} corrupted`);
  });
  return problems.slice(0, 20);
}

/** Streams `count` messages in every direction; receives per source, or ANY_SOURCE. Resolves to the problems found. */
export async function streamAll(comms: readonly Communicator[], count: number, traffic: Traffic, opts: { anySource: boolean; gate?: (i: number) => Promise<void> | undefined }): Promise<string[]> {
  const size = comms.length;
  const sends = comms.flatMap((c) => peersOf(c.rank, size).map((q) => sendStream(c, q, count, traffic, opts.gate)));
  const recvs = comms.map(async (c) => {
    const others = peersOf(c.rank, size);
    if (opts.anySource) {
      const got = await recvStream(c, ANY_SOURCE, count * others.length, traffic);
      return others.flatMap((q) => checkStream(got, q, c.rank, count));
    }
    const per = await Promise.all(others.map((q) => recvStream(c, q, count, traffic)));
    return others.flatMap((q, k) => checkStream(per[k], q, c.rank, count));
  });
  await Promise.all(sends);
  return (await Promise.all(recvs)).flat();
}

/** One round of small messages between every pair, both ways (the pair still works). */
export async function pingAll(comms: readonly Communicator[], tag = 77): Promise<void> {
  const size = comms.length;
  const sends = comms.flatMap((c) => peersOf(c.rank, size).map((q) => c.isend(`${c.rank}->${q}`, q, tag)));
  const recvs = comms.flatMap((c) => peersOf(c.rank, size).map(async (q) => [await c.recv<string>(q, tag), `${q}->${c.rank}`]));
  const pairs = await deadline(Promise.all(recvs), 5000, 'a ping between every pair');
  await deadline(Promise.all(sends), 5000, 'the pings to be sent');
  for (const [got, want] of pairs) if (got !== want) throw new Error(`ping: got ${got}, expected ${want}`);
}
