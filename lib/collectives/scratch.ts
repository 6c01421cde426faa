/**
 * Scratch memory for the collective algorithms, reused from call to call.
 *
 * Why: a large collective needs a scratch buffer as big as (half) its vector, and a fresh
 * `ArrayBuffer` per call is expensive twice over — its pages are faulted in and zeroed on first touch
 * (by the peer's single-copy write, too), and V8 counts the external memory it holds, so a loop of
 * 1 MiB allreduces runs a major GC every few calls. Measured on a 131,072-double allreduce between
 * two ranks: about 35% of the time was marking and sweeping and the mean call was 4× the typical one.
 *
 * Rules that keep reuse safe:
 * - A buffer's contents are undefined when taken (not zeroed): the algorithms receive into scratch
 *   before they read it.
 * - A buffer goes back only when its call completed, so every receive into it has ended. A call that
 *   failed drops its scratch (a withdrawn or revoked step may still be writing into it), and the
 *   garbage collector takes it.
 * - Small buffers are not pooled (they are cheap), nor buffers larger than the pool may hold (they
 *   are allocated at their exact size); the pool holds a few buffers per power-of-two size and at
 *   most {@link MAX_POOLED_BYTES} in all.
 *
 * @module
 */

/** Below this, a scratch buffer is simply allocated. */
const MIN_POOLED_BYTES = 64 * 1024;
/** The pool never holds more than this in all. */
const MAX_POOLED_BYTES = 64 * 1024 * 1024;
/** Buffers kept per size class (concurrent nonblocking collectives each take one). */
const PER_CLASS = 4;

const free = new Map<number, ArrayBuffer[]>();
let pooledBytes = 0;

/** The size class of `bytes`: the next power of two. */
function classOf(bytes: number): number {
  return 2 ** Math.ceil(Math.log2(bytes));
}

/** `bytes` of scratch (contents undefined). Give it back with {@link giveScratch} once its call completed. */
export function takeScratch(bytes: number): Uint8Array {
  // Beyond what the pool may hold, rounding up to a power of two would only waste memory.
  if (bytes < MIN_POOLED_BYTES || bytes > MAX_POOLED_BYTES) return new Uint8Array(bytes);
  const size = classOf(bytes);
  const buffer = free.get(size)?.pop();
  if (buffer === undefined) return new Uint8Array(new ArrayBuffer(size), 0, bytes);
  pooledBytes -= size;
  return new Uint8Array(buffer, 0, bytes);
}

/** Returns scratch taken by {@link takeScratch} after the call that used it completed. */
export function giveScratch(scratch: Uint8Array): void {
  const buffer = scratch.buffer as ArrayBuffer;
  const size = buffer.byteLength;
  // Only whole buffers of a class that this pool made (small ones, and views of other memory, are not).
  if (size < MIN_POOLED_BYTES || size !== classOf(size) || scratch.byteOffset !== 0 || buffer instanceof SharedArrayBuffer) return;
  if (pooledBytes + size > MAX_POOLED_BYTES) return;
  let list = free.get(size);
  if (list === undefined) free.set(size, (list = []));
  if (list.length >= PER_CLASS || list.includes(buffer)) return;
  list.push(buffer);
  pooledBytes += size;
}

/** Bytes the pool holds now (for tests). */
export function pooledScratchBytes(): number {
  return pooledBytes;
}
