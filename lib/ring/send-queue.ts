/**
 * A producer's frames that are not (fully) in its ring yet, oldest first: a growable circular FIFO of
 * (48-byte header copy, borrowed payload, `done`). Headers live in one byte array (slot i at
 * i × 48), so queuing a frame allocates nothing until the queue has to grow.
 *
 * @module
 */

import type { SendDone } from '../backend.js';
import { FRAME_HEADER_BYTES } from '../protocol.js';

const INITIAL_SLOTS = 16;

/** The FIFO. {@link slotAt} finds a frame; {@link shift} removes the oldest. */
export class SendQueue {
  /** Slot i's header is at `headers[i * 48 …]`. */
  headers = new Uint8Array(INITIAL_SLOTS * FRAME_HEADER_BYTES);
  private payloads: (Uint8Array | undefined)[] = new Array(INITIAL_SLOTS).fill(undefined);
  private dones: (SendDone | undefined)[] = new Array(INITIAL_SLOTS).fill(undefined);
  private first = 0;
  private count = 0;
  /** Bytes of the oldest frame's record already in the ring (header, payload, padding). */
  frontWritten = 0;

  get length(): number {
    return this.count;
  }

  /** Appends a frame; copies the header (the caller reuses its buffer). */
  push(header: Uint8Array, payload: Uint8Array | undefined, done: SendDone | undefined): void {
    if (this.count === this.payloads.length) this.grow();
    const at = (this.first + this.count) & (this.payloads.length - 1);
    const base = at * FRAME_HEADER_BYTES;
    const h = this.headers;
    for (let i = 0; i < FRAME_HEADER_BYTES; i++) h[base + i] = header[i];
    this.payloads[at] = payload;
    this.dones[at] = done;
    this.count++;
  }

  /** The slot of the `i`-th oldest frame (0 = oldest); its header is at `headers[slot * 48 …]`. */
  slotAt(i: number): number {
    return (this.first + i) & (this.payloads.length - 1);
  }

  /** The payload in `slot`. */
  payloadAtSlot(slot: number): Uint8Array | undefined {
    return this.payloads[slot];
  }

  /** Removes the oldest frame and returns its `done` (the caller calls it). */
  shift(): SendDone | undefined {
    const at = this.first;
    const done = this.dones[at];
    this.payloads[at] = undefined;
    this.dones[at] = undefined;
    this.first = (at + 1) & (this.payloads.length - 1);
    this.count--;
    this.frontWritten = 0;
    return done;
  }

  private grow(): void {
    const size = this.payloads.length;
    const headers = new Uint8Array(size * 2 * FRAME_HEADER_BYTES);
    const payloads: (Uint8Array | undefined)[] = new Array(size * 2).fill(undefined);
    const dones: (SendDone | undefined)[] = new Array(size * 2).fill(undefined);
    for (let i = 0; i < this.count; i++) {
      const at = (this.first + i) & (size - 1);
      headers.set(this.headers.subarray(at * FRAME_HEADER_BYTES, (at + 1) * FRAME_HEADER_BYTES), i * FRAME_HEADER_BYTES);
      payloads[i] = this.payloads[at];
      dones[i] = this.dones[at];
    }
    this.headers = headers;
    this.payloads = payloads;
    this.dones = dones;
    this.first = 0;
  }
}
