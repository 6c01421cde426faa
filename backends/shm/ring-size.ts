/**
 * How big a ring the shm transport makes when the application does not say (`ringBytes: 0`).
 *
 * @module
 */

/** {@link autoRingBytes}' ring size for jobs of up to 17 ranks, and its largest. */
export const MAX_AUTO_RING_BYTES = 256 * 1024;
/** {@link autoRingBytes}' smallest ring. */
export const MIN_AUTO_RING_BYTES = 64 * 1024;
/** What {@link autoRingBytes} lets one rank's outbound rings take in all, when it talks to every peer. */
export const AUTO_RING_BUDGET_BYTES = 4 * 1024 * 1024;

/**
 * The ring size for a job of `size` ranks: 256 KiB up to 17 ranks, then smaller so that a rank's
 * rings to all its peers stay within {@link AUTO_RING_BUDGET_BYTES} (a power of two, at least
 * 64 KiB). Rings are per ordered pair and opened on first use, so a job where every rank talks to
 * every other has N·(N−1) of them: at 64 ranks, 4032 rings of 64 KiB (252 MiB) instead of 1 GiB.
 * Large messages go by single copy or are pipelined through the ring, so a smaller ring costs
 * little bandwidth.
 */
export function autoRingBytes(size: number): number {
  const share = AUTO_RING_BUDGET_BYTES / Math.max(1, size - 1);
  let bytes = MAX_AUTO_RING_BYTES;
  while (bytes > share && bytes > MIN_AUTO_RING_BYTES) bytes /= 2;
  return bytes;
}
