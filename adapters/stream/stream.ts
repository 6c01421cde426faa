/**
 * The Duplex: one end of a stream between two ranks, moving bytes as vmcomm messages in the
 * communicator's side context under the rules of `protocol.ts`.
 *
 * Copies. Sending works like a socket's send buffer of one message (`Outbox` in protocol.ts): a
 * write that fits in a message is copied into it at once, gathered with the writes around it, and
 * acknowledged — which is what lets the writer's next writes travel while this one does (each message
 * is a rendezvous: a writer whose every write waited for its own round trip would never have two in
 * flight); a longer write is sent in place, from the writer's own buffer, in messages that travel
 * together up to the credit window, and acknowledged when they have arrived. At the reader, each
 * data message is received as a value (`irecv`): vmcomm allocates a buffer of the message's exact size
 * when it arrives and the transport writes the bytes there (eager: once, out of the ring or socket;
 * rendezvous: directly, by single copy where the transport can), and that buffer is what `push()`
 * hands to the reader — no further copy, and no receive buffers held by an idle stream.
 *
 * @module
 */

import { Duplex, type DuplexOptions } from 'node:stream';
import { isVmcommError, VmcommError, type Communicator, type Request } from 'vmcomm';
import { controlTag, dataTag, decodeControl, encodeControl, Outbox, shouldGrant, type ControlMessage, type OutMessage } from './protocol.js';

/** What the Duplex needs to run (validated by `openStream`). */
export interface StreamSettings {
  /** The side communicator (`comm.sideContext()`). */
  readonly side: Communicator;
  readonly peer: number;
  readonly tag: number;
  readonly chunkBytes: number;
  readonly windowChunks: number;
  readonly duplex: DuplexOptions;
  /** Called once when this end is destroyed (the (peer, tag) may then be opened again). */
  readonly onDestroyed: () => void;
}

/** One write (`_write` or `_writev`) in progress. */
interface WriteJob {
  /** Its messages that are views of the writer's buffers and not yet complete (still borrowed). */
  outstanding: number;
  readonly callback: (error?: Error | null) => void;
}

const EMPTY = new Uint8Array(0);

/**
 * One end of a stream: a Node `Duplex` whose bytes travel to and from rank {@link peer}. Made by
 * `openStream`; see there for the semantics (back-pressure, half-close, errors, what `http` needs).
 */
export class VmcommStream extends Duplex {
  /** The peer's rank in the communicator the stream was opened on. */
  readonly peer: number;
  /** The stream's tag. */
  readonly tag: number;
  /** Bytes received from the peer and handed to the reader (net.Socket's `bytesRead`). */
  bytesRead = 0;
  /** Bytes handed to vmcomm for the peer (net.Socket's `bytesWritten`, without what Node still buffers). */
  bytesWritten = 0;
  /** True until the peer has opened its end (its first credit arrived, then `'connect'` is emitted). */
  connecting = true;

  readonly #side: Communicator;
  readonly #dataTag: number;
  readonly #controlTag: number;
  readonly #chunkBytes: number;
  readonly #window: number;
  readonly #onDestroyed: () => void;

  // Receiving: data receives posted (one per credit granted), oldest first.
  readonly #posted: Request<Uint8Array>[] = [];
  #received = 0;
  #granted = 0;
  #advertised = 0;
  /** The reader's buffer is full (`push()` said so): grant nothing until `_read()`. */
  #paused = false;
  /** The peer's data is over (FIN taken, or implied by its CLOSE); `push(null)` was called. */
  #readEnded = false;
  #control: Request<unknown> | undefined;

  // Sending.
  #peerChunk = 0;
  #creditUpTo = 0;
  #sent = 0;
  readonly #outbox = new Outbox();
  #job: WriteJob | undefined;
  #flushQueued = false;
  /** `_final`'s callback while FIN waits for a credit. */
  #fin: ((error?: Error | null) => void) | undefined;
  #finSent = false;

  // Closing.
  #started = false;
  #terminalSent = false;
  #peerTerminal: Exclude<ControlMessage, { kind: 'credit' }> | undefined;
  /** Communication with the peer is impossible (peer lost, world finalized, communicator freed, protocol error). */
  #dead: Error | undefined;
  #released = false;
  #release!: () => void;
  /** Resolves once this end has sent its terminal message, has the peer's and has absorbed the peer's data. */
  readonly released: Promise<void> = new Promise((resolve) => (this.#release = resolve));

  #timeoutMs = 0;
  #timer: NodeJS.Timeout | undefined;

  /** @internal Made by `openStream`. */
  constructor(settings: StreamSettings) {
    super({ allowHalfOpen: true, ...settings.duplex, objectMode: false, readableObjectMode: false, writableObjectMode: false, decodeStrings: true, emitClose: true, autoDestroy: true });
    this.#side = settings.side;
    this.peer = settings.peer;
    this.tag = settings.tag;
    this.#dataTag = dataTag(settings.tag);
    this.#controlTag = controlTag(settings.tag);
    this.#chunkBytes = settings.chunkBytes;
    this.#window = settings.windowChunks;
    this.#onDestroyed = settings.onDestroyed;
  }

  /**
   * @internal Starts this incarnation (once the previous stream on the same (peer, tag) has let go):
   * posts the control receive and the first window of data receives, and grants them.
   */
  start(): void {
    this.#started = true;
    this.#postControl();
    if (this.destroyed) this.#sendTerminal(this.errored ?? undefined);
    else this.#refill();
    this.#maybeRelease();
  }

  // ------------------------------------------------------------ socket-like surface (what http uses)

  /**
   * Emits `'timeout'` after `ms` without traffic (0 turns it off), as `net.Socket#setTimeout` does;
   * like a socket, the stream stays open: the listener decides (http's server destroys idle
   * keep-alive connections this way).
   */
  setTimeout(ms: number, callback?: () => void): this {
    if (typeof ms !== 'number' || !(ms >= 0) || !Number.isFinite(ms)) throw new VmcommError('INVALID_ARGUMENT', `setTimeout: ms must be a finite number ≥ 0, got ${String(ms)}`);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timeoutMs = ms;
    if (callback) {
      if (ms === 0) this.removeListener('timeout', callback);
      else this.once('timeout', callback);
    }
    if (ms > 0 && !this.destroyed) {
      this.#timer = setTimeout(() => this.emit('timeout'), ms);
      this.#timer.unref();
    }
    return this;
  }

  /** The idle timeout set by {@link setTimeout}, or `undefined` (as `net.Socket#timeout`). */
  get timeout(): number | undefined {
    return this.#timeoutMs > 0 ? this.#timeoutMs : undefined;
  }

  /** No-op (messages are never delayed to be batched across writes); for code written for sockets. */
  setNoDelay(_noDelay?: boolean): this {
    return this;
  }

  /** No-op (a lost peer is detected by vmcomm itself); for code written for sockets. */
  setKeepAlive(_enable?: boolean, _initialDelay?: number): this {
    return this;
  }

  /** No-op: vmcomm keeps the process alive from `init()` to `finalize()` anyway. */
  ref(): this {
    return this;
  }

  /** No-op: vmcomm keeps the process alive from `init()` to `finalize()` anyway. */
  unref(): this {
    return this;
  }

  #touch(): void {
    this.#timer?.refresh();
  }

  // ------------------------------------------------------------ reading

  override _read(): void {
    this.#paused = false;
    this.#refill();
  }

  /** Posts data receives up to the window and grants them, unless the reader is full or the data over. */
  #refill(): void {
    if (!this.#started || this.#paused || this.#readEnded || this.destroyed || this.#dead || this.#peerTerminal) return;
    while (this.#posted.length < this.#window) {
      const r = this.#side.irecv<Uint8Array>(this.peer, this.#dataTag);
      this.#posted.push(r);
      this.#granted++;
      r.then(this.#takeReceived, this.#takeReceived);
    }
    if (shouldGrant(this.#granted, this.#advertised, this.#received, this.#window)) {
      this.#advertised = this.#granted;
      this.#sendControl({ kind: 'credit', upTo: this.#granted, chunkBytes: this.#chunkBytes });
    }
  }

  /** Takes completed data receives in the order they were posted (completion order may differ). */
  readonly #takeReceived = (): void => {
    while (this.#posted.length > 0) {
      const r = this.#posted[0];
      if (r.state === 'pending') break;
      this.#posted.shift();
      if (r.state === 'rejected') return this.#fail(r.error!);
      this.#received++;
      this.#take(r.value!);
    }
    this.#refill();
    this.#maybeEnd();
    this.#maybeTerminal();
    this.#maybeRelease();
  };

  #take(bytes: Uint8Array): void {
    const n = bytes.byteLength;
    if (n > this.#chunkBytes) return this.#fail(new VmcommError('CORRUPT', `stream: rank ${this.peer} sent a ${n}-byte message on tag ${this.tag}, more than the ${this.#chunkBytes} bytes granted`));
    if (n === 0) {
      // FIN: the peer's last data message, so no later receive can match.
      this.#cancelPosted(0);
      return this.#endReading();
    }
    if (this.#readEnded) return this.#fail(new VmcommError('CORRUPT', `stream: rank ${this.peer} sent data after its end (tag ${this.tag})`));
    if (this.destroyed) return; // absorbed: the peer sent it before it learnt
    this.bytesRead += n;
    this.#touch();
    const chunk = Buffer.from(bytes.buffer, bytes.byteOffset, n);
    if (!this.push(chunk)) this.#paused = true;
  }

  /** The peer's CLOSE said how many messages it sent: once they are all here, reading is over. */
  #maybeEnd(): void {
    const t = this.#peerTerminal;
    if (t && t.kind === 'close' && !this.#readEnded && this.#posted.length === 0 && this.#received >= t.sent) this.#endReading();
  }

  #endReading(): void {
    if (this.#readEnded) return;
    this.#readEnded = true;
    if (!this.destroyed) this.push(null);
  }

  /** Withdraws the posted data receives after the first `keep` (the peer will never send for them). */
  #cancelPosted(keep: number): void {
    while (this.#posted.length > keep) {
      const r = this.#posted.pop()!;
      // A receive that matched after all means the peer sent more than it said.
      if (!r.cancel() && r.state === 'fulfilled') return this.#fail(new VmcommError('CORRUPT', `stream: rank ${this.peer} sent more data messages than it announced (tag ${this.tag})`));
    }
  }

  // ------------------------------------------------------------ control messages

  #postControl(): void {
    const r = this.#side.irecv<unknown>(this.peer, this.#controlTag);
    this.#control = r;
    r.then(
      (v) => this.#onControl(v),
      (e: Error) => this.#fail(e),
    );
  }

  #sendControl(m: ControlMessage): void {
    this.#side.isend(encodeControl(m), this.peer, this.#controlTag).then(undefined, (e: Error) => this.#fail(e));
  }

  #onControl(value: unknown): void {
    let m: ControlMessage;
    try {
      m = decodeControl(value);
    } catch (e) {
      return this.#fail(e as Error);
    }
    this.#control = undefined;
    if (m.kind === 'credit') {
      this.#peerChunk = m.chunkBytes;
      this.#creditUpTo = Math.max(this.#creditUpTo, m.upTo);
      this.#postControl();
      if (this.connecting) {
        this.connecting = false;
        if (!this.destroyed) this.emit('connect');
      }
      this.#pump(true);
      return;
    }
    // The peer's terminal message: it sends nothing after it.
    this.#peerTerminal = m;
    if (m.sent < this.#received) return this.#fail(new VmcommError('CORRUPT', `stream: rank ${this.peer} says it sent ${m.sent} data messages, ${this.#received} arrived (tag ${this.tag})`));
    this.#cancelPosted(m.sent - this.#received);
    if (!this.destroyed) {
      if (m.kind === 'reset') {
        this.destroy(new VmcommError('ABORTED', `ECONNRESET: rank ${this.peer} reset the stream (tag ${this.tag}): ${m.reason}`));
      } else {
        // The peer is done and reads no more (CLOSE, unlike TCP's FIN, says so): data not yet sent
        // has nobody to read it (EPIPE, as a socket's write after the peer closed); otherwise this
        // side ends too, so the stream closes once its reader has the rest (an idle keep-alive
        // connection that http's server closes leaves the client's agent this way).
        const dropped = this.#outbox.drop();
        const job = this.#job;
        this.#job = undefined;
        if (job) job.callback(this.#epipe());
        else if (dropped > 0) this.destroy(this.#epipe());
        if (!this.destroyed) {
          this.#resolveFinLocally();
          if (!this.writableEnded) this.end();
        }
      }
    }
    this.#maybeEnd();
    this.#maybeTerminal();
    this.#maybeRelease();
  }

  // ------------------------------------------------------------ writing

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#startWrite([chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer; encoding: BufferEncoding }[], callback: (error?: Error | null) => void): void {
    this.#startWrite(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  #startWrite(chunks: Uint8Array[], callback: (error?: Error | null) => void): void {
    if (this.#dead) return callback(this.#dead);
    if (this.#peerTerminal) return callback(this.#epipe());
    this.#outbox.write(chunks);
    this.#job = { outstanding: 0, callback };
    // Writes made in the same tick share the gather buffer; it leaves at the end of the tick.
    this.#pump(false);
    if (!this.#flushQueued && this.#outbox.gathered > 0) {
      this.#flushQueued = true;
      process.nextTick(this.#flush);
    }
  }

  readonly #flush = (): void => {
    this.#flushQueued = false;
    this.#pump(true);
  };

  override _final(callback: (error?: Error | null) => void): void {
    if (this.#dead) return callback(this.#dead);
    this.#fin = callback;
    if (this.#peerTerminal) return this.#resolveFinLocally();
    this.#pump(true);
  }

  /**
   * Sends what credits allow (the current write's messages; the gather buffer when due or `flush`;
   * then FIN), and acknowledges the write once all of it is copied or on its way and none of the
   * writer's own bytes is still borrowed.
   */
  #pump(flush: boolean): void {
    if (this.destroyed || this.#dead) return;
    const max = this.#peerChunk;
    if (max === 0) return; // the peer has not opened yet: its message size is unknown
    const outbox = this.#outbox;
    while (this.#sent < this.#creditUpTo) {
      const m = outbox.next(max, flush || this.#fin !== undefined);
      if (!m) break;
      this.#sendData(m);
    }
    outbox.absorb(max);
    const job = this.#job;
    if (job) {
      if (!outbox.consumed || job.outstanding > 0) return;
      this.#job = undefined;
      return job.callback(); // Node may hand over the next write from inside this call
    }
    const fin = this.#fin;
    if (fin && outbox.gathered === 0 && this.#sent < this.#creditUpTo) {
      this.#fin = undefined;
      this.#finSent = true;
      this.#issue(EMPTY).then(
        () => fin(),
        (e: Error) => {
          fin(e);
          this.#fail(e);
        },
      );
      this.#maybeTerminal();
    }
  }

  #sendData(m: OutMessage): void {
    const job = m.borrowed ? this.#job : undefined;
    if (job) job.outstanding++;
    this.#issue(m.bytes).then(
      () => {
        if (!job) return this.#outbox.recycle(m);
        job.outstanding--;
        if (job === this.#job) this.#pump(true);
      },
      (e: Error) => this.#fail(e),
    );
  }

  #issue(bytes: Uint8Array): Request<void> {
    const r = this.#side.isendBuffer(bytes, this.peer, this.#dataTag);
    this.#sent++;
    this.bytesWritten += bytes.byteLength;
    if (bytes.byteLength > 0) this.#touch();
    return r;
  }

  #resolveFinLocally(): void {
    const fin = this.#fin;
    if (!fin) return;
    this.#fin = undefined;
    this.#finSent = true;
    fin();
  }


  #epipe(): VmcommError {
    return new VmcommError('ABORTED', `EPIPE: rank ${this.peer} closed the stream (tag ${this.tag}); it reads no more`);
  }

  // ------------------------------------------------------------ closing

  /** Both directions are done: say so (the last message this end sends). */
  #maybeTerminal(): void {
    if (this.#finSent && this.#readEnded) this.#sendTerminal(undefined);
  }

  #sendTerminal(error: Error | undefined): void {
    if (this.#terminalSent || !this.#started) return;
    this.#terminalSent = true;
    if (this.#dead) return;
    // Nothing more is granted: only the data already granted can still come, and it is absorbed.
    this.#sendControl(error ? { kind: 'reset', sent: this.#sent, reason: error.message } : { kind: 'close', sent: this.#sent });
  }

  #maybeRelease(): void {
    if (this.#released || !this.#started) return;
    const t = this.#peerTerminal;
    if (!this.#dead && !(this.#terminalSent && t && this.#posted.length === 0 && this.#received >= t.sent)) return;
    this.#released = true;
    this.#release();
  }

  /** Communication is impossible: fail the stream at once and let go of everything. */
  #fail(error: Error): void {
    if (this.#dead) return;
    this.#dead = isVmcommError(error) ? error : new VmcommError('CORRUPT', `stream: ${error.message}`, { cause: error });
    this.#control?.cancel();
    for (const r of this.#posted.splice(0)) r.cancel();
    // Both directions over (FIN sent, the peer's taken; its 'end' maybe not read yet): nothing is lost.
    const over = this.#finSent && this.#readEnded;
    if (!this.destroyed && !over) this.destroy(this.#dead);
    this.#maybeRelease();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#onDestroyed();
    this.#outbox.drop();
    this.#job = undefined;
    // Before start(), start() sends the terminal. Data the peer already has credit for is absorbed.
    this.#sendTerminal(error ?? undefined);
    this.#maybeRelease();
    callback(error);
  }
}
