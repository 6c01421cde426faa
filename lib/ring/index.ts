/**
 * The shared-memory ring layer: one layout for every transport whose ranks share memory (`threads`,
 * `shm` and `ivshmem`). Pure TypeScript over `SharedArrayBuffer` regions; see each module
 * for its layout.
 *
 * - `region.ts` — regions, alignment, the `CORRUPT` error.
 * - `spsc-ring.ts` — the per-pair single-producer single-consumer ring of frames.
 * - `send-queue.ts` — a producer's frames not yet in its ring.
 * - `inbox.ts` — a rank's doorbell, waiter flag, state and ring announcements.
 * - `ring-channel.ts` — a core `Channel` over a ring and the peer's inbox.
 * - `poller.ts` — polls announced rings with a budget, round-robin.
 * - `waiting.ts` — spin (or yield), then sleep.
 * - `ring-progress.ts` — one look at everything a rank reads (shm's and threads' `poll()` and wait loop).
 * - `collective-cells.ts` — cells in each rank's region for the shared-memory collectives.
 * - `single-copy-control.ts`, `single-copy-sink.ts`, `single-copy-channel.ts` — large payloads copied
 *   once, from the sender's memory into the receiver's target, behind a gate in the ring.
 *
 * @module
 */

export * from './region.js';
export * from './spsc-ring.js';
export * from './send-queue.js';
export * from './inbox.js';
export * from './ring-channel.js';
export * from './poller.js';
export * from './waiting.js';
export * from './ring-progress.js';
export * from './collective-cells.js';
export * from './single-copy-control.js';
export * from './single-copy-sink.js';
export * from './single-copy-channel.js';
