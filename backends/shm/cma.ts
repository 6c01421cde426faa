/**
 * How `shm` moves a single-copy payload (`lib/ring/single-copy-sink.ts` has the protocol): by
 * cross-memory attach, the kernel's `process_vm_readv`/`process_vm_writev` between the two processes
 * (LiMIC's idea). A handle is a plain address in the producer's process (for a read) or the
 * consumer's (for the half the producer writes); nothing is released: the sender keeps its buffer
 * until the reader answers, and the reader keeps its target until the frame is done. A reader that
 * gives a frame up (its receive failed) withdraws the half it asked for; the sender checks before
 * each piece, so at most the piece it is writing (≤ 2 MiB) still lands in that receive buffer, which
 * the reader keeps referenced (so not collected and reused) until the peer's next single-copy frame
 * or the transport stops.
 *
 * Only between ranks of one PID namespace, whose cards say both allow CMA (the transport checks); a
 * kernel that refuses (`EPERM`: another user, Yama; `ENOTSUP`: `VMCOMM_CMA=0`) makes the protocol
 * fall back to the ring for that peer.
 *
 * @module
 */

import type { PayloadReader } from '../../lib/ring/single-copy-sink.js';
import type { PayloadWriter } from '../../lib/ring/single-copy-channel.js';
import type { NativeAddon } from '../native/native.js';

/** The consumer's side: reads from the producer's process. */
export function cmaReader(addon: Pick<NativeAddon, 'cmaRead' | 'addressOf'>): PayloadReader {
  return {
    read: (pid, handle, offset, into) => addon.cmaRead(pid, offset === 0 ? handle : handle + BigInt(offset), into),
    targetHandle: (target) => addon.addressOf(target),
    releaseTarget: () => {},
  };
}

/** The producer's side towards a reader in process `readerPid`. */
export function cmaWriter(addon: Pick<NativeAddon, 'cmaWrite' | 'addressOf'>, minBytes: number, readerPid: number): PayloadWriter {
  return {
    pid: process.pid,
    minBytes,
    handleOf: (payload) => addon.addressOf(payload),
    release: () => {},
    write: (handle, offset, from) => addon.cmaWrite(readerPid, handle + BigInt(offset), from),
  };
}
