/**
 * Optional per-frame authentication for the ivshmem transport (`ivshmem({ mac: true })` or
 * `VMCOMM_IVSHMEM_MAC=1`), for regions shared with VMs that are trusted less than the job.
 *
 * ## What it protects
 *
 * Every VM given a region maps all of it: it can read every pair's rings and write into them. The
 * transport already makes sure that garbage never makes a rank read or write outside the region
 * (everything read from it is validated), but without this module a VM that knows the format can
 * forge *well-formed* frames — a message "from" any rank of any job in the region. With it, every
 * frame a pair exchanges carries a tag that only holders of the job secret can make; a frame that was
 * forged, altered, replayed, reordered or dropped fails verification before the core sees a byte of
 * it, and that pair fails with `CORRUPT` (the process and the other pairs go on). It does not hide
 * the data (no encryption), and it cannot stop a VM from denying service (zeroing a ring, holding a
 * slot) — see the README's trust model.
 *
 * ## Keys
 *
 * One key per direction: `HMAC-SHA256(jobSecret, JSON [label, jobId, from, to, regionUuid])` with the
 * fixed label {@link MAC_KDF_LABEL} — HMAC as a KDF. The job secret never leaves the launcher and the
 * ranks; the other inputs are public. So the key of rank 1 → rank 2 is not the key of 2 → 1, of
 * 1 → 3, or of 1 → 2 in another job or another region: a frame copied from another ring fails.
 *
 * ## Records
 *
 * The ring (`lib/ring/spsc-ring.ts`) carries records of a 48-byte header and the payload the header's
 * length field (bytes 32–39, the only field the ring reads) announces. With the MAC, each core frame
 * (header `H`, payload of `L` bytes) becomes a run of *MAC records* whose headers are this module's:
 *
 * | offset | type | field |
 * |---|---|---|
 * | 0 | 16 bytes | tag: the first 16 bytes of `HMAC-SHA256(key, counter ‖ bytes 16–47 ‖ record payload)` |
 * | 16 | u32 | magic {@link MAC_RECORD_MAGIC} (`'VMMA'`) |
 * | 20 | u8 | kind: 1 head, 2 body |
 * | 21 | 3 bytes | zero |
 * | 24 | u64 | head: `L`; body: where this piece starts in the frame's payload |
 * | 32 | u64 | bytes of this record's payload (the ring's length field) |
 * | 40 | u64 | zero |
 *
 * - The **head** record's payload is `H` followed, when `L` ≤ {@link MAC_INLINE_BYTES} (every eager
 *   message by default), by the whole payload: one record, one HMAC per small frame.
 * - A longer payload follows in **body** records of at most {@link MAC_MAX_BODY_BYTES}, tagged one by
 *   one. Why not simply append one tag to the payload: a rendezvous DATA frame carries a whole
 *   message (gigabytes), and the ring takes one contiguous payload per record — appending 16 bytes
 *   would mean copying the whole message on the sender and staging all of it on the receiver. Body
 *   records borrow the sender's payload (zero copy, as without the MAC) and bound the receiver's
 *   staging to one record, and the header is verified before the core sees it.
 * - The **counter** (u64, one per record, per direction, from 0) is not sent: a ring is FIFO and both
 *   ends count, so a record replayed, dropped, reordered or injected is checked against the wrong
 *   counter and fails.
 *
 * ## Where it hooks in
 *
 * {@link MacChannel} wraps the ring layer's outbound `RingChannel`; {@link MacSink} wraps the sink
 * the `Poller` delivers to. `lib/ring` is unchanged. On the receiving side each record lands in a
 * per-peer scratch buffer (private memory, reused), is verified when its last byte arrived
 * (`timingSafeEqual`), and only then is copied where the core wants it: a head is handed to the
 * core's `begin` after verification, and the core's `commit` comes after the last body record.
 *
 * ## Negotiation
 *
 * A rank that wants the MAC says so in its ivshmem card (`mac: true`). A pair uses it when *either*
 * card asks — both ends read both cards, so both ends always agree, and one rank that turns it on
 * protects all of its pairs.
 *
 * @module
 */

import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Channel, FrameSink, SendDone } from '../../lib/backend.js';
import { VmcommError } from '../../lib/errors.js';
import { FRAME_HEADER_BYTES, frameLength } from '../../lib/protocol.js';
import { announced, refuse, type FlushableChannel } from '../../lib/ring/ring-channel.js';

/** The environment variable that turns the MAC on (`1`). */
export const IVSHMEM_MAC_ENV = 'VMCOMM_IVSHMEM_MAC';
/** Bytes of a tag (HMAC-SHA256 truncated to 128 bits). */
export const MAC_TAG_BYTES = 16;
/** `'VMMA'` as a little-endian u32: the magic of a MAC record header. */
export const MAC_RECORD_MAGIC = 0x414d_4d56;
/** A payload up to this long travels inside its head record (one HMAC per frame). */
export const MAC_INLINE_BYTES = 16 * 1024;
/** The longest body record; the receiver's scratch per peer is at most this (or a head record). */
export const MAC_MAX_BODY_BYTES = 64 * 1024;
/** The KDF's fixed label (a new version of the scheme gets a new label). */
export const MAC_KDF_LABEL = 'vmcomm ivshmem frame MAC v1';

/** Kinds of MAC record. */
export const MacRecordKind = { HEAD: 1, BODY: 2 } as const;

const OFF_MAGIC = 16;
const OFF_KIND = 20;
const OFF_FIELD = 24;
/** The HMAC input before the payload: the counter (8 bytes), then header bytes 16–47 (32 bytes). */
const PREFIX_BYTES = 8 + (FRAME_HEADER_BYTES - MAC_TAG_BYTES);
const SCRATCH_MAX_BYTES = Math.max(FRAME_HEADER_BYTES + MAC_INLINE_BYTES, MAC_MAX_BODY_BYTES);
const EMPTY = new Uint8Array(0);

/**
 * Whether an environment asks for the MAC: {@link IVSHMEM_MAC_ENV} set to anything but `''`, `0`,
 * `false`, `no` or `off` (an unreadable value turns it on rather than silently off).
 */
export function macFromEnv(env: Readonly<Record<string, string | undefined>>): boolean {
  const v = env[IVSHMEM_MAC_ENV];
  if (v === undefined) return false;
  return !['', '0', 'false', 'no', 'off'].includes(v.trim().toLowerCase());
}

/**
 * The key of the direction `from` → `to` (see the module comment). `regionUuid` is the pair's
 * region, so the same ranks in another region (or another job) have other keys.
 */
export function deriveMacKey(jobSecret: Uint8Array, jobId: string, from: number, to: number, regionUuid: string): Buffer {
  return createHmac('sha256', jobSecret).update(JSON.stringify([MAC_KDF_LABEL, jobId, from, to, regionUuid])).digest();
}

/** Writes `n` (< 2^53) as a u64, little-endian, at `at`. */
function putU64(b: Uint8Array, at: number, n: number): void {
  const lo = n % 0x1_0000_0000;
  const hi = Math.floor(n / 0x1_0000_0000);
  b[at] = lo & 0xff;
  b[at + 1] = (lo >>> 8) & 0xff;
  b[at + 2] = (lo >>> 16) & 0xff;
  b[at + 3] = lo >>> 24;
  b[at + 4] = hi & 0xff;
  b[at + 5] = (hi >>> 8) & 0xff;
  b[at + 6] = (hi >>> 16) & 0xff;
  b[at + 7] = hi >>> 24;
}

/** Reads a u64 written by {@link putU64}; −1 beyond 2^53 − 1. */
function getU64(b: Uint8Array, at: number): number {
  const lo = (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
  const hi = (b[at + 4] | (b[at + 5] << 8) | (b[at + 6] << 16) | (b[at + 7] << 24)) >>> 0;
  return hi > 0x1f_ffff ? -1 : hi * 0x1_0000_0000 + lo;
}

/**
 * The tag of one record: `HMAC-SHA256(key, counter ‖ header[16..48] ‖ payload[0..n])`, full length
 * (the first {@link MAC_TAG_BYTES} count). `prefix` is a 40-byte scratch.
 */
function recordTag(key: Buffer, counter: number, header: Uint8Array, payload: Uint8Array | undefined, n: number, prefix: Uint8Array): Buffer {
  putU64(prefix, 0, counter);
  prefix.set(header.subarray(MAC_TAG_BYTES, FRAME_HEADER_BYTES), 8);
  const h = createHmac('sha256', key).update(prefix);
  if (n > 0) h.update(n === payload!.byteLength ? payload! : payload!.subarray(0, n));
  return h.digest();
}

/** Writes a MAC record header (tag left for the caller) into `out`. */
function recordHeader(out: Uint8Array, kind: number, field: number, length: number): void {
  out.fill(0);
  out[OFF_MAGIC] = MAC_RECORD_MAGIC & 0xff;
  out[OFF_MAGIC + 1] = (MAC_RECORD_MAGIC >>> 8) & 0xff;
  out[OFF_MAGIC + 2] = (MAC_RECORD_MAGIC >>> 16) & 0xff;
  out[OFF_MAGIC + 3] = MAC_RECORD_MAGIC >>> 24;
  out[OFF_KIND] = kind;
  putU64(out, OFF_FIELD, field);
  putU64(out, 32, length);
}

function corrupt(peer: number, what: string): VmcommError {
  return new VmcommError(
    'CORRUPT',
    `a frame from rank ${peer} over ivshmem failed authentication (${what}): it was forged, altered, replayed, reordered or dropped by something else with access to the region; the channel is closed`,
    { peer },
  );
}

// ---------------------------------------------------------------- sending

/** What a {@link MacChannel} needs of the channel it wraps (the ring layer's `RingChannel`). */
export interface MacRecordChannel extends Channel, FlushableChannel {
  /** Fails queued records and reports the loss. */
  fail(error: Error): void;
}

/** A frame not yet fully handed to the ring. */
interface Outgoing {
  readonly header: Uint8Array;
  readonly payload: Uint8Array | undefined;
  readonly length: number;
  readonly done: SendDone | undefined;
  /** Payload bytes handed to the ring so far; −1 before the head record. */
  offset: number;
}

/** Buffers kept per size class (more than this many heads waiting at once are rare). */
const POOLED_PER_CLASS = 32;

/** Staging for head records (header + inline payload), by power-of-two size class, reused. */
class StagingPool {
  private readonly free: Uint8Array[][] = [];

  take(bytes: number): Uint8Array {
    const c = Math.max(6, 32 - Math.clz32(bytes - 1));
    return this.free[c]?.pop() ?? new Uint8Array(1 << c);
  }

  give(buffer: Uint8Array): void {
    const list = (this.free[31 - Math.clz32(buffer.byteLength)] ??= []);
    if (list.length < POOLED_PER_CLASS) list.push(buffer);
  }
}

/** Options of a {@link MacChannel}. */
export interface MacChannelOptions {
  /** The peer's rank (for messages). */
  readonly peer: number;
  /** The key of this rank → peer ({@link deriveMacKey}). */
  readonly key: Buffer;
  /** Body records carry at most this many bytes (at most {@link MAC_MAX_BODY_BYTES}). */
  readonly bodyBytes: number;
  /** The channel has frames that only {@link MacChannel.flush} can finish: call it from `poll()`. */
  readonly needsFlush: (channel: MacChannel) => void;
}

/**
 * The outbound side: turns each frame into tagged MAC records (see the module comment) and hands
 * them to the wrapped ring channel in order. A record is tagged only when it is handed over, and only
 * while the ring channel has nothing queued — so a large frame is tagged as the ring drains, never
 * all at once, and the event loop is not held by one huge send.
 */
export class MacChannel implements Channel, FlushableChannel {
  readonly peer: number;
  private readonly ring: MacRecordChannel;
  private readonly key: Buffer;
  private readonly bodyBytes: number;
  private readonly needsFlush: (channel: MacChannel) => void;
  /** Records tagged so far: the next record's counter. */
  private counter = 0;
  private readonly queue: Outgoing[] = [];
  private readonly header = new Uint8Array(FRAME_HEADER_BYTES);
  private readonly prefix = new Uint8Array(PREFIX_BYTES);
  private readonly pool = new StagingPool();
  /** Head records handed to the ring whose `done` has not come: staging buffer and frame `done` (FIFO: the ring completes in order). */
  private readonly stagedBuffers: Uint8Array[] = [];
  private readonly stagedDones: (SendDone | undefined)[] = [];
  private failure: Error | undefined;
  private closeRequested = false;
  private closing: Promise<void> | undefined;
  private resolveClose: ((p: Promise<void>) => void) | undefined;

  constructor(ring: MacRecordChannel, options: MacChannelOptions) {
    if (!Number.isSafeInteger(options.bodyBytes) || options.bodyBytes < 1 || options.bodyBytes > MAC_MAX_BODY_BYTES) {
      throw new RangeError(`bodyBytes must be 1 … ${MAC_MAX_BODY_BYTES}, got ${options.bodyBytes}`);
    }
    this.ring = ring;
    this.peer = options.peer;
    this.key = options.key;
    this.bodyBytes = options.bodyBytes;
    this.needsFlush = options.needsFlush;
  }

  /**
   * A head record is done (written, or failed): its staging buffer goes back to the pool and the
   * frame's own `done`, when the head was its last record, is called. One bound function for every
   * head record (the ring completes records in order), so sending allocates no closure.
   */
  private readonly headDone = (error?: Error): void => {
    const b = this.stagedBuffers.shift();
    const done = this.stagedDones.shift();
    if (b !== undefined) this.pool.give(b);
    if (done !== undefined) done(error);
  };

  /** True while frames wait here or in the ring channel, or a close is to finish. */
  get pending(): boolean {
    if (this.failure !== undefined) return false;
    return this.queue.length > 0 || this.ring.pending || (this.closeRequested && this.resolveClose !== undefined);
  }

  /** Records fully written (a running count, for progress). */
  get completed(): number {
    return this.ring.completed;
  }

  /** Records tagged so far (tests, diagnostics). */
  get records(): number {
    return this.counter;
  }

  /** Sends one frame as MAC records. Never throws: a frame that cannot go gets `done(error)` on a microtask. */
  send(header: Uint8Array, payload: Uint8Array | undefined, done?: SendDone): void {
    if (this.failure !== undefined) return refuse(done, this.failure);
    if (this.closeRequested) return refuse(done, new VmcommError('FINALIZED', `the channel to rank ${this.peer} is closed; nothing more can be sent on it`, { peer: this.peer }));
    const length = payload === undefined ? 0 : payload.byteLength;
    if (header.byteLength < FRAME_HEADER_BYTES || announced(header) !== length) {
      return refuse(done, new VmcommError('INVALID_ARGUMENT', `a ring channel got a header that does not announce the ${length}-byte payload; nothing was sent`));
    }
    if (this.queue.length === 0 && !this.ring.pending) {
      // The usual case: the head goes now (written at once when the ring has room).
      this.sendHead(header, payload, length, length <= MAC_INLINE_BYTES ? done : undefined);
      if (length <= MAC_INLINE_BYTES || this.failure !== undefined) return;
      this.queue.push({ header: EMPTY, payload, length, done, offset: 0 });
    } else {
      this.queue.push({ header: header.slice(0, FRAME_HEADER_BYTES), payload, length, done, offset: -1 });
    }
    this.feed();
    if (this.pending) this.needsFlush(this);
  }

  /** Writes what the ring has room for, tags and hands over more records, finishes a close. */
  flush(): number {
    if (this.failure !== undefined) return 0;
    const before = this.counter;
    let progress = this.ring.flush();
    this.feed();
    progress += this.counter - before;
    this.maybeClose();
    return progress;
  }

  /** Delivers what is queued, then closes the ring channel. Idempotent. */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.closeRequested = true;
    this.closing = new Promise<void>((resolve) => (this.resolveClose = (p) => resolve(p)));
    if (this.failure !== undefined) {
      this.resolveClose!(Promise.resolve());
      this.resolveClose = undefined;
    } else {
      this.maybeClose();
      if (this.resolveClose !== undefined) this.needsFlush(this);
    }
    return this.closing;
  }

  /**
   * Fails what the ring channel and this channel hold, in order (the ring channel reports the loss,
   * once). Idempotent.
   */
  fail(error: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.ring.fail(error);
    // Head records whose refusal is still on its way (or that the ring dropped): their frames fail
    // now; a refusal arriving later finds the queue empty.
    this.stagedBuffers.length = 0;
    for (const done of this.stagedDones.splice(0)) done?.(error);
    for (const f of this.queue.splice(0)) f.done?.(error);
    if (this.resolveClose !== undefined) {
      this.resolveClose(Promise.resolve());
      this.resolveClose = undefined;
    }
  }

  /** Tags and hands over records while the ring channel takes them without queueing. */
  private feed(): void {
    const q = this.queue;
    while (q.length > 0 && this.failure === undefined && !this.ring.pending) {
      const f = q[0];
      if (f.offset < 0) {
        const inline = f.length <= MAC_INLINE_BYTES;
        this.sendHead(f.header, f.payload, f.length, inline ? f.done : undefined);
        f.offset = inline ? f.length : 0;
        if (inline) q.shift();
        continue;
      }
      const n = Math.min(this.bodyBytes, f.length - f.offset);
      const last = f.offset + n === f.length;
      this.sendBody(f.payload!, f.offset, n, last ? f.done : undefined);
      f.offset += n;
      if (last) q.shift();
    }
  }

  private sendHead(frameHeader: Uint8Array, payload: Uint8Array | undefined, length: number, done: SendDone | undefined): void {
    const inline = length <= MAC_INLINE_BYTES ? length : 0;
    const n = FRAME_HEADER_BYTES + inline;
    const buffer = this.pool.take(n);
    buffer.set(frameHeader.subarray(0, FRAME_HEADER_BYTES), 0);
    if (inline > 0) buffer.set(payload!, FRAME_HEADER_BYTES);
    const record = buffer.subarray(0, n);
    const h = this.header;
    recordHeader(h, MacRecordKind.HEAD, length, n);
    h.set(recordTag(this.key, this.counter++, h, record, n, this.prefix).subarray(0, MAC_TAG_BYTES), 0);
    this.stagedBuffers.push(buffer);
    this.stagedDones.push(done);
    this.ring.send(h, record, this.headDone);
  }

  private sendBody(payload: Uint8Array, offset: number, n: number, done: SendDone | undefined): void {
    const piece = payload.subarray(offset, offset + n);
    const h = this.header;
    recordHeader(h, MacRecordKind.BODY, offset, n);
    h.set(recordTag(this.key, this.counter++, h, piece, n, this.prefix).subarray(0, MAC_TAG_BYTES), 0);
    this.ring.send(h, piece, done);
  }

  /** Closes the ring channel once everything was handed over. */
  private maybeClose(): void {
    if (!this.closeRequested || this.resolveClose === undefined || this.queue.length > 0 || this.failure !== undefined) return;
    const resolve = this.resolveClose;
    this.resolveClose = undefined;
    resolve(this.ring.close());
  }
}

// ---------------------------------------------------------------- receiving

/** One peer's verifying state: the next counter, the record in progress, the frame in progress. */
class MacReceiver {
  /** Records verified so far: the next record's counter. */
  counter = 0;
  private readonly header = new Uint8Array(FRAME_HEADER_BYTES);
  private readonly frameHeader = new Uint8Array(FRAME_HEADER_BYTES);
  private readonly prefix = new Uint8Array(PREFIX_BYTES);
  private scratch = new Uint8Array(4096);
  /** The last view of {@link scratch} handed out, reused while records keep that length. */
  private view = this.scratch.subarray(0, 0);
  private recordBytes = 0;
  private kind = 0;
  /** A frame whose head was verified and handed to the core, with body records to come. */
  private inFrame = false;
  private target: Uint8Array | undefined;
  private frameBytes = 0;
  private offset = 0;

  constructor(
    readonly peer: number,
    private readonly key: Buffer,
  ) {}

  /**
   * A record begins: checks its shape against what may come next (a head, or the next body piece of
   * the frame in progress) before anything is allocated or copied, and returns the scratch it lands
   * in. Throws `CORRUPT` for anything else.
   */
  begin(ringHeader: Uint8Array): Uint8Array {
    const h = this.header;
    h.set(ringHeader.subarray(0, FRAME_HEADER_BYTES), 0);
    const magic = (h[OFF_MAGIC] | (h[OFF_MAGIC + 1] << 8) | (h[OFF_MAGIC + 2] << 16) | (h[OFF_MAGIC + 3] << 24)) >>> 0;
    if (magic !== MAC_RECORD_MAGIC) throw corrupt(this.peer, 'not a MAC record');
    const kind = h[OFF_KIND];
    const n = getU64(h, 32);
    const field = getU64(h, OFF_FIELD);
    if (!this.inFrame) {
      if (kind !== MacRecordKind.HEAD) throw corrupt(this.peer, `a body record where a frame should begin`);
      if (field < 0 || n < FRAME_HEADER_BYTES || n - FRAME_HEADER_BYTES > MAC_INLINE_BYTES || n - FRAME_HEADER_BYTES > field) {
        throw corrupt(this.peer, `a head record of ${n} bytes for a ${field}-byte payload`);
      }
    } else {
      if (kind !== MacRecordKind.BODY) throw corrupt(this.peer, `a frame cut short: a new one began at byte ${this.offset} of ${this.frameBytes}`);
      if (field !== this.offset || n < 1 || n > MAC_MAX_BODY_BYTES || n > this.frameBytes - this.offset) {
        throw corrupt(this.peer, `a body record of ${n} bytes at ${field}, expected one at ${this.offset} of ${this.frameBytes}`);
      }
    }
    this.kind = kind;
    this.recordBytes = n;
    if (this.view.byteLength !== n) {
      if (this.scratch.byteLength < n) this.scratch = new Uint8Array(Math.min(SCRATCH_MAX_BYTES, Math.max(n, 2 * this.scratch.byteLength)));
      this.view = this.scratch.subarray(0, n);
    }
    return this.view;
  }

  /**
   * The record is in the scratch: verifies its tag against this peer's counter, then hands a head's
   * frame header to `sink.begin` and copies payload bytes where the sink said, committing after the
   * frame's last byte. Throws `CORRUPT` when the tag does not match.
   */
  commit(sink: FrameSink): void {
    const n = this.recordBytes;
    const record = this.view;
    const tag = recordTag(this.key, this.counter, this.header, record, n, this.prefix);
    if (!timingSafeEqual(tag.subarray(0, MAC_TAG_BYTES), this.header.subarray(0, MAC_TAG_BYTES))) {
      throw corrupt(this.peer, `record ${this.counter} carries a wrong tag`);
    }
    this.counter++;
    const peer = this.peer;
    if (this.kind === MacRecordKind.HEAD) {
      const fh = this.frameHeader;
      fh.set(record.subarray(0, FRAME_HEADER_BYTES), 0);
      const length = frameLength(fh);
      const total = getU64(this.header, OFF_FIELD);
      // Signed by the sender, so this is a bug there, not an attack; refused all the same.
      if (length !== total) throw corrupt(peer, `a head record for ${total} bytes carries a frame of ${length}`);
      const target = sink.begin(peer, fh);
      const inline = n - FRAME_HEADER_BYTES;
      if (inline > 0 && target !== undefined) copyInto(target, 0, record, FRAME_HEADER_BYTES, inline);
      if (inline === length) {
        sink.commit(peer);
        return;
      }
      this.inFrame = true;
      this.target = target;
      this.frameBytes = length;
      this.offset = inline;
      return;
    }
    if (this.target !== undefined) copyInto(this.target, this.offset, record, 0, n);
    this.offset += n;
    if (this.offset < this.frameBytes) return;
    this.inFrame = false;
    this.target = undefined;
    sink.commit(peer);
  }
}

/** Copies `n` bytes of `src` from `from` into `dst` at `at`, dropping what does not fit `dst`. */
function copyInto(dst: Uint8Array, at: number, src: Uint8Array, from: number, n: number): void {
  const k = Math.min(n, dst.byteLength - at);
  if (k <= 0) return;
  if (k <= 64) for (let i = 0; i < k; i++) dst[at + i] = src[from + i];
  else dst.set(src.subarray(from, from + k), at);
}

/**
 * The inbound side: a {@link FrameSink} for the `Poller` that verifies the records of the peers
 * registered with {@link authenticate} and passes every other peer's frames straight through to
 * `inner` (pairs without the MAC pay nothing).
 */
export class MacSink implements FrameSink {
  private readonly receivers: (MacReceiver | undefined)[] = [];

  constructor(private readonly inner: FrameSink) {}

  /** Frames from `peer` are MAC records under `key` (its key towards this rank). */
  authenticate(peer: number, key: Buffer): void {
    this.receivers[peer] = new MacReceiver(peer, key);
  }

  /** The pair left this ring (migration): a later ring of the peer starts a fresh record count. */
  forget(peer: number): void {
    this.receivers[peer] = undefined;
  }

  /** Whether frames from `peer` are verified. */
  authenticates(peer: number): boolean {
    return this.receivers[peer] !== undefined;
  }

  /** Records verified from `peer` so far (tests, diagnostics). */
  verified(peer: number): number {
    return this.receivers[peer]?.counter ?? 0;
  }

  begin(peer: number, header: Uint8Array): Uint8Array | undefined {
    const r = this.receivers[peer];
    return r === undefined ? this.inner.begin(peer, header) : r.begin(header);
  }

  commit(peer: number): void {
    const r = this.receivers[peer];
    if (r === undefined) this.inner.commit(peer);
    else r.commit(this.inner);
  }

  lost(peer: number, error: Error): void {
    this.inner.lost(peer, error);
  }
}
