/**
 * {@link CollectiveCells} over the shm transport's inbox files: a member's cell is the cell of the
 * communicator's key in *its own* inbox file (`layout.ts`). A member writes only its own file's cell
 * (its cache lines stay local until a reader pulls them) and reads its peers' cells through the
 * mappings the probe already made: no file, name or message is exchanged to set them up.
 *
 * Waking: {@link ShmCollectiveCells.publish} rings the doorbell of every member whose waiter flag is
 * up (one load per member when nobody sleeps), exactly as a frame does; the woken member's wait loop
 * then polls, and the transport calls the watched checks on every poll.
 *
 * @module
 */

import type { CollectiveCells } from '../../lib/backend.js';
import { CELL_PAYLOAD_BYTES, CELL_PAYLOAD_OFFSET } from './layout.js';

/** Where one member's cell is. */
export interface CellPlace {
  readonly sab: SharedArrayBuffer;
  /** Byte offset of the cell in `sab`. */
  readonly offset: number;
}

/** What the cells need of their transport. */
export interface CellHost {
  /** Wakes `peer` (world rank) if its waiter flag is up. */
  wake(peer: number): void;
  /** Adds a check to every poll. */
  watch(check: () => boolean): void;
  /** Removes it. */
  unwatch(check: () => boolean): void;
}

/** One communicator's cells: views made once, so a call makes none. */
export class ShmCollectiveCells implements CollectiveCells {
  readonly payloadBytes = CELL_PAYLOAD_BYTES;
  readonly #words: Int32Array[];
  readonly #bytes: Uint8Array[][];
  readonly #doubles: Float64Array[][];
  readonly #own: Int32Array;
  /** The members to wake after a publish (world ranks, this rank left out). */
  readonly #others: number[];

  constructor(
    places: readonly CellPlace[],
    members: readonly number[],
    self: number,
    private readonly host: CellHost,
  ) {
    this.#words = places.map((p) => new Int32Array(p.sab, p.offset, 2));
    this.#bytes = places.map((p) => [0, 1].map((parity) => new Uint8Array(p.sab, p.offset + CELL_PAYLOAD_OFFSET + parity * CELL_PAYLOAD_BYTES, CELL_PAYLOAD_BYTES)));
    this.#doubles = places.map((p) => [0, 1].map((parity) => new Float64Array(p.sab, p.offset + CELL_PAYLOAD_OFFSET + parity * CELL_PAYLOAD_BYTES, CELL_PAYLOAD_BYTES / 8)));
    this.#own = this.#words[members.indexOf(self)];
    this.#others = members.filter((m) => m !== self);
  }

  stamp(member: number): number {
    return Atomics.load(this.#words[member], 0);
  }

  presence(member: number): number {
    return Atomics.load(this.#words[member], 1);
  }

  payload(member: number, parity: number): Uint8Array {
    return this.#bytes[member][parity];
  }

  doubles(member: number, parity: number): Float64Array {
    return this.#doubles[member][parity];
  }

  publish(stamp: number): void {
    Atomics.store(this.#own, 0, stamp);
    const others = this.#others;
    for (let i = 0; i < others.length; i++) this.host.wake(others[i]);
  }

  announce(presence: number): void {
    Atomics.store(this.#own, 1, presence);
  }

  watch(check: () => boolean): void {
    this.host.watch(check);
  }

  unwatch(check: () => boolean): void {
    this.host.unwatch(check);
  }
}
