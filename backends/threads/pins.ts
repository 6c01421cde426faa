/**
 * How `threads` moves a single-copy payload (`lib/ring/single-copy-sink.ts` has the protocol): the
 * thread-ranks share one address space, so the receiver copies straight from the sender's buffer with
 * `memcpy` — one copy where the ring takes two, and no kernel (`process_vm_readv` on this machine
 * copies at a third of `memcpy`'s speed). For a payload of {@link HELP_MIN_BYTES} or more the sender
 * copies the second half into the receiver's target at the same time, so both cores copy.
 *
 * A handle is a *pin* of the native addon (`NativeAddon.pin`), never a raw address: a pin holds the
 * view's backing store, so memory V8 owns (every buffer JavaScript makes) stays valid for the copy
 * whatever happens to the JS objects (a buffer transferred away, a worker terminated mid-message),
 * and the addon checks every offset and length against the pinned view. A pin whose thread ended is
 * `ESRCH` (the peer is lost); an offset beyond it `EFAULT` (corrupt).
 *
 * @module
 */

import type { PayloadReader } from '../../lib/ring/single-copy-sink.js';
import type { PayloadWriter } from '../../lib/ring/single-copy-channel.js';
import type { NativeAddon } from '../native/native.js';

type Pins = Pick<NativeAddon, 'pin' | 'unpin' | 'copyFromPin' | 'copyToPin'>;

/** Payloads of at least this many bytes are copied by both threads, a half each. */
export const HELP_MIN_BYTES = 64 * 1024;

/** A pin number read from shared memory: a positive safe integer, else an `EFAULT` for the protocol. */
function pinOf(handle: bigint): number {
  if (handle <= 0n || handle > BigInt(Number.MAX_SAFE_INTEGER)) throw Object.assign(new Error(`${handle} is not a pin`), { code: 'EFAULT' });
  return Number(handle);
}

/** The consumer's side. */
export function pinReader(addon: Pins): PayloadReader {
  return {
    read: (_pid, handle, offset, into) => addon.copyFromPin(pinOf(handle), offset, into),
    targetHandle: (target) => BigInt(addon.pin(target)),
    releaseTarget: (handle) => void addon.unpin(Number(handle)),
    // memcpy has no per-call cost to amortize, unlike process_vm_readv: both threads copy from 64 KiB on
    // (measured: 256 KiB half round trips 37 → 20 µs, 64 KiB no slower than through the ring).
    helpMinBytes: HELP_MIN_BYTES,
    // A pinned target stays valid for a write in progress whatever the receiver does with it.
    handlesHoldMemory: true,
  };
}

/** The producer's side. */
export function pinWriter(addon: Pins, minBytes: number): PayloadWriter {
  return {
    pid: process.pid,
    minBytes,
    handleOf: (payload) => BigInt(addon.pin(payload)),
    release: (handle) => void addon.unpin(Number(handle)),
    write: (handle, offset, from) => addon.copyToPin(pinOf(handle), offset, from),
  };
}
