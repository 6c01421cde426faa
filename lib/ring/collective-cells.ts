/**
 * {@link CollectiveCells} over shared memory, for every transport whose ranks map each other's
 * memory (`shm`: each rank's inbox file; `threads`: each rank's arena). A member's cell is the cell of
 * the communicator's key in *its own* region: a member writes only its own cell (its cache lines stay
 * local until a reader pulls them) and reads its peers' cells through the mappings the transport
 * already holds, so no file, name or message is exchanged to set them up.
 *
 * ## Layout
 *
 * A transport reserves {@link COLLECTIVE_CELLS} × {@link CELL_BYTES} bytes (64-byte aligned) in each
 * rank's region. Cell `k` belongs to the communicator with cell key `k`
 * (`lib/collectives/shared-memory.ts`); the owner writes it, the communicator's other members read
 * it. Offsets within a cell:
 *
 * | offset | type | field |
 * |---|---|---|
 * | 0 | i32 | stamp (written after the payload it announces) |
 * | 4 | i32 | presence (the collective call the owner is in) |
 * | 16 | {@link CELL_PAYLOAD_BYTES} bytes | payload buffer 0 (a small one shares the stamp's cache line) |
 * | 16 + {@link CELL_PAYLOAD_BYTES} | {@link CELL_PAYLOAD_BYTES} bytes | payload buffer 1 |
 *
 * ## Waking
 *
 * {@link RegionCollectiveCells.publish} wakes every other member through its transport — a doorbell
 * rung only when the member's waiter flag is up (one load per member when nobody sleeps), exactly as
 * a frame does; the woken member's wait loop then polls, and the transport calls the watched checks
 * ({@link CellWatchers}) on every poll.
 *
 * @module
 */

import type { CollectiveCells } from '../backend.js';

/** Collective cells per region: communicators with a cell key below this get one. */
export const COLLECTIVE_CELLS = 32;
/** Bytes of each of a cell's two payload buffers. */
export const CELL_PAYLOAD_BYTES = 512;
/** Offset of payload buffer 0 in a cell (in the stamp's cache line). */
export const CELL_PAYLOAD_OFFSET = 16;
/** Bytes per cell: the words, two buffers, rounded up to whole cache lines. */
export const CELL_BYTES = Math.ceil((CELL_PAYLOAD_OFFSET + 2 * CELL_PAYLOAD_BYTES) / 64) * 64;
/** Bytes of a region's cells. */
export const CELLS_BYTES = COLLECTIVE_CELLS * CELL_BYTES;

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
export class RegionCollectiveCells implements CollectiveCells {
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

/** A transport's watched checks (see {@link CollectiveCells.watch}), called from its polls. */
export class CellWatchers {
  private readonly checks: (() => boolean)[] = [];

  /** Checks are waiting (a poll calls {@link run} only then: one load when none is). */
  get size(): number {
    return this.checks.length;
  }

  add(check: () => boolean): void {
    this.checks.push(check);
  }

  remove(check: () => boolean): void {
    const i = this.checks.indexOf(check);
    if (i >= 0) this.checks.splice(i, 1);
  }

  /** Calls every check, drops those that completed; returns how many did (they count as delivered frames). */
  run(): number {
    const checks = this.checks;
    let done = 0;
    for (let i = 0; i < checks.length; i++) {
      if (checks[i]()) {
        checks.splice(i--, 1);
        done++;
      }
    }
    return done;
  }

  /**
   * The cells of `members` (world ranks, in the communicator's order) for this rank `self`: each
   * member's from `placeOf`, woken through `wake`; `undefined` when some member has no place (one the
   * transport does not serve).
   */
  cells(members: readonly number[], self: number, placeOf: (member: number) => CellPlace | undefined, wake: (peer: number) => void): RegionCollectiveCells | undefined {
    if (!members.includes(self)) return undefined;
    const places: CellPlace[] = [];
    for (const m of members) {
      const place = placeOf(m);
      if (place === undefined) return undefined;
      places.push(place);
    }
    return new RegionCollectiveCells(places, members, self, {
      wake,
      watch: (check) => this.add(check),
      unwatch: (check) => this.remove(check),
    });
  }
}
