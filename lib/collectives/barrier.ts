/**
 * Barrier by dissemination (Hensgen, Finkel, Manber 1988): in round k each rank sends to
 * rank + 2^k and receives from rank − 2^k (mod size). ⌈log2 size⌉ rounds, any size.
 *
 * @module
 */

/**
 * Runs the dissemination pattern. `start(round, peer, isSend)` starts one zero-byte send or receive
 * and returns something awaitable; `block` awaits it (honouring the caller's options).
 */
export async function dissemination<R>(size: number, rank: number, start: (round: number, peer: number, isSend: boolean) => R, block: (r: R) => Promise<unknown>): Promise<void> {
  for (let round = 0, dist = 1; dist < size; round++, dist <<= 1) {
    const recv = start(round, (rank - dist + size) % size, false);
    const send = start(round, (rank + dist) % size, true);
    await Promise.all([block(send), block(recv)]);
  }
}

/**
 * The same pattern, surviving lost ranks (for `finalize`): a step that fails because its peer is
 * lost counts as done, and every live rank still sends in every round, so no live rank waits on a
 * message that will never come. `isLoss` tells a peer loss from any other error (which is thrown).
 */
export async function disseminationSurvivingLoss<R>(size: number, rank: number, start: (round: number, peer: number, isSend: boolean) => R, block: (r: R) => Promise<unknown>, isLoss: (e: unknown) => boolean): Promise<void> {
  const tolerant = (r: R) => block(r).catch((e) => {
    if (!isLoss(e)) throw e;
  });
  await dissemination(size, rank, start, tolerant);
}
