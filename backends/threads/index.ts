/**
 * @packageDocumentation
 *
 * The `threads` transport: ranks that are worker threads of one process (`vmcomm run --threads`,
 * `--threads-per-process K`) talk through shared memory — Demaine's threads-only MPI, Nemesis-style
 * (priority 80, role `'local'`).
 *
 * - Each rank owns an *arena*, one `SharedArrayBuffer` committed page by page as it is used: its
 *   inbox (doorbell, waiter flag, ring announcements), its collective cells (the shared-memory
 *   allreduce and barrier of a communicator of thread-ranks, `Transport.collectiveCells`) and,
 *   carved on first send, one single-producer single-consumer ring per peer it sends to
 *   (`lib/ring/`).
 * - Same process is **proven**, not assumed: ranks meet on a `BroadcastChannel` named from the job
 *   id (it reaches only threads of this process), exchange their arenas there, and a peer passes
 *   `probe` only if its hello arrived with the nonce its card carries.
 * - Small frames are copied into the ring whole. A payload of `singleCopyMinBytes` (64 KiB) or more
 *   is copied once, from the sender's buffer into the receiver's (`memcpy` between views the native
 *   addon pins, both threads copying a half of a payload of 64 KiB or more; `pins.ts`); without the
 *   addon, or with `singleCopy: false`, it streams through the ring in pieces — no staging copy, no
 *   allocation per message.
 * - The core polls the rings synchronously (`poll()`); in between, the transport polls for an
 *   adaptive budget, then sleeps with `Atomics.waitAsync`; a sender wakes a receiver only when it
 *   sleeps. With more thread-ranks than cores an empty poll calls `sched_yield` (the native addon's,
 *   when it is built; else the wait loop polls once per event-loop turn) instead of spinning.
 *
 * @example
 * Two ranks of one process with hand-made components (the core normally builds all of this; both run
 * on one thread here, so the example allows that):
 *
 * ```ts
 * import { hostname } from 'node:os';
 * import { threads } from './backends/threads/index.js';
 * import { emptyHeader, encodeHeader } from './lib/protocol.js';
 *
 * let arrived!: () => void;
 * const delivered = new Promise<void>((resolve) => (arrived = resolve));
 * const sink = (rank: number) => ({
 *   begin: (peer: number) => (console.log(`rank ${rank}: frame from rank ${peer}`), new Uint8Array(5)),
 *   commit: () => arrived(),
 *   lost: () => {},
 * });
 * const factory = threads({ allowSameThread: true });
 * const [a, b] = [0, 1].map((rank) =>
 *   factory({ rank, size: 2, jobId: 'demo', jobSecret: new Uint8Array(32), processNonce: 'p', address: '127.0.0.1', sink: sink(rank) }),
 * );
 * const fields = await Promise.all([a.start(), b.start()]);
 * const card = (rank: number) =>
 *   ({ rank, processNonce: 'p', hostname: hostname(), pid: process.pid, address: '127.0.0.1', backends: { threads: fields[rank]! }, priorities: { threads: 80 } });
 * console.log(await a.probe(card(1)), await b.probe(card(0)));
 * a.addPeers([1]);
 * b.addPeers([0]);
 *
 * const channel = await a.connect(1);
 * const header = encodeHeader({ ...emptyHeader(), payloadBytes: 5, messageBytes: 5 }, new Uint8Array(48));
 * channel.send(header, new TextEncoder().encode('hello'));
 * await delivered;
 * await Promise.all([a.stop(), b.stop()]);
 * console.log('stopped');
 * ```
 *
 * Output:
 *
 * ```
 * true true
 * rank 1: frame from rank 0
 * stopped
 * ```
 *
 * With the launcher, `npx vmcomm run --threads -n 2 examples/hello.ts` prints (order may vary):
 *
 * ```
 * hello from rank 0 of 2 on myhost (pid 4242) — 0:self 1:threads
 * hello from rank 1 of 2 on myhost (pid 4242) — 0:threads 1:self
 * ```
 *
 * @module
 */

import type { BackendComponents, BackendFactory } from '../../lib/backend.js';
import { parseThreadsInit, type ThreadsInit } from './options.js';
import { ThreadsTransport } from './threads-transport.js';

export { ThreadsTransport } from './threads-transport.js';
export * from './options.js';

/**
 * The threads backend factory. Options are checked here, so a bad one fails before any rank starts.
 *
 * @throws `VmcommError('INVALID_ARGUMENT')` for a bad {@link ThreadsInit}.
 */
export function threads(init?: ThreadsInit): BackendFactory {
  const options = parseThreadsInit(init);
  return Object.assign((components: BackendComponents) => new ThreadsTransport(components, options), {
    transportName: 'threads' as const,
  });
}
