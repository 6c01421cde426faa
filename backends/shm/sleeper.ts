/**
 * The shm transport's {@link Sleeper} for the ring layer's `WaitingPolicy`: a futex wait on this
 * rank's inbox doorbell, slept by the addon's waiter thread so the event loop never blocks. A peer
 * that publishes while the waiter flag is up lowers it (one peer per sleep: `lib/ring/inbox.ts`),
 * increments the doorbell and calls `futexWake` on the same word of its own mapping of the file (a
 * shared futex: any process that maps it can wake it); the waiter thread then runs the policy's
 * wake-up on this rank's event loop.
 *
 * Every wait has a timeout, so that a rank waiting on a peer that died without a word (SIGKILL) gets
 * to check it (`lib/ring/single-copy-channel.ts`): short while a channel waits on its reader, long when idle.
 *
 * @module
 */

import type { Inbox } from '../../lib/ring/inbox.js';
import type { Sleeper } from '../../lib/ring/waiting.js';
import type { NativeWaiter } from '../native/native.js';

/** Where the doorbell is and how to sleep on it. */
export interface FutexSleeperOptions {
  /** This rank's inbox (its waiter flag and doorbell). */
  readonly inbox: Inbox;
  /** The mapping of the inbox file. */
  readonly sab: SharedArrayBuffer;
  /** The doorbell word's byte offset in `sab`. */
  readonly doorbellByteOffset: number;
  /** The addon's waiter thread of this transport. */
  readonly waiter: NativeWaiter;
  /** The timeout of the next sleep, in ms (−1: none). */
  readonly timeoutMs: () => number;
}

/** The longest sleep after the kernel refused a futex wait: a doorbell rung meanwhile waits this long at most. */
const FAILED_WAIT_MS = 10;

/** A {@link Sleeper} over a futex on the inbox doorbell. */
export function futexSleeper(options: FutexSleeperOptions): Sleeper {
  const { inbox, sab, doorbellByteOffset, waiter, timeoutMs } = options;
  return {
    prepare: () => inbox.prepareToSleep(),
    cancel: () => inbox.clearWaiter(),
    sleep: (token, wake) => {
      const timeout = timeoutMs();
      try {
        // 'failed': the kernel refused the wait on the doorbell, and would again at once. A timer
        // instead, short (a doorbell rung meanwhile is not heard): the next sleep tries the futex
        // again, at most every 10 ms, where re-arming at once was a busy loop.
        waiter.wait(sab, doorbellByteOffset, token, timeout, (result) => {
          if (result === 'failed') setTimeout(wake, timeout < 0 ? FAILED_WAIT_MS : Math.min(timeout, FAILED_WAIT_MS)).unref();
          else wake();
        });
      } catch {
        // The waiter was closed (the transport is stopping) or refused: poll again later instead.
        setTimeout(wake, timeout < 0 ? 1_000 : timeout).unref();
      }
    },
  };
}
