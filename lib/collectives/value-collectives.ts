/**
 * Collectives over encoded values (the lowercase API: `bcast`, `gather`, `scatter`, `alltoall`,
 * reductions of plain values). Lengths are not known in advance, so every message is received with
 * `recvBytes`, and a subtree's values travel packed in one message.
 *
 * Trees are binomial over ranks relative to the root (`(rank − root) mod size`): relative rank `v`
 * has parent `v − lowbit(v)` and children `v + 2^k` for `2^k < lowbit(v)`, and its subtree is the
 * contiguous range `v … v + lowbit(v) − 1`, so packed values stay in relative rank order.
 * ⌈log2 size⌉ steps; every byte crosses at most ⌈log2 size⌉ links.
 *
 * @module
 */

import type { CollectiveIO } from './io.js';

/** Packs blobs as `u32 count, u32 length × count, bytes…` (little-endian). */
export function packBlobs(blobs: readonly Uint8Array[]): Uint8Array {
  let total = 4 + 4 * blobs.length;
  for (const b of blobs) total += b.byteLength;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, blobs.length, true);
  let at = 4 + 4 * blobs.length;
  blobs.forEach((b, i) => {
    dv.setUint32(4 + 4 * i, b.byteLength, true);
    out.set(b, at);
    at += b.byteLength;
  });
  return out;
}

/** Inverse of {@link packBlobs}; the blobs are views of `packed`. Throws on a malformed pack. */
export function unpackBlobs(packed: Uint8Array): Uint8Array[] {
  const dv = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
  if (packed.byteLength < 4) throw new Error('packed values: too short');
  const n = dv.getUint32(0, true);
  if (4 + 4 * n > packed.byteLength) throw new Error('packed values: bad count');
  const out: Uint8Array[] = [];
  let at = 4 + 4 * n;
  for (let i = 0; i < n; i++) {
    const len = dv.getUint32(4 + 4 * i, true);
    if (at + len > packed.byteLength) throw new Error('packed values: bad length');
    out.push(packed.subarray(at, at + len));
    at += len;
  }
  return out;
}

function lowbit(v: number, size: number): number {
  return v === 0 ? 1 << Math.ceil(Math.log2(Math.max(size, 1))) : v & -v;
}

/** The root's bytes on every rank (binomial tree). */
export async function bcastBytes(io: CollectiveIO, bytes: Uint8Array | undefined, root: number): Promise<Uint8Array> {
  const { rank, size } = io;
  const v = (rank - root + size) % size;
  const low = lowbit(v, size);
  let data = bytes;
  if (v !== 0) data = await io.recvBytes((v - low + root) % size);
  const sends: PromiseLike<unknown>[] = [];
  for (let m = low >> 1; m >= 1; m >>= 1) if (v + m < size) sends.push(io.send((v + m + root) % size, data!));
  await io.waitAll(sends);
  return data!;
}

/** Every rank's bytes at the root, in rank order (binomial tree); `undefined` elsewhere. */
export async function gatherBytes(io: CollectiveIO, bytes: Uint8Array, root: number): Promise<Uint8Array[] | undefined> {
  const { rank, size } = io;
  const v = (rank - root + size) % size;
  const low = lowbit(v, size);
  const mine: Uint8Array[] = [bytes];
  for (let m = 1; m < low && v + m < size; m <<= 1) {
    mine.push(...unpackBlobs(await io.recvBytes((v + m + root) % size)));
  }
  if (v !== 0) {
    await io.send((v - low + root) % size, packBlobs(mine));
    return undefined;
  }
  // mine is in relative order: relative i is rank (i + root) mod size.
  const out = new Array<Uint8Array>(size);
  for (let i = 0; i < size; i++) out[(i + root) % size] = mine[i];
  return out;
}

/** The root's `blobs[r]` on rank r (binomial tree). */
export async function scatterBytes(io: CollectiveIO, blobs: readonly Uint8Array[] | undefined, root: number): Promise<Uint8Array> {
  const { rank, size } = io;
  const v = (rank - root + size) % size;
  const low = lowbit(v, size);
  // sub[i]: the blob of relative rank v + i, for this rank's subtree.
  let sub: Uint8Array[];
  if (v === 0) sub = Array.from({ length: size }, (_, i) => blobs![(i + root) % size]);
  else sub = unpackBlobs(await io.recvBytes((v - low + root) % size));
  const sends: PromiseLike<unknown>[] = [];
  for (let m = low >> 1; m >= 1; m >>= 1) {
    if (v + m < size) sends.push(io.send((v + m + root) % size, packBlobs(sub.slice(m, Math.min(2 * m, size - v)))));
  }
  await io.waitAll(sends);
  return sub[0];
}

/** `blobs[r]` goes to rank r; returns what each rank sent here, by rank (pairwise exchange). */
export async function alltoallBytes(io: CollectiveIO, blobs: readonly Uint8Array[]): Promise<Uint8Array[]> {
  const { rank, size } = io;
  const out = new Array<Uint8Array>(size);
  out[rank] = blobs[rank];
  for (let k = 1; k < size; k++) {
    const to = (rank + k) % size;
    const from = (rank - k + size) % size;
    const r = io.recvBytes(from);
    await io.waitAll([io.send(to, blobs[to]), r]);
    out[from] = (await r) as Uint8Array;
  }
  return out;
}

/** Every rank's bytes on every rank, by rank (gather to 0, then broadcast the pack). */
export async function allgatherBytes(io: CollectiveIO, bytes: Uint8Array): Promise<Uint8Array[]> {
  const all = await gatherBytes(io, bytes, 0);
  return unpackBlobs(await bcastBytes(io, all ? packBlobs(all) : undefined, 0));
}

/** How values are combined and carried on the value path. */
export interface ValueReduction<T> {
  /** `left op right`, `left` from lower ranks. */
  combine(left: T, right: T): T;
  encode(value: T): Uint8Array;
  decode(bytes: Uint8Array): T;
}

/**
 * The reduction of every rank's value in rank order at the root (binomial tree to relative rank 0 on
 * rank 0's tree, so subtrees are rank ranges; then to the root if it is not 0).
 */
export async function reduceValue<T>(io: CollectiveIO, value: T, ops: ValueReduction<T>, root: number): Promise<T | undefined> {
  const { rank, size } = io;
  const low = lowbit(rank, size);
  let acc = value;
  for (let m = 1; m < low && rank + m < size; m <<= 1) acc = ops.combine(acc, ops.decode(await io.recvBytes(rank + m)));
  if (rank !== 0) await io.send(rank - low, ops.encode(acc));
  if (root === 0) return rank === 0 ? acc : undefined;
  if (rank === 0) await io.send(root, ops.encode(acc));
  if (rank === root) return ops.decode(await io.recvBytes(0));
  return undefined;
}

/**
 * The reduction of every rank's value on every rank, bit-identical everywhere: recursive doubling
 * over the largest power of two ≤ size, the others folded in first (odd ranks among the first 2·rem
 * take their even neighbour's value, so every partial is a contiguous rank range, lower first).
 */
export async function allreduceValue<T>(io: CollectiveIO, value: T, ops: ValueReduction<T>): Promise<T> {
  const { rank, size } = io;
  let pof2 = 1;
  while (pof2 * 2 <= size) pof2 *= 2;
  const rem = size - pof2;
  let acc = value;
  let newRank: number;
  if (rank < 2 * rem) {
    if (rank % 2 === 0) {
      await io.send(rank + 1, ops.encode(acc));
      newRank = -1;
    } else {
      acc = ops.combine(ops.decode(await io.recvBytes(rank - 1)), acc);
      newRank = rank >> 1;
    }
  } else newRank = rank - rem;
  if (newRank >= 0) {
    const real = (nr: number) => (nr < rem ? nr * 2 + 1 : nr + rem);
    for (let mask = 1; mask < pof2; mask <<= 1) {
      const peer = real(newRank ^ mask);
      const r = io.recvBytes(peer);
      await io.waitAll([io.send(peer, ops.encode(acc)), r]);
      const other = ops.decode((await r) as Uint8Array);
      acc = (newRank ^ mask) < newRank ? ops.combine(other, acc) : ops.combine(acc, other);
    }
  }
  if (rank < 2 * rem) {
    if (rank % 2 === 1) await io.send(rank - 1, ops.encode(acc));
    else acc = ops.decode(await io.recvBytes(rank + 1));
  }
  return acc;
}

/**
 * Prefix reductions in rank order (recursive doubling, Hillis–Steele): rank r gets ranks 0…r
 * (inclusive) or 0…r−1 (exclusive; `undefined` on rank 0).
 */
export async function scanValue<T>(io: CollectiveIO, value: T, ops: ValueReduction<T>, exclusive: boolean): Promise<T | undefined> {
  const { rank, size } = io;
  // partial: ranks (rank − covered + 1) … rank; prefix: the exclusive result so far.
  let partial = value;
  let prefix: T | undefined;
  for (let d = 1; d < size; d <<= 1) {
    const sends: PromiseLike<unknown>[] = [];
    if (rank + d < size) sends.push(io.send(rank + d, ops.encode(partial)));
    if (rank - d >= 0) {
      const left = ops.decode(await io.recvBytes(rank - d));
      prefix = prefix === undefined ? left : ops.combine(left, prefix);
      partial = ops.combine(left, partial);
    }
    await io.waitAll(sends);
  }
  return exclusive ? prefix : partial;
}
