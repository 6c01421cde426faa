/**
 * Reusable memory for outgoing small frames, so a send needs no fresh buffer.
 *
 * A small frame (header + payload) is copied into one slice of this ring and written with a single
 * `socket.write`; a large frame's 48-byte header copy comes from here too. Writes on one socket
 * complete in order, so slices are released first-in first-out and the free space is always one or
 * two contiguous runs — a ring. When it is full (the socket is backed up), the caller falls back to a
 * one-off buffer; nothing waits.
 *
 * @module
 */

/** A FIFO byte-slice allocator over one fixed Buffer. */
export class StagingRing {
  /** The memory. A Buffer, so slices are Buffers and `socket.write` need not re-wrap them. */
  readonly bytes: Buffer;
  /** Start of the oldest slice still in use. */
  private head = 0;
  /** Where the next slice starts. */
  private tail = 0;
  /** Slices handed out and not yet released. */
  private inUse = 0;

  constructor(capacityBytes: number) {
    this.bytes = Buffer.allocUnsafeSlow(capacityBytes);
  }

  /**
   * Reserves `n` bytes (`0 < n`) and returns their offset, or -1 when there is no room. Release with
   * {@link release}(offset + n), in allocation order.
   */
  alloc(n: number): number {
    const capacity = this.bytes.byteLength;
    if (this.inUse === 0) {
      this.head = 0;
      this.tail = 0;
    }
    let start: number;
    if (this.tail >= this.head) {
      // Used: [head, tail). Free: [tail, capacity) and [0, head).
      if (capacity - this.tail >= n) start = this.tail;
      // Wrap; strictly below head so that a full ring never looks empty (tail === head).
      else if (this.head > n) start = 0;
      else return -1;
    } else {
      // Used: [head, capacity) and [0, tail). Free: [tail, head).
      if (this.head - this.tail > n) start = this.tail;
      else return -1;
    }
    this.tail = start + n;
    this.inUse++;
    return start;
  }

  /** Releases the oldest slice; `end` is its offset + length. */
  release(end: number): void {
    this.inUse--;
    this.head = end;
  }
}
