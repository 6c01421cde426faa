/**
 * Heartbeats written off the main thread. A member's heartbeat word must keep moving while its
 * process lives, whatever its main thread does — a long computation, a GC pause, a blocking call —
 * or peers would take it for dead; and it must stop when the process dies. So a worker thread bumps
 * it: one small worker per thread of the program (shared by every member that thread registers,
 * one timer per interval), given the region's `SharedArrayBuffer` (the addon's mapping: V8 shares
 * its backing store with the worker; nothing is mapped twice).
 *
 * Each beat does, per member, what `RegionMember.beat` does: checks that the header's magic and
 * checksum are those it opened (else `'corrupt'`: re-formatted or overwritten), that the slot's
 * control word is still this member's, ACTIVE with its generation (else `'lost'`: the slot was
 * reclaimed), increments the heartbeat word, and checks that the region is neither revoked nor
 * restored since the member joined (`'revoked'`). A reported member is not beaten again.
 *
 * The worker's code is self-contained (evaluated from a string): it knows no layout, only the word
 * indices computed here from the validated layout (`heartbeatTarget`). The worker is unreferenced:
 * it never keeps a process alive, and it ends with its process — which is what makes a dead process's
 * heartbeat stop. Once started it stays, idle when it has nobody to beat.
 *
 * A worker takes tens of milliseconds to start (more on a loaded host), so the transport also beats
 * from its main thread, on its peer-watch timer: the heartbeat moves from the moment the member
 * joined, and keeps moving should the worker fail; the worker is what keeps it moving while the main
 * thread is busy.
 *
 * @module
 */

import { Worker } from 'node:worker_threads';
import { HeaderField, packControl, SLOT_BYTES, SlotField, SlotState, REGION_MAGIC } from './region-layout.js';
import type { RegionMember } from './region.js';

/**
 * What the heartbeat thread found about a member (after which it no longer looks at it): wrong —
 * `'lost'`, `'revoked'`, `'corrupt'` — or, for a member only watched ({@link startHeartbeat}'s
 * `watchOnly`: one that left a revoked region), `'restored'`: the region is no longer revoked.
 */
export type HeartbeatEvent = 'lost' | 'revoked' | 'corrupt' | 'restored';

/** Where one member's words are, for the heartbeat thread: word indices into `words` words from `byteOffset`. */
export interface HeartbeatTarget {
  readonly sab: SharedArrayBuffer;
  readonly byteOffset: number;
  /** Words of the view (the header and tables). */
  readonly words: number;
  readonly control: number;
  readonly expectedControl: number;
  readonly heartbeat: number;
  readonly magic: number;
  readonly expectedMagic: number;
  readonly checksum: number;
  readonly expectedChecksum: number;
  readonly revoked: number;
  readonly generation: number;
  readonly joinedGeneration: number;
}

/** The words the heartbeat thread needs for `member`, from its region's validated layout. */
export function heartbeatTarget(member: RegionMember): HeartbeatTarget {
  const { header } = member.region;
  const { slot, generation, regionGeneration } = member.ref;
  const slotWord = (field: number) => (header.layout.slotTableOffset + slot * SLOT_BYTES + field) >> 2;
  return {
    sab: header.region.sab,
    byteOffset: header.region.byteOffset,
    words: header.meta.length,
    control: slotWord(SlotField.CONTROL),
    expectedControl: packControl(SlotState.ACTIVE, generation),
    heartbeat: slotWord(SlotField.HEARTBEAT),
    magic: HeaderField.MAGIC >> 2,
    expectedMagic: REGION_MAGIC | 0,
    checksum: HeaderField.CHECKSUM >> 2,
    expectedChecksum: header.checksum | 0,
    revoked: HeaderField.REVOKED >> 2,
    generation: HeaderField.GENERATION >> 2,
    joinedGeneration: regionGeneration | 0,
  };
}

/** A registered member; {@link stop} ends its heartbeat. */
export interface HeartbeatHandle {
  /** Stops beating this member (the thread may beat it once more meanwhile). Idempotent. */
  stop(): void;
}

/** The worker's program (CommonJS, evaluated). Messages: `{ add: id, target, intervalMs }`, `{ remove: id }`. */
const WORKER_SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const groups = new Map(); // intervalMs -> { timer, members: Map<id, member> }
function beatOne(members, id, m) {
  const w = m.w;
  // The header first: a region being re-formatted zeroes its tables too, which is not a reclaim.
  if (Atomics.load(w, m.magic) !== m.expectedMagic || Atomics.load(w, m.checksum) !== m.expectedChecksum) return report(members, id, 'corrupt');
  if (m.watchOnly) {
    if (Atomics.load(w, m.revoked) === 0 && Atomics.load(w, m.generation) !== m.joinedGeneration) report(members, id, 'restored');
    return;
  }
  if (Atomics.load(w, m.control) !== m.expectedControl) return report(members, id, 'lost');
  Atomics.add(w, m.heartbeat, 1);
  if (Atomics.load(w, m.revoked) !== 0 || Atomics.load(w, m.generation) !== m.joinedGeneration) report(members, id, 'revoked');
}
function beat(members) {
  for (const [id, m] of members) beatOne(members, id, m);
}
function report(members, id, event) {
  members.delete(id);
  parentPort.postMessage({ id, event });
}
parentPort.postMessage({ ready: true });
parentPort.on('message', (msg) => {
  if (msg.add !== undefined) {
    const t = msg.target;
    let g = groups.get(msg.intervalMs);
    if (g === undefined) {
      const members = new Map();
      g = { members, timer: setInterval(() => beat(members), msg.intervalMs) };
      groups.set(msg.intervalMs, g);
    }
    const m = { ...t, watchOnly: msg.watchOnly === true, w: new Int32Array(t.sab, t.byteOffset, t.words) };
    g.members.set(msg.add, m);
    beatOne(g.members, msg.add, m);
  } else if (msg.remove !== undefined) {
    for (const [ms, g] of groups) {
      if (!g.members.delete(msg.remove) || g.members.size > 0) continue;
      clearInterval(g.timer);
      groups.delete(ms);
    }
  }
});
`;

interface Registration {
  readonly target: HeartbeatTarget;
  readonly intervalMs: number;
  readonly watchOnly: boolean;
  readonly onEvent: (event: HeartbeatEvent) => void;
}

/** The heartbeat thread of this JavaScript thread, and who it beats. */
let worker: Worker | undefined;
const registrations = new Map<number, Registration>();
let nextId = 1;

/** Heartbeat threads started per JavaScript thread at most (one, plus replacements of failed ones). */
const MAX_THREADS = 4;

/** Counters of heartbeat threads (diagnostics, tests). */
const stats = { spawned: 0, ready: 0, errors: 0, lastError: '' };

function spawn(): Worker {
  stats.spawned++;
  // No inherited Node options (loaders, preloads): the program above needs nothing, and starts fast.
  const w = new Worker(WORKER_SOURCE, { eval: true, name: 'vmcomm-ivshmem-heartbeat', execArgv: [], stdout: false, stderr: false });
  w.on('message', (msg: { id: number; event: HeartbeatEvent } | { ready: true }) => {
    if ('ready' in msg) {
      stats.ready++;
      return;
    }
    const r = registrations.get(msg.id);
    if (r === undefined) return;
    registrations.delete(msg.id);
    r.onEvent(msg.event);
  });
  // A heartbeat thread that failed (it should not) is replaced (a few times), so live members keep beating.
  w.on('error', (error) => {
    stats.errors++;
    stats.lastError = error instanceof Error ? error.message : String(error);
  });
  w.on('exit', () => {
    if (worker !== w) return;
    worker = undefined;
    // Bounded: a thread that cannot run leaves the beating to the main threads' timers.
    if (registrations.size === 0 || stats.spawned >= MAX_THREADS) return;
    const again = spawn();
    worker = again;
    for (const [id, r] of registrations) again.postMessage({ add: id, target: r.target, intervalMs: r.intervalMs, watchOnly: r.watchOnly });
  });
  // Last: attaching a 'message' listener refs the worker's port again.
  w.unref();
  return w;
}

/**
 * Beats `target` every `intervalMs` on the heartbeat thread (started on first use) until the handle
 * is stopped or `onEvent` was called (at most once, on this thread's event loop). `watchOnly`: no
 * beat, only a look at the header each interval, for a member that left a revoked region — it
 * reports `'restored'` once the region is no longer revoked and its generation moved (or
 * `'corrupt'`), so the main thread never polls for it.
 */
export function startHeartbeat(target: HeartbeatTarget, intervalMs: number, onEvent: (event: HeartbeatEvent) => void, options: { watchOnly?: boolean } = {}): HeartbeatHandle {
  const id = nextId++;
  const watchOnly = options.watchOnly === true;
  registrations.set(id, { target, intervalMs, onEvent, watchOnly });
  worker ??= spawn();
  worker.postMessage({ add: id, target, intervalMs, watchOnly });
  let stopped = false;
  return {
    stop: () => {
      if (stopped) return;
      stopped = true;
      registrations.delete(id);
      // The thread stays (idle, unreferenced) when nobody is left to beat: ending threads that may
      // still be starting, and starting new ones, costs more than an idle thread.
      worker?.postMessage({ remove: id });
    },
  };
}

/** How many members this thread's heartbeat thread beats (diagnostics, tests). */
export function heartbeatMembers(): number {
  return registrations.size;
}

/** Heartbeat threads started, running (their program began), failed, and the last failure (diagnostics, tests). */
export function heartbeatStats(): Readonly<typeof stats> {
  return { ...stats };
}
