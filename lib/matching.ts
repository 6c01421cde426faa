/**
 * MPI message matching for one context (a communicator's point-to-point or collective half): the
 * posted-receive queue and the unexpected-message queue.
 *
 * Rules (MPI 4.0 §3.5): a message matches the *oldest* posted receive whose source and tag fit
 * (wildcards included); a receive matches the *oldest* arrived message that fits. Messages from one
 * sender arrive in the order sent (channels are FIFO), so these two rules give MPI's non-overtaking
 * order per (communicator, source, tag), and ANY_SOURCE takes messages in arrival order, which keeps
 * every sender served (no starvation).
 *
 * @module
 */

import { ANY_SOURCE, ANY_TAG } from './constants.js';
import { ARGUMENT_HASH_BITS, isCollectiveContext } from './contexts.js';
import { LinkedQueue, type QueueNode } from './queue.js';
import type { RequestControl } from './request.js';

/** How a posted receive wants its message. */
export type RecvMode = 'value' | 'message' | 'buffer';

/** A receive waiting for a message. */
export interface PostedRecv {
  /** Communicator rank or ANY_SOURCE. */
  readonly source: number;
  /** Tag or ANY_TAG. */
  readonly tag: number;
  readonly mode: RecvMode;
  /** For `buffer`: where the bytes go (the user's memory). */
  readonly bytes: Uint8Array | undefined;
  /** Settles the user's request. */
  readonly control: RequestControl<any>;
  /** Set while queued, so cancel can unlink it. */
  node?: QueueNode<PostedRecv>;
}

/** A message that arrived before its receive. */
export interface UnexpectedMsg {
  /** Sender's communicator rank. */
  readonly source: number;
  readonly tag: number;
  /** Sender's world rank (where CTS and credits go). */
  readonly peer: number;
  /** Message length in bytes. */
  readonly bytes: number;
  readonly flags: number;
  /** Eager: the whole payload, owned by vmcomm. Rendezvous (RTS): undefined. */
  readonly data: Uint8Array | undefined;
  /** For RTS: the sender's request id. */
  readonly sendId: number;
  node?: QueueNode<UnexpectedMsg>;
}

/** A `probe` waiting for a message to arrive. */
interface ProbeWaiter {
  readonly source: number;
  readonly tag: number;
  readonly notify: (msg: UnexpectedMsg) => void;
  readonly fail: (error: Error) => void;
}

function fits(wantSource: number, wantTag: number, source: number, tag: number): boolean {
  return (wantSource === ANY_SOURCE || wantSource === source) && (wantTag === ANY_TAG || wantTag === tag);
}

/** In a collective context tags match on the collective number; the argument hash is checked after (contexts.ts). */
function fitsCollective(wantSource: number, wantTag: number, source: number, tag: number): boolean {
  return (wantSource === ANY_SOURCE || wantSource === source) && (wantTag === ANY_TAG || wantTag >>> ARGUMENT_HASH_BITS === tag >>> ARGUMENT_HASH_BITS);
}

/** The two queues of one context. */
export class Matching {
  private readonly posted = new LinkedQueue<PostedRecv>();
  private readonly unexpected = new LinkedQueue<UnexpectedMsg>();
  private readonly probes = new LinkedQueue<ProbeWaiter>();

  private readonly fits: typeof fits;

  constructor(readonly context: number) {
    this.fits = isCollectiveContext(context) ? fitsCollective : fits;
  }

  // The three searches below run once or twice per message. They walk the nodes themselves rather
  // than pass a closure to `LinkedQueue.find`: V8 11 allocated the closure and its context (about
  // 100 bytes) on every call, even for an empty queue, and fresh young-generation memory is a cache
  // miss on a message's critical path.

  /** Removes and returns the oldest posted receive that accepts (source, tag). */
  takePosted(source: number, tag: number): PostedRecv | undefined {
    const fits = this.fits;
    for (let n = this.posted.first; n !== undefined; n = n.next) {
      const r = n.value;
      if (!fits(r.source, r.tag, source, tag)) continue;
      this.posted.remove(n);
      r.node = undefined;
      return r;
    }
    return undefined;
  }

  /** Removes and returns the oldest unexpected message that fits the wanted (source, tag). */
  takeUnexpected(source: number, tag: number): UnexpectedMsg | undefined {
    const n = this.findUnexpectedNode(source, tag);
    if (n === undefined) return undefined;
    this.unexpected.remove(n);
    n.value.node = undefined;
    return n.value;
  }

  /** The oldest unexpected message that fits, left in place (for `probe`). */
  peekUnexpected(source: number, tag: number): UnexpectedMsg | undefined {
    return this.findUnexpectedNode(source, tag)?.value;
  }

  private findUnexpectedNode(source: number, tag: number): QueueNode<UnexpectedMsg> | undefined {
    const fits = this.fits;
    for (let n = this.unexpected.first; n !== undefined; n = n.next) {
      const m = n.value;
      if (fits(source, tag, m.source, m.tag)) return n;
    }
    return undefined;
  }

  /** Withdraws an unexpected rendezvous announcement (the sender cancelled it). */
  takeUnexpectedRts(peer: number, sendId: number): UnexpectedMsg | undefined {
    const node = this.unexpected.find((m) => m.data === undefined && m.peer === peer && m.sendId === sendId);
    if (!node) return undefined;
    this.unexpected.remove(node);
    return node.value;
  }

  /** Queues a receive that found no message. */
  post(recv: PostedRecv): void {
    recv.node = this.posted.push(recv);
  }

  /**
   * Puts back a receive that had matched a message which then did not come (withdrawn by its sender,
   * or its sender was lost mid-frame): first in line, as it was the oldest receive that fitted.
   */
  repost(recv: PostedRecv): void {
    recv.node = this.posted.unshift(recv);
  }

  /** Removes and returns the oldest unexpected eager message (a revoked context drops them). */
  takeUnexpectedEager(): UnexpectedMsg | undefined {
    const node = this.unexpected.find((m) => m.data !== undefined);
    if (!node) return undefined;
    this.unexpected.remove(node);
    node.value.node = undefined;
    return node.value;
  }

  /** Drops the unexpected rendezvous announcements of `peer` (lost: their data can never come). */
  dropRtsFrom(peer: number): void {
    for (let n = this.unexpected.find((m) => m.peer === peer && m.data === undefined); n; n = this.unexpected.find((m) => m.peer === peer && m.data === undefined)) {
      this.unexpected.remove(n);
    }
  }

  /** Unlinks a posted receive; false when it already matched. */
  unpost(recv: PostedRecv): boolean {
    const node = recv.node;
    if (!node || !node.linked) return false;
    this.posted.remove(node);
    recv.node = undefined;
    return true;
  }

  /** Queues an arrived message that no receive wanted, and wakes the probes it satisfies. */
  addUnexpected(msg: UnexpectedMsg): void {
    msg.node = this.unexpected.push(msg);
    if (this.probes.length === 0) return;
    for (let n = this.probes.find((p) => this.fits(p.source, p.tag, msg.source, msg.tag)); n; n = this.probes.find((p) => this.fits(p.source, p.tag, msg.source, msg.tag))) {
      this.probes.remove(n);
      n.value.notify(msg);
    }
  }

  /** Waits for a message that fits; returns a function that withdraws the wait. */
  waitProbe(source: number, tag: number, notify: (msg: UnexpectedMsg) => void, fail: (error: Error) => void): () => void {
    const node = this.probes.push({ source, tag, notify, fail });
    return () => this.probes.remove(node);
  }

  /** Fails the probes waiting on `source` specifically (lost), or every probe (`undefined`: finalize). */
  failProbes(source: number | undefined, error: Error): void {
    for (const p of this.probes.drain()) {
      if (source === undefined || p.source === source) p.fail(error);
      else this.probes.push(p);
    }
  }

  /** The first unexpected message that satisfies `test` (collective leftovers), left in place. */
  findUnexpected(test: (msg: UnexpectedMsg) => boolean): UnexpectedMsg | undefined {
    return this.unexpected.length === 0 ? undefined : this.unexpected.find(test)?.value;
  }

  /** Every posted receive (for failing them on peer loss or finalize). */
  postedReceives(): PostedRecv[] {
    return [...this.posted];
  }

  /** Number of queued unexpected messages (no allocation: checked on every collective call). */
  get unexpectedCount(): number {
    return this.unexpected.length;
  }

  /** Number of queued unexpected messages and posted receives (for stats and tests). */
  get depth(): { posted: number; unexpected: number } {
    return { posted: this.posted.length, unexpected: this.unexpected.length };
  }
}
