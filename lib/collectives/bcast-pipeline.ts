/**
 * Segmented pipelined broadcast. The message is cut into segments of `segmentBytes`; with ranks
 * numbered relative to the root, each rank receives segment k from its parent and forwards it to its
 * children while segment k + 1 is still arriving. Two shapes:
 *
 * - `chain` (default): 0 → 1 → … → p − 1. Cost (p − 2 + S)(α + sβ) for S = ⌈n/s⌉ segments of s bytes,
 *   i.e. ≈ nβ + (p − 2) sβ + (S + p) α: every link carries the message once, so for n ≫ p·s it
 *   approaches nβ, the lower bound, against ≈ 2nβ for scatter + allgather.
 * - `binary`: a complete binary tree (children 2v + 1, 2v + 2). Each rank sends every segment twice,
 *   so ≈ 2(S + log2 p)(α + sβ): half the chain's bandwidth, but depth log2 p instead of p, so it
 *   wins when p is large and n only moderately larger than p·s.
 *
 * Wins: very long messages, n > p · segmentBytes (beyond that the chain's fill time (p − 2) sβ is
 * repaid by its ≈ nβ steady state), at any p ≥ 3. Loses badly when n ≤ segmentBytes: the chain is
 * then p − 1 full hops in a row. All receives are posted up front into `data`, so segments land in
 * place without staging copies (S posted receives per rank: 8192 for 1 GiB at the default).
 *
 * @module
 */

import { VmcommError } from '../errors.js';
import type { CollectiveIO } from './io.js';
import { quiet, relativeIO } from './layout.js';

/** Default segment length of {@link bcastPipeline}: 128 KiB, long enough to amortize α, short enough to fill the pipe fast. */
export const DEFAULT_PIPELINE_SEGMENT_BYTES = 128 * 1024;

/** Tree along which {@link bcastPipeline} forwards segments. */
export type PipelineShape = 'chain' | 'binary';

/**
 * Broadcasts `data` from `root` by a segmented pipeline. `data` holds the message at the root on
 * entry and at every rank on exit; every rank passes the same length, `segmentBytes` and `shape`.
 *
 * @param segmentBytes Segment length in bytes (a positive integer; default 128 KiB).
 * @param shape `chain` (bandwidth-optimal, default) or `binary` (shallower).
 */
export async function bcastPipeline(
  io: CollectiveIO,
  data: Uint8Array,
  root: number,
  segmentBytes: number = DEFAULT_PIPELINE_SEGMENT_BYTES,
  shape: PipelineShape = 'chain',
): Promise<void> {
  if (!Number.isSafeInteger(segmentBytes) || segmentBytes <= 0) throw new VmcommError('INVALID_ARGUMENT', `bcast pipeline: segmentBytes must be a positive integer, got ${segmentBytes}`);
  const size = io.size;
  const n = data.byteLength;
  if (size === 1 || n === 0) return;
  const rio = relativeIO(io, root);
  const me = rio.rank;
  let parent: number;
  let children: number[];
  if (shape === 'chain') {
    parent = me - 1;
    children = me + 1 < size ? [me + 1] : [];
  } else {
    parent = (me - 1) >> 1;
    children = [2 * me + 1, 2 * me + 2].filter((c) => c < size);
  }
  const segments = Math.ceil(n / segmentBytes);
  const segment = (k: number) => data.subarray(k * segmentBytes, Math.min(n, (k + 1) * segmentBytes));

  // Post every receive at once (in order, as the parent sends): each segment lands in place the
  // moment it arrives, whatever this rank is doing.
  const recvs = me === 0 ? [] : Array.from({ length: segments }, (_, k) => quiet(rio.recv(parent, segment(k))));
  if (children.length === 0) {
    await rio.waitAll(recvs);
    return;
  }
  const sends: PromiseLike<void>[] = [];
  for (let k = 0; k < segments; k++) {
    if (me !== 0) await rio.waitAll([recvs[k]]);
    // Forward without waiting for the send: the segment is never written again, and waiting would
    // stall the next segment's forwarding behind this one's delivery.
    for (const child of children) sends.push(quiet(rio.send(child, segment(k))));
  }
  await rio.waitAll(sends);
}
