/**
 * A doubly linked FIFO whose entries can leave from the middle in O(1): the matching queues need
 * "first entry that matches" scans plus removal where the match was found.
 *
 * @module
 */

/** A queue node; `value` is what was pushed. Treat as opaque outside this module. */
export interface QueueNode<T> {
  value: T;
  prev: QueueNode<T> | undefined;
  next: QueueNode<T> | undefined;
  /** False once removed, so a second removal is a no-op. */
  linked: boolean;
}

/** FIFO with O(1) push, shift and removal of any node. */
export class LinkedQueue<T> {
  private head: QueueNode<T> | undefined;
  private tail: QueueNode<T> | undefined;
  private count = 0;

  /** Number of entries. */
  get length(): number {
    return this.count;
  }

  /**
   * The oldest node, for a scan that follows `next` itself: a search that takes its test as
   * arguments, not as a closure, allocates nothing (see `Matching.takePosted`).
   */
  get first(): QueueNode<T> | undefined {
    return this.head;
  }

  /** Appends `value`; returns its node (for {@link remove}). */
  push(value: T): QueueNode<T> {
    const node: QueueNode<T> = { value, prev: this.tail, next: undefined, linked: true };
    if (this.tail) this.tail.next = node;
    else this.head = node;
    this.tail = node;
    this.count++;
    return node;
  }

  /** Puts `value` first; returns its node. */
  unshift(value: T): QueueNode<T> {
    const node: QueueNode<T> = { value, prev: undefined, next: this.head, linked: true };
    if (this.head) this.head.prev = node;
    else this.tail = node;
    this.head = node;
    this.count++;
    return node;
  }

  /** The first node whose value satisfies `pred`, oldest first. */
  find(pred: (value: T) => boolean): QueueNode<T> | undefined {
    for (let n = this.head; n; n = n.next) if (pred(n.value)) return n;
    return undefined;
  }

  /** Unlinks `node`; a node already removed is ignored. */
  remove(node: QueueNode<T>): void {
    if (!node.linked) return;
    node.linked = false;
    if (node.prev) node.prev.next = node.next;
    else this.head = node.next;
    if (node.next) node.next.prev = node.prev;
    else this.tail = node.prev;
    node.prev = node.next = undefined;
    this.count--;
  }

  /** Removes and returns every value, oldest first. */
  drain(): T[] {
    const out: T[] = [];
    for (let n = this.head; n; n = n.next) out.push(n.value);
    for (let n = this.head; n; ) {
      const next = n.next;
      n.linked = false;
      n.prev = n.next = undefined;
      n = next;
    }
    this.head = this.tail = undefined;
    this.count = 0;
    return out;
  }

  /** Iterates values oldest first. Do not remove other nodes while iterating. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (let n = this.head; n; ) {
      const next = n.next;
      yield n.value;
      n = next;
    }
  }
}
