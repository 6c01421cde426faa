/**
 * Who else of this job lives in this process: the proof behind the `threads` transport's `probe`.
 *
 * Each thread-rank opens a `BroadcastChannel` named from the job id. A `BroadcastChannel` reaches the
 * other channels of the same name **in the same process only** (other threads, and other channel
 * objects on the same thread; never the sending object itself), so a message that arrives on it was
 * posted by this process. Each rank posts a *hello*: its rank, the random nonce it also put in its
 * locality card, its thread id, and its arena (a `SharedArrayBuffer`, which a `BroadcastChannel`
 * shares rather than copies). A peer is proven to be in this process when its hello arrived with the
 * nonce its card carries; both directions are then proven by the reachability bitmaps (DESIGN §4).
 *
 * A channel only receives what is posted after it was opened, so a rank that opened late missed the
 * hellos before it. Hellos therefore list the ranks already heard from, and a rank that is not on that
 * list answers with a *reply* (its own hello again). The late rank heard of the early one, or the
 * early one hears the late one's hello and replies: one of the two always happens, since opening and
 * posting are back to back. All hellos are posted before the card exchange, so by the time probes
 * run every needed hello or reply is on its way.
 *
 * @module
 */

import { BroadcastChannel } from 'node:worker_threads';
import { VmcommError } from '../../lib/errors.js';

/** What a rank tells the other thread-ranks of its process. */
export interface ThreadPeer {
  readonly rank: number;
  /** The nonce the rank put in its card (`threads.nonce`). */
  readonly nonce: string;
  /** Its `worker_threads.threadId` (0 for a main thread). */
  readonly threadId: number;
  /** Its arena: inbox at 0, rings after. */
  readonly arena: SharedArrayBuffer;
  /** Inbox announcement slots (the inbox is `inboxBytes(slots)` long). */
  readonly slots: number;
  /** Data bytes of each of its rings. */
  readonly ringBytes: number;
}

interface Hello extends ThreadPeer {
  readonly v: 1;
  readonly type: 'hello' | 'reply';
  readonly jobId: string;
  /** Ranks this one had heard from when it posted. */
  readonly known: readonly number[];
}

interface Waiter {
  readonly nonce: string;
  readonly resolve: (peer: ThreadPeer | undefined) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** The name of a job's channel. */
export function channelName(jobId: string): string {
  return `vmcomm:threads:${jobId}`;
}

/** The hellos of one job seen by one rank. */
export class ThreadDirectory {
  private channel: BroadcastChannel | undefined;
  private readonly heard = new Map<number, ThreadPeer>();
  private readonly waiters = new Map<number, Waiter[]>();
  private closed = false;

  constructor(
    private readonly jobId: string,
    private readonly self: ThreadPeer,
  ) {}

  /**
   * Opens the channel, lets hellos already on their way arrive (one event-loop turn), then posts this
   * rank's hello. Rejects with `UNSUPPORTED` when `BroadcastChannel` does not exist here.
   */
  async open(): Promise<void> {
    if (typeof BroadcastChannel !== 'function') throw new VmcommError('UNSUPPORTED', 'BroadcastChannel is not available in this runtime');
    const channel = new BroadcastChannel(channelName(this.jobId));
    this.channel = channel;
    // Referenced while open (from start() to addPeers()): hellos still on their way keep us alive.
    channel.onmessage = (event) => this.receive((event as { data?: unknown }).data);
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.post('hello');
  }

  /** The hello of `rank`, if one arrived. */
  peer(rank: number): ThreadPeer | undefined {
    return this.heard.get(rank);
  }

  /**
   * Resolves with `rank`'s hello once one with `nonce` arrived, or `undefined` after `timeoutMs`
   * (or when the directory closes).
   */
  waitFor(rank: number, nonce: string, timeoutMs: number): Promise<ThreadPeer | undefined> {
    const known = this.heard.get(rank);
    if (known?.nonce === nonce) return Promise.resolve(known);
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.settle(rank, waiter, undefined), timeoutMs);
      (timer as { unref?: () => void }).unref?.();
      const waiter: Waiter = { nonce, resolve, timer };
      const list = this.waiters.get(rank) ?? [];
      list.push(waiter);
      this.waiters.set(rank, list);
    });
  }

  /** Closes the channel; pending waits resolve `undefined`. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.channel?.close();
    this.channel = undefined;
    for (const [rank, list] of [...this.waiters]) for (const w of [...list]) this.settle(rank, w, undefined);
  }

  private post(type: Hello['type']): void {
    const hello: Hello = { ...this.self, v: 1, type, jobId: this.jobId, known: [...this.heard.keys()] };
    this.channel?.postMessage(hello);
  }

  private receive(data: unknown): void {
    const hello = parseHello(data, this.jobId);
    if (hello === undefined || (hello.rank === this.self.rank && hello.nonce === this.self.nonce)) return;
    this.heard.set(hello.rank, hello);
    for (const w of [...(this.waiters.get(hello.rank) ?? [])]) if (w.nonce === hello.nonce) this.settle(hello.rank, w, hello);
    if (hello.type === 'hello' && !hello.known.includes(this.self.rank)) this.post('reply');
  }

  private settle(rank: number, waiter: Waiter, peer: ThreadPeer | undefined): void {
    const list = this.waiters.get(rank);
    const at = list?.indexOf(waiter) ?? -1;
    if (list === undefined || at < 0) return;
    list.splice(at, 1);
    if (list.length === 0) this.waiters.delete(rank);
    clearTimeout(waiter.timer);
    waiter.resolve(peer);
  }
}

/** A well-formed hello of this job, or `undefined`. */
function parseHello(data: unknown, jobId: string): Hello | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const h = data as Partial<Hello>;
  if (h.v !== 1 || (h.type !== 'hello' && h.type !== 'reply') || h.jobId !== jobId) return undefined;
  if (!Number.isSafeInteger(h.rank) || (h.rank as number) < 0 || typeof h.nonce !== 'string' || !Number.isSafeInteger(h.threadId)) return undefined;
  if (!(h.arena instanceof SharedArrayBuffer) || !Number.isSafeInteger(h.slots) || !Number.isSafeInteger(h.ringBytes)) return undefined;
  if (!Array.isArray(h.known) || !h.known.every((r) => Number.isSafeInteger(r))) return undefined;
  return h as Hello;
}
