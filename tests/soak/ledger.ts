// What the soak's receiver keeps per sender: the messages it has seen, in what order, and whether
// their contents are intact. Pure, so tests/unit/soak-ledger.test.ts can feed it lost, duplicated,
// reordered and damaged messages and show that each is counted.

/** Bytes of the header: magic, source, sequence number, length, payload checksum (u32 each). */
export const HEADER_BYTES = 20;
const MAGIC = 0x534f414b;

/** Payload word `i` of message `seq` from `src`. */
const word = (src: number, seq: number, i: number) => (Math.imul(src + 1, 0x9e3779b1) ^ Math.imul(seq + 1, 0x85ebca6b) ^ Math.imul(i + 1, 0xc2b2ae35)) >>> 0;

/** Message `seq` from `src`, `bytes` long (a multiple of 4, at least the header). */
export function makeMessage(src: number, seq: number, bytes: number): Uint8Array {
  const m = new Uint8Array(bytes);
  const w = new Uint32Array(m.buffer);
  let sum = 0;
  for (let i = 5; i < w.length; i++) {
    w[i] = word(src, seq, i);
    sum = (sum + w[i]) >>> 0;
  }
  w[0] = MAGIC;
  w[1] = src;
  w[2] = seq;
  w[3] = bytes;
  w[4] = sum;
  return m;
}

/** Counts per receiver; every field but `messages` and `bytes` must end at 0. */
export class Ledger {
  messages = 0;
  bytes = 0;
  duplicated = 0;
  reordered = 0;
  corrupt = 0;
  readonly #next: number[];
  readonly #seen: Set<number>[];

  constructor(readonly size: number) {
    this.#next = new Array<number>(size).fill(0);
    this.#seen = Array.from({ length: size }, () => new Set<number>());
  }

  /** Records a message received from `source` (as the transport said), its bytes in `data`. */
  record(data: Uint8Array, source: number): void {
    const w = new Uint32Array(data.buffer, data.byteOffset, data.byteLength >> 2);
    const src = w[1];
    const seq = w[2];
    this.messages++;
    this.bytes += data.byteLength;
    if (data.byteLength < HEADER_BYTES || data.byteLength % 4 !== 0 || w[0] !== MAGIC || w[3] !== data.byteLength || src !== source || src >= this.size) {
      this.corrupt++;
      return;
    }
    let sum = 0;
    let intact = true;
    for (let i = 5; i < w.length; i++) {
      if (w[i] !== word(src, seq, i)) intact = false;
      sum = (sum + w[i]) >>> 0;
    }
    if (!intact || sum !== w[4]) this.corrupt++;
    if (this.#seen[src].has(seq)) this.duplicated++;
    else {
      this.#seen[src].add(seq);
      // Messages of one sender match the same receive (ANY_SOURCE, ANY_TAG), so MPI's
      // non-overtaking rule says they arrive in the order sent.
      if (seq < this.#next[src]) this.reordered++;
    }
    this.#next[src] = Math.max(this.#next[src], seq + 1);
  }

  /** Distinct messages seen from `src`. */
  received(src: number): number {
    return this.#seen[src].size;
  }

  /** Messages `src` said it sent (`expected[src]`) that never came. */
  lost(expected: ArrayLike<number>): number {
    let lost = 0;
    for (let s = 0; s < this.size; s++) lost += Math.max(0, expected[s] - this.#seen[s].size);
    return lost;
  }
}
