/**
 * Barrier by dissemination (Hensgen, Finkel, Manber 1988): in round k each rank sends an empty
 * message to rank + 2^k and receives one from rank − 2^k (mod size). ⌈log2 size⌉ rounds, any size;
 * no rank leaves before every rank has entered.
 *
 * @module
 */

import type { CollectiveIO } from './io.js';

const EMPTY = new Uint8Array(0);

/**
 * Runs the barrier. With `isLoss`, a round whose peer is lost counts as done (for `finalize`: every
 * live rank still sends in every round, so no live rank waits on a message that will never come);
 * other errors are thrown.
 */
export async function barrierDissemination(io: CollectiveIO, isLoss?: (e: unknown) => boolean): Promise<void> {
  const { rank, size } = io;
  const tolerant = isLoss
    ? (p: PromiseLike<unknown>) =>
        Promise.resolve(p).catch((e: unknown) => {
          if (!isLoss(e)) throw e;
        })
    : (p: PromiseLike<unknown>) => p;
  for (let dist = 1; dist < size; dist <<= 1) {
    const recv = io.recv((rank - dist + size) % size, EMPTY);
    const send = io.send((rank + dist) % size, EMPTY);
    await io.waitAll([tolerant(send), tolerant(recv)]);
  }
}
