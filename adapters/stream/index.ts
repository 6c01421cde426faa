/**
 * **vmcomm/stream**: socket code over vmcomm. `openStream(comm, peer, { tag })`, called on both
 * ends, gives each a Node `Duplex` connected to the other — `pipe()`, `pipeline()`, `for await`,
 * and Node's own `http` run over it at the speed of the pair's transport (shared memory, threads,
 * ivshmem or tcp), with back-pressure and half-close as on a TCP socket.
 *
 * @example
 * ```ts
 * import { init } from 'vmcomm';
 * import { openStream } from 'vmcomm/stream';
 * import { createReadStream, createWriteStream } from 'node:fs';
 * import { pipeline } from 'node:stream/promises';
 *
 * const comm = await init();                      // npx vmcomm run -n 2 copy.ts
 * // One-way: the reader's end ends when the data does (allowHalfOpen: false, as net.Socket).
 * const s = openStream(comm, 1 - comm.rank, { tag: 7, allowHalfOpen: false });
 * if (comm.rank === 0) await pipeline(createReadStream('big.bin'), s);
 * else await pipeline(s, createWriteStream('copy.bin'));
 * await comm.finalize();
 * ```
 *
 * **Semantics.**
 * - *Matching.* Stream messages travel in the communicator's side context (`comm.sideContext()`), so
 *   they never meet the application's receives (`ANY_TAG` included). Streams to one peer are told
 *   apart by tag; several may be open at once. Opening a (peer, tag) that is open on this rank is
 *   `INVALID_ARGUMENT`; once it is destroyed (`'close'`), it may be opened again at once (the new
 *   stream starts when the old one's last messages are through).
 * - *Connecting.* Writes are buffered until the peer has opened its end too; `'connect'` is emitted
 *   then (`connecting` is true before). There is no connect timeout (use your own timer and
 *   `destroy()`).
 * - *Back-pressure.* The reader grants credits (`windowChunks` messages of at most `chunkBytes`,
 *   default 4 × 1 MiB) as it consumes; a paused reader stops the writer, whose `write()` then returns
 *   false once Node's `writableHighWaterMark` (default `chunkBytes` here) is reached. Memory held per
 *   direction is bounded by the reader's `readableHighWaterMark` plus `windowChunks × chunkBytes`, and
 *   one gather buffer at the writer; an idle stream holds no buffers.
 * - *Copies.* A write that fits in a message is copied into a gather buffer at once (so the next
 *   writes keep coming, small writes share a message) and acknowledged; a longer write is sent from
 *   the writer's own buffer and acknowledged once it has arrived — do not change a buffer before its
 *   write's callback, as with a socket. The reader gets buffers vmcomm filled straight from the
 *   transport.
 * - *Half-close.* `end()` sends FIN after all data: the peer sees `'end'` after the last byte and can
 *   still write back until it ends too (`allowHalfOpen` is true by default; pass false to end the
 *   writable side automatically, like `net.Socket`). `'close'` follows when both directions are done
 *   (and the reader has read `'end'`).
 * - *Reset and close.* `destroy(err)` tells the peer, whose stream errors with a `VmcommError`
 *   `ABORTED` whose message starts with `ECONNRESET` (and carries `err.message`). `destroy()` without
 *   an error closes this end: the peer reads what was already sent, then `'end'`, and its end closes
 *   too — unless it still had data to send, which fails with `ABORTED` (`EPIPE`). Data in flight is
 *   absorbed, never left in vmcomm's queues.
 * - *Failures.* A lost peer (`PEER_LOST`), a finalized world (`FINALIZED`) or a freed communicator
 *   fail a stream that is not over with that error; nothing hangs. A communicator whose collectives
 *   were revoked keeps its streams (they are point-to-point). Close streams before `finalize()`: one
 *   still open then emits `'error'`.
 * - *Timeouts* are the program's, as with sockets: `setTimeout(ms)` emits `'timeout'` after `ms`
 *   without traffic and leaves the stream open. A peer that never opens its end is like a host that
 *   never answers: writes wait (`connecting` stays true).
 *
 * **For `http` and other socket code.** `server.emit('connection', stream)` on one rank and
 * `http.request({ createConnection: () => stream, … })` (or an `http.Agent` whose `createConnection`
 * returns it, for keep-alive) on the other. The stream has the members http uses on a socket:
 * `setTimeout` (a real idle timer, as above; http's server uses it for `keepAliveTimeout`),
 * `timeout`, `setNoDelay`, `setKeepAlive`, `ref`, `unref` (no-ops), `connecting` and `'connect'`, and
 * `bytesRead`/`bytesWritten`. It has no `remoteAddress`: `peer` (a rank) and `tag` say who is at the
 * other end.
 *
 * @module vmcomm/stream
 */

import type { DuplexOptions } from 'node:stream';
import { VmcommError, type Communicator } from 'vmcomm';
import { DEFAULT_CHUNK_BYTES, DEFAULT_WINDOW_CHUNKS, MAX_CHUNK_BYTES, MAX_WINDOW_CHUNKS, STREAM_TAG_UB } from './protocol.js';
import { VmcommStream } from './stream.js';

export { VmcommStream } from './stream.js';
export { STREAM_TAG_UB, DEFAULT_CHUNK_BYTES, DEFAULT_WINDOW_CHUNKS } from './protocol.js';

/** Options of {@link openStream}. Every field is optional; both ends should pass the same `tag`. */
export interface StreamOptions {
  /** Tells streams to the same peer apart: 0 … {@link STREAM_TAG_UB} (default 0). Both ends use the same. */
  tag?: number;
  /**
   * Largest data message this end receives, in bytes (default {@link DEFAULT_CHUNK_BYTES}); the
   * peer cuts its writes to it. Also the largest chunk this end's reader gets.
   */
  chunkBytes?: number;
  /** Data messages this end lets the peer have in flight (default {@link DEFAULT_WINDOW_CHUNKS}). */
  windowChunks?: number;
  /** Keep the writable side open after `'end'` (default true; false ends it too, like `net.Socket`). */
  allowHalfOpen?: boolean;
  /** Node's `highWaterMark` for both sides (bytes). */
  highWaterMark?: number;
  /** Node's `readableHighWaterMark` (bytes buffered for the reader before credits stop). */
  readableHighWaterMark?: number;
  /** Node's `writableHighWaterMark` (bytes buffered before `write()` returns false; default `chunkBytes`). */
  writableHighWaterMark?: number;
}

const KNOWN_OPTIONS = new Set(['tag', 'chunkBytes', 'windowChunks', 'allowHalfOpen', 'highWaterMark', 'readableHighWaterMark', 'writableHighWaterMark']);

/** Open streams and the last incarnation of each (peer, tag), per side communicator. */
interface Slot {
  open: VmcommStream | undefined;
  /** Resolves when the last stream opened here has let go of its messages. */
  tail: Promise<void> | undefined;
}
const slots = new WeakMap<Communicator, Map<string, Slot>>();

/**
 * Opens a stream to `peer`: a Node `Duplex` whose writes the peer reads and whose reads are what
 * the peer writes. Called on both ranks (each naming the other, with the same `tag`). See the
 * module documentation for back-pressure, half-close, errors and use with `http`.
 *
 * @param comm any communicator (the stream uses its side context, never its own traffic)
 * @param peer the other rank, in `comm`
 * @throws VmcommError `INVALID_ARGUMENT` (naming `comm`, `peer`, `tag` or the option) for a bad
 *   argument or a (peer, tag) already open on this rank; `FINALIZED` after `finalize()`
 */
export function openStream(comm: Communicator, peer: number, options: StreamOptions = {}): VmcommStream {
  if (!isCommunicator(comm)) throw invalidArgument('comm', 'a Communicator (from init(), split(), dup() …)', comm);
  if (!(typeof peer === 'number' && Number.isInteger(peer) && peer >= 0 && peer < comm.size)) throw invalidArgument('peer', `a rank from 0 to ${comm.size - 1}`, peer);
  if (peer === comm.rank) throw new VmcommError('INVALID_ARGUMENT', `peer must be another rank: a stream joins two ranks (this is rank ${peer}; in one rank, use node:stream's duplexPair)`);
  if (options === null || typeof options !== 'object') throw invalidArgument('options', 'an object { tag?, chunkBytes?, windowChunks?, … }', options);
  for (const k of Object.keys(options)) if (!KNOWN_OPTIONS.has(k)) throw new VmcommError('INVALID_ARGUMENT', `unknown openStream() option "${k}" (known: ${[...KNOWN_OPTIONS].join(', ')})`);
  const tag = options.tag ?? 0;
  if (!(typeof tag === 'number' && Number.isInteger(tag) && tag >= 0 && tag <= STREAM_TAG_UB)) throw invalidArgument('tag', `a whole number from 0 to ${STREAM_TAG_UB}`, tag);
  const chunkBytes = whole('chunkBytes', options.chunkBytes, DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES);
  const windowChunks = whole('windowChunks', options.windowChunks, DEFAULT_WINDOW_CHUNKS, MAX_WINDOW_CHUNKS);
  // Node's default (16 KiB) would hand the stream one write at a time; a message's worth lets writes
  // gather while the previous ones travel (a socket's kernel buffer does that job for net.Socket).
  const duplex: DuplexOptions = options.highWaterMark === undefined && options.writableHighWaterMark === undefined ? { writableHighWaterMark: chunkBytes } : {};
  if (options.allowHalfOpen !== undefined) {
    if (typeof options.allowHalfOpen !== 'boolean') throw invalidArgument('allowHalfOpen', 'a boolean', options.allowHalfOpen);
    duplex.allowHalfOpen = options.allowHalfOpen;
  }
  for (const k of ['highWaterMark', 'readableHighWaterMark', 'writableHighWaterMark'] as const) {
    const v = options[k];
    if (v === undefined) continue;
    if (!(typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)) throw invalidArgument(k, 'a whole number of bytes ≥ 0', v);
    duplex[k] = v;
  }

  const side = comm.sideContext(); // throws FINALIZED / INVALID_ARGUMENT (freed) synchronously
  let table = slots.get(side);
  if (!table) slots.set(side, (table = new Map()));
  const key = `${peer}/${tag}`;
  let slot = table.get(key);
  if (slot?.open) throw new VmcommError('INVALID_ARGUMENT', `a stream to rank ${peer} with tag ${tag} is already open on this rank; destroy it first or use another tag`);
  if (!slot) table.set(key, (slot = { open: undefined, tail: undefined }));
  const s = slot;
  let released = false;
  // The slot goes when its last stream is both destroyed and through with its messages.
  const tidy = () => {
    if (released && s.open === undefined && s.tail === stream.released && table.get(key) === s) table.delete(key);
  };
  const stream = new VmcommStream({
    side,
    peer,
    tag,
    chunkBytes,
    windowChunks,
    duplex,
    onDestroyed: () => {
      if (s.open === stream) s.open = undefined;
      tidy();
    },
  });
  s.open = stream;
  const previous = s.tail;
  s.tail = stream.released;
  void stream.released.then(() => {
    released = true;
    tidy();
  });
  // The previous stream on this (peer, tag) must be through first, or its messages could meet this one's.
  if (previous) void previous.then(() => stream.start());
  else stream.start();
  return stream;
}

/** A duck-typed check (works across copies of the module). */
function isCommunicator(c: unknown): c is Communicator {
  const x = c as Partial<Communicator> | null;
  return typeof x === 'object' && x !== null && typeof x.sideContext === 'function' && typeof x.isendBuffer === 'function' && typeof x.rank === 'number' && typeof x.size === 'number';
}

function whole(name: string, v: unknown, fallback: number, max: number): number {
  if (v === undefined) return fallback;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 1 && v <= max) return v;
  throw invalidArgument(name, `a whole number from 1 to ${max}`, v);
}

/** A bad argument, named, with what was expected. */
function invalidArgument(what: string, expected: string, got: unknown): VmcommError {
  const shown = typeof got === 'string' ? JSON.stringify(got) : got === null || typeof got !== 'object' ? String(got) : Object.prototype.toString.call(got);
  return new VmcommError('INVALID_ARGUMENT', `${what} must be ${expected}, got ${shown}`);
}
