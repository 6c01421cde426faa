/**
 * A thread-rank's *arena*: one `SharedArrayBuffer` holding its inbox, its collective cells and the
 * rings it sends on, one per peer, carved on first use. The buffer is allocated once at start-up at
 * its full size, but the operating system commits its pages only when they are first touched (V8
 * allocates large shared buffers zero-filled with `calloc`, i.e. untouched anonymous pages), so the
 * memory a rank really uses is its inbox, the cells its communicators use (34 KiB for all) and one
 * ring per peer it has sent to.
 *
 * ## Layout
 *
 * | offset | bytes | what |
 * |---|---|---|
 * | 0 | `inboxBytes(slots)` | the inbox (`lib/ring/inbox.ts`) |
 * | `cellsStart` (next multiple of 64) | `CELLS_BYTES` | collective cells (`lib/ring/collective-cells.ts`) |
 * | `ringsStart` | `SINGLE_COPY_CONTROL_BYTES + ringRegionBytes(ringBytes)` each | rings, in the order they were carved, each after its single-copy control block (`lib/ring/single-copy-control.ts`) |
 *
 * A ring is announced to its consumer with an 8-byte descriptor: u32 offset, u32 length of the ring
 * (its control block is the 64 bytes before it), both little-endian (see
 * {@link encodeRingDescriptor}); the consumer checks it against the arena it received from the
 * producer before touching anything.
 *
 * @module
 */

import { VmcommError } from '../../lib/errors.js';
import { CELL_BYTES, CELLS_BYTES } from '../../lib/ring/collective-cells.js';
import { initInbox, inboxBytes } from '../../lib/ring/inbox.js';
import { corrupt, REGION_ALIGN_BYTES, type Region } from '../../lib/ring/region.js';
import { SINGLE_COPY_CONTROL_BYTES } from '../../lib/ring/single-copy-control.js';
import { initRing, ringRegionBytes } from '../../lib/ring/spsc-ring.js';

/** Bytes of a ring descriptor. */
export const RING_DESCRIPTOR_BYTES = 8;

/** The sizes an arena is built from. */
export interface ArenaPlan {
  /** Inbox announcement slots. */
  readonly slots: number;
  /** Data bytes of each ring. */
  readonly ringBytes: number;
  /** Rings the arena has room for. */
  readonly rings: number;
}

/** Bytes of an arena built from `plan`. */
export function arenaBytes(plan: ArenaPlan): number {
  return ringsStart(plan.slots) + plan.rings * ringSlotBytes(plan.ringBytes);
}

/** Bytes of one carved ring with its control block. */
export function ringSlotBytes(ringBytes: number): number {
  return SINGLE_COPY_CONTROL_BYTES + ringRegionBytes(ringBytes);
}

/** A carved ring and its single-copy control block (the 64 bytes before it). */
export interface CarvedRing {
  readonly ring: Region;
  readonly control: Region;
}

/** The control block of `ring`, a ring of an arena. */
export function controlOf(ring: Region): Region {
  return { sab: ring.sab, byteOffset: ring.byteOffset - SINGLE_COPY_CONTROL_BYTES, byteLength: SINGLE_COPY_CONTROL_BYTES };
}

/** Where the collective cells start, after an inbox of `slots` slots. */
export function cellsStart(slots: number): number {
  return Math.ceil(inboxBytes(slots) / REGION_ALIGN_BYTES) * REGION_ALIGN_BYTES;
}

/** Byte offset of collective cell `key` in an arena whose inbox has `slots` slots. */
export function cellOffset(slots: number, key: number): number {
  return cellsStart(slots) + key * CELL_BYTES;
}

/** Where the first ring starts, after the inbox and the cells. */
export function ringsStart(slots: number): number {
  return cellsStart(slots) + CELLS_BYTES;
}

/** One rank's arena. */
export class Arena {
  readonly sab: SharedArrayBuffer;
  readonly inbox: Region;
  readonly plan: ArenaPlan;
  private next: number;
  private readonly end: number;

  constructor(plan: ArenaPlan) {
    this.plan = plan;
    this.sab = new SharedArrayBuffer(arenaBytes(plan));
    this.inbox = { sab: this.sab, byteOffset: 0, byteLength: inboxBytes(plan.slots) };
    initInbox(this.inbox, plan.slots);
    this.next = ringsStart(plan.slots);
    this.end = this.sab.byteLength;
  }

  /** Carves and initializes the next ring (and its control block); throws `UNSUPPORTED` when the arena is full. */
  carveRing(): CarvedRing {
    const slot = ringSlotBytes(this.plan.ringBytes);
    if (this.next + slot > this.end) {
      throw new VmcommError('UNSUPPORTED', `the threads arena has room for ${this.plan.rings} rings and all are in use; raise arenaBytes`);
    }
    const ring = { sab: this.sab, byteOffset: this.next + SINGLE_COPY_CONTROL_BYTES, byteLength: ringRegionBytes(this.plan.ringBytes) };
    this.next += slot;
    initRing(ring);
    return { ring, control: controlOf(ring) };
  }

  /** Bytes carved so far (inbox included). */
  get usedBytes(): number {
    return this.next;
  }
}

/** The descriptor announcing `ring` (a region of this rank's arena). */
export function encodeRingDescriptor(ring: Region): Uint8Array {
  const d = new Uint8Array(RING_DESCRIPTOR_BYTES);
  const v = new DataView(d.buffer);
  v.setUint32(0, ring.byteOffset, true);
  v.setUint32(4, ring.byteLength, true);
  return d;
}

/**
 * The ring a peer announced, checked against that peer's arena: the right length, inside the rings
 * area, aligned. Throws `CORRUPT` otherwise.
 */
export function decodeRingDescriptor(descriptor: Uint8Array, arena: SharedArrayBuffer, slots: number, ringBytes: number): Region {
  if (descriptor.byteLength !== RING_DESCRIPTOR_BYTES) throw corrupt(`a ring descriptor of ${descriptor.byteLength} bytes (expected ${RING_DESCRIPTOR_BYTES})`);
  const v = new DataView(descriptor.buffer, descriptor.byteOffset, RING_DESCRIPTOR_BYTES);
  const byteOffset = v.getUint32(0, true);
  const byteLength = v.getUint32(4, true);
  if (byteLength !== ringRegionBytes(ringBytes)) throw corrupt(`a ring of ${byteLength} bytes where the peer's rings are ${ringRegionBytes(ringBytes)}`);
  const slot = ringSlotBytes(ringBytes);
  const start = ringsStart(slots);
  if (byteOffset < start + SINGLE_COPY_CONTROL_BYTES || (byteOffset - start) % slot !== SINGLE_COPY_CONTROL_BYTES || byteOffset + byteLength > arena.byteLength) {
    throw corrupt(`a ring at offset ${byteOffset} outside the rings of a ${arena.byteLength}-byte arena`);
  }
  return { sab: arena, byteOffset, byteLength };
}
