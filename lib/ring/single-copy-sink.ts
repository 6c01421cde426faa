/**
 * Single copy on top of the ring layer, with no change to it: a large payload is not copied into the
 * ring and out again, but once, from the sender's memory into the receiver's target — by the kernel
 * between processes (`shm`: cross-memory attach, LiMIC's idea), by `memcpy` between threads of one
 * process (`threads`: pinned views). How the bytes move is the transport's {@link PayloadReader} and
 * {@link PayloadWriter}; the protocol is this module's (the consumer) and `single-copy-channel.ts`'s
 * (the producer).
 *
 * ## Protocol
 *
 * A frame whose payload is at least the channel's `minBytes` long does not travel through the ring.
 * The producer instead publishes a *descriptor frame* — a {@link FRAME_HEADER_BYTES}-byte marker
 * header (byte 0 = {@link SINGLE_COPY_FRAME_MARK}, never a protocol version, so the core could not
 * mistake it for a frame of its own) whose 72-byte payload is the original header, the producer's
 * pid, a token, the payload's handle (an address, a pin) and its length — and then publishes nothing
 * more on that ring until the consumer answers (*the gate*; see `single-copy-channel.ts`). The
 * consumer:
 *
 * 1. hands the original header to the core (`begin`), which says where the payload goes — for a
 *    rendezvous `DATA` frame, the user's receive buffer;
 * 2. copies the payload straight from the producer's memory into it (pieces of at most
 *    {@link PIECE_BYTES} per call, continued by later polls so a huge message never holds the event
 *    loop for long);
 * 3. stores the token and {@link CopyResult.READ} in the ring's control block
 *    (`single-copy-control.ts`), wakes the producer if it sleeps, and `commit`s. The producer's `done`
 *    fires when it sees the answer: its buffer may be reused.
 *
 * **Cooperative copy.** One copy keeps one core busy while the producer, which waits at the gate
 * anyway, idles. So for a payload of at least {@link HELP_MIN_BYTES} the consumer asks the producer
 * (control block) to write the second half straight into the target, while it reads the first: both
 * cores copy, as in MPICH's pipelined two-copy protocol, with one copy each. The consumer answers READ
 * only after the producer said its half is written (or could not be: then the consumer reads it too).
 * While it waits for that, each poll reads nothing from the producer's memory, which fails (`ESRCH`)
 * once a threads producer is gone (its pins went with its thread; for shm a read of nothing is no
 * system call, and the transport's inbox-lock sweep reports a dead process instead). A consumer that
 * gives a frame up withdraws the request; the producer claims it for each piece it writes
 * (`SingleCopyControl.claimHelp`), so the withdrawal waits for a piece under way and nothing lands in
 * the target after it; a producer whose write fails says its half FAILED.
 *
 * **A send that fails** while its payload is being copied (the producer's channel fails: its caller is
 * told, and may reuse the buffer) races the consumer's delivery, and one compare-and-swap on the
 * control block's fate word decides it (`single-copy-control.ts`): the consumer, with all the bytes
 * in, tries DELIVERED; the producer, before it tells its caller, tries GIVEN_UP. Whoever comes second
 * follows: a consumer finding the message given up delivers nothing and fails the pair with
 * `PEER_LOST` (the producer reports the pair lost too); a producer finding it delivered completes
 * that send. Both ranks agree on every message, and nothing copied from a buffer its owner got back
 * is delivered.
 *
 * If the copy is refused (`EPERM`: another user, Yama, a non-dumpable process; `ENOSYS`; `ENOTSUP`:
 * `VMCOMM_CMA=0`), the consumer answers {@link CopyResult.REFUSED} and keeps the frame open; the
 * producer then sends the payload through the ring as a *fallback frame* (marker kind
 * {@link SingleCopyFrame.FALLBACK}), which lands in the same target, and sends no more descriptors to
 * that peer. Because of the gate nothing overtakes the frame, so order holds and no message is lost.
 *
 * ## Validation
 *
 * The consumer checks every descriptor: its length against the original header, its pid against the
 * producer's card (so a peer cannot make this rank read a third process), and that nothing else comes
 * from that peer while a descriptor is open. A range that ends early (`EFAULT`, a short read) is
 * `CORRUPT`; a producer that is gone (`ESRCH`: its process, or its pin) is `PEER_LOST`. The producer
 * checks the answer words (`SingleCopyControl.outcome`).
 *
 * @module
 */

import type { FrameSink } from '../backend.js';
import { VmcommError } from '../errors.js';
import { FRAME_HEADER_BYTES, frameLength } from '../protocol.js';
import { corrupt } from './region.js';
import { CopyResult, Fate, HelpResult, MAX_TOKEN, type SingleCopyControl } from './single-copy-control.js';

/** Byte 0 of a frame header that only the single-copy layer reads (the core's frames carry version 1 there). */
export const SINGLE_COPY_FRAME_MARK = 0xe5;
/** Byte 1 of a marked header. */
export const SingleCopyFrame = {
  /** The payload is a single-copy descriptor ({@link DESCRIPTOR_BYTES} bytes). */
  DESCRIPTOR: 1,
  /** The payload is the one the last descriptor described, sent through the ring after a refusal. */
  FALLBACK: 2,
} as const;

/** Bytes of a descriptor: the original header, u32 pid, u32 token, u64 handle, u64 length. */
export const DESCRIPTOR_BYTES = FRAME_HEADER_BYTES + 24;
/** One copy call moves at most this much; a longer payload is continued by later polls. */
export const PIECE_BYTES = 2 * 1024 * 1024;
/** Payloads of at least this many bytes are copied by both sides (see "Cooperative copy"). */
export const HELP_MIN_BYTES = 512 * 1024;

const D_PID = FRAME_HEADER_BYTES;
const D_TOKEN = FRAME_HEADER_BYTES + 4;
const D_HANDLE = FRAME_HEADER_BYTES + 8;
const D_LENGTH = FRAME_HEADER_BYTES + 16;

/** A read of nothing: does the producer's memory still exist? */
const EMPTY = new Uint8Array(0);

/** The sender's send of the open message failed on its side (it reports the pair lost too). */
function givenUp(peer: number, cause?: unknown): VmcommError {
  return new VmcommError('PEER_LOST', `rank ${peer}'s send of this message failed on its side while it was being copied; nothing of it is delivered`, { peer, cause });
}

/** Errors of a copy that mean "not allowed here", not "broken": fall back to the ring. */
const REFUSALS = new Set(['EPERM', 'EACCES', 'ENOSYS', 'ENOTSUP', 'EOPNOTSUPP']);

/**
 * How a consumer copies described payloads: `shm`'s is `process_vm_readv` at an address in the
 * producer's process, `threads`' a `memcpy` from a pin. Errors carry a `code` (see "Validation").
 */
export interface PayloadReader {
  /** Copies bytes `offset …` of the payload `handle` names (in process `pid`) into `into`; returns how many. */
  read(pid: number, handle: bigint, offset: number, into: Uint8Array): number;
  /** A handle the producer can write `target` through (cooperative copy), valid until {@link releaseTarget}. */
  targetHandle(target: Uint8Array): bigint;
  /** The producer no longer writes through `handle`. */
  releaseTarget(handle: bigint): void;
  /** Payloads of at least this many bytes are copied by both sides; default {@link HELP_MIN_BYTES}. */
  readonly helpMinBytes?: number;
  /**
   * Whether a target handle keeps the target's memory alive by itself (threads' pins do; shm's
   * addresses do not, so a target given up while the producer writes into it stays referenced).
   */
  readonly handlesHoldMemory?: boolean;
}

/** Writes a marker header of `kind` announcing `payloadBytes` into `out` (48 bytes). */
export function markerHeader(out: Uint8Array, kind: number, payloadBytes: number): Uint8Array {
  out.fill(0, 0, FRAME_HEADER_BYTES);
  out[0] = SINGLE_COPY_FRAME_MARK;
  out[1] = kind;
  const v = new DataView(out.buffer, out.byteOffset, FRAME_HEADER_BYTES);
  v.setUint32(32, payloadBytes % 0x1_0000_0000, true);
  v.setUint32(36, Math.floor(payloadBytes / 0x1_0000_0000), true);
  return out;
}

/** Fills a descriptor (see {@link DESCRIPTOR_BYTES}) into `out`. */
export function encodeDescriptor(out: Uint8Array, header: Uint8Array, pid: number, token: number, handle: bigint, length: number): Uint8Array {
  out.set(header.subarray(0, FRAME_HEADER_BYTES), 0);
  const v = new DataView(out.buffer, out.byteOffset, DESCRIPTOR_BYTES);
  v.setUint32(D_PID, pid, true);
  v.setInt32(D_TOKEN, token, true);
  v.setBigUint64(D_HANDLE, handle, true);
  v.setUint32(D_LENGTH, length % 0x1_0000_0000, true);
  v.setUint32(D_LENGTH + 4, Math.floor(length / 0x1_0000_0000), true);
  return out;
}

/** What a {@link SingleCopySink} asks of its transport. */
export interface SingleCopyHooks {
  /** The pid `peer`'s card gives (descriptors must carry it). */
  pidOf(peer: number): number;
  /** Whether this rank may read `peer`'s memory at all (shm: both allow CMA, same PID namespace). */
  allowed(peer: number): boolean;
  /** The control block of the ring from `peer`, where answers go. */
  control(peer: number): SingleCopyControl | undefined;
  /** The producer may sleep: wake it (it has an answer). */
  wakeProducer(peer: number): void;
  /** A read continued outside the ring's poll failed: the peer is lost. */
  fail(peer: number, error: Error): void;
}

const enum State {
  IDLE,
  /** Reading pieces of the payload. */
  READING,
  /** Refused: waiting for the fallback frame. */
  FALLBACK,
}

const enum Begun {
  /** A frame of the core's, passed through. */
  PASS,
  DESCRIPTOR,
  FALLBACK,
}

/** Per peer: the single-copy frame in progress. */
interface PeerCopy {
  state: State;
  begun: Begun;
  readonly descriptor: Uint8Array;
  readonly view: DataView;
  readonly header: Uint8Array;
  pid: number;
  token: number;
  handle: bigint;
  length: number;
  target: Uint8Array | undefined;
  want: number;
  done: number;
  /** This rank reads bytes `0 … readUpTo`; the producer writes the rest while {@link helping}. */
  readUpTo: number;
  helping: boolean;
  /** The control block of the peer's ring, where the open descriptor is answered (found at {@link SingleCopySink.open}). */
  control: SingleCopyControl | undefined;
  /** The target's handle while the producer may write into it (released once it answered). */
  targetHandle: bigint | undefined;
  /**
   * The target of a frame given up while the producer was writing into it: referenced until the next
   * single-copy frame from that peer (or {@link SingleCopySink.stop}), so the piece the producer may
   * still be writing never lands in memory the garbage collector has handed to something else.
   */
  abandoned: Uint8Array | undefined;
}

/**
 * The consumer's side: a {@link FrameSink} in front of the core's, which passes the core's frames
 * through and turns descriptor and fallback frames into the one frame they stand for.
 */
export class SingleCopySink implements FrameSink {
  private readonly peers: (PeerCopy | undefined)[] = [];
  /** Peers whose memory this rank could not read: no more descriptors are accepted from them. */
  private readonly refused = new Set<number>();
  /** Peers with a single-copy frame open: being read, or refused and waiting for its fallback frame. */
  private reading: number[] = [];
  /** Descriptors received, payloads read by single copy (and their bytes), refusals (diagnostics). */
  readonly counts = { descriptors: 0, reads: 0, bytesRead: 0, refusals: 0, helped: 0 };

  private readonly helpMinBytes: number;

  constructor(
    private readonly inner: FrameSink,
    private readonly reader: PayloadReader,
    private readonly hooks: SingleCopyHooks,
  ) {
    this.helpMinBytes = reader.helpMinBytes ?? HELP_MIN_BYTES;
  }

  /** Frames open: reads in progress, and refusals waiting for their fallback (the transport's poll continues them). */
  get active(): number {
    return this.reading.length;
  }

  /** Whether `peer`'s memory was found unreadable. */
  refuses(peer: number): boolean {
    return this.refused.has(peer);
  }

  begin(peer: number, header: Uint8Array): Uint8Array | undefined {
    const s = this.peers[peer];
    if (header[0] !== SINGLE_COPY_FRAME_MARK) {
      if (s !== undefined) {
        if (s.state !== State.IDLE) throw corrupt(`rank ${peer} sent a frame while its single-copy message was still open`);
        s.begun = Begun.PASS;
      }
      return this.inner.begin(peer, header);
    }
    const p = s ?? this.newPeer(peer);
    const length = frameLength(header);
    switch (header[1]) {
      case SingleCopyFrame.DESCRIPTOR:
        if (p.state !== State.IDLE) throw corrupt(`rank ${peer} sent a second single-copy descriptor before the first was answered`);
        if (length !== DESCRIPTOR_BYTES) throw corrupt(`a single-copy descriptor of ${length} bytes`);
        p.begun = Begun.DESCRIPTOR;
        return p.descriptor;
      case SingleCopyFrame.FALLBACK:
        if (p.state !== State.FALLBACK) throw corrupt(`rank ${peer} sent a fallback payload no refusal asked for`);
        if (length !== p.length) throw corrupt(`a fallback payload of ${length} bytes for a ${p.length}-byte message`);
        p.begun = Begun.FALLBACK;
        return p.target;
      default:
        throw corrupt(`unknown single-copy frame kind ${header[1]}`);
    }
  }

  commit(peer: number): void {
    const p = this.peers[peer];
    if (p === undefined || p.begun === Begun.PASS) return this.inner.commit(peer);
    if (p.begun === Begun.DESCRIPTOR) {
      p.begun = Begun.PASS;
      return this.open(peer, p);
    }
    p.begun = Begun.PASS;
    p.state = State.IDLE;
    p.target = undefined;
    this.reading = this.reading.filter((r) => r !== peer); // its fallback came: no longer open
    this.inner.commit(peer);
  }

  lost(peer: number, error: Error): void {
    const p = this.peers[peer];
    if (p !== undefined) this.abandon(peer, p);
    this.inner.lost(peer, error);
  }

  /** Whether a single-copy frame of `peer` is open (being read, or waiting for its fallback frame). */
  isOpen(peer: number): boolean {
    const p = this.peers[peer];
    return p !== undefined && p.state !== State.IDLE;
  }

  /**
   * Continues the reads in progress, up to about `maxBytes` in all. Returns the bytes moved (0 = no
   * progress). Failures are reported through {@link SingleCopyHooks.fail}.
   */
  pump(maxBytes: number): number {
    let moved = 0;
    for (let i = 0; i < this.reading.length && moved < maxBytes; ) {
      const peer = this.reading[i];
      const p = this.peers[peer]!;
      try {
        if (p.state === State.READING) moved += this.read(peer, p, maxBytes - moved);
        else if (p.state === State.FALLBACK) this.awaitFallback(peer, p);
      } catch (error) {
        this.abandon(peer, p); // takes it off `reading`: index i is the next one now
        this.hooks.fail(peer, error as Error);
        continue;
      }
      if (p.state !== State.IDLE) i++;
      else this.reading.splice(i, 1);
    }
    return moved;
  }

  private newPeer(peer: number): PeerCopy {
    const descriptor = new Uint8Array(DESCRIPTOR_BYTES);
    const p: PeerCopy = {
      state: State.IDLE,
      begun: Begun.PASS,
      descriptor,
      view: new DataView(descriptor.buffer),
      header: descriptor.subarray(0, FRAME_HEADER_BYTES),
      pid: 0,
      token: 0,
      handle: 0n,
      length: 0,
      target: undefined,
      want: 0,
      done: 0,
      readUpTo: 0,
      helping: false,
      control: undefined,
      targetHandle: undefined,
      abandoned: undefined,
    };
    this.peers[peer] = p;
    return p;
  }

  /** A descriptor arrived: begin the frame it stands for, then read (or refuse). */
  private open(peer: number, p: PeerCopy): void {
    this.counts.descriptors++;
    const v = p.view;
    p.pid = v.getUint32(D_PID, true);
    p.token = v.getInt32(D_TOKEN, true);
    if (p.token < 1 || p.token > MAX_TOKEN) throw corrupt(`a single-copy token ${p.token}`);
    p.handle = v.getBigUint64(D_HANDLE, true);
    const hi = v.getUint32(D_LENGTH + 4, true);
    if (hi > 0x1f_ffff) throw corrupt('a single-copy length beyond 2^53');
    p.length = hi * 0x1_0000_0000 + v.getUint32(D_LENGTH, true);
    if (p.length !== frameLength(p.header)) throw corrupt(`a descriptor of ${p.length} bytes for a frame that announces ${frameLength(p.header)}`);
    if (p.pid !== this.hooks.pidOf(peer)) throw corrupt(`rank ${peer} described memory of pid ${p.pid}, not its own`);
    p.control = this.hooks.control(peer);
    if (p.control === undefined) throw corrupt(`rank ${peer} sent a descriptor on a ring this rank does not know`);
    // The core says where the payload goes (for rendezvous DATA: the user's buffer).
    const target = this.inner.begin(peer, p.header);
    p.target = target;
    p.abandoned = undefined;
    p.want = target === undefined ? 0 : Math.min(target.byteLength, p.length);
    p.done = 0;
    p.readUpTo = p.want;
    p.helping = false;
    if (this.refused.has(peer) || !this.hooks.allowed(peer)) {
      this.refuse(peer, p);
      this.reading.push(peer);
      return;
    }
    if (p.want >= this.helpMinBytes && (p.targetHandle = this.handleOf(target!)) !== undefined) {
      // The second half (page-aligned) is the producer's to write; this rank reads the first.
      const split = Math.floor(p.want / 2 / 4096) * 4096;
      p.control!.askHelp(p.token, p.targetHandle, split, p.want - split);
      this.hooks.wakeProducer(peer);
      p.readUpTo = split;
      p.helping = true;
    }
    p.state = State.READING;
    // The first piece now; the rest (if any) from the transport's poll.
    this.read(peer, p, PIECE_BYTES);
    if ((p.state as State) !== State.IDLE) this.reading.push(peer); // read() may have finished or refused it
  }

  /**
   * Refused, waiting for the payload through the ring: a producer that failed before it saw the
   * refusal gave the message up, and sends no fallback frame — waiting would wait forever.
   */
  private awaitFallback(peer: number, p: PeerCopy): void {
    if (p.control!.fateOf(p.token) === Fate.GIVEN_UP) throw givenUp(peer);
  }

  /** Reads up to `budget` bytes of `p`'s payload; finishes the frame when all is in. */
  private read(peer: number, p: PeerCopy, budget: number): number {
    const target = p.target;
    let moved = 0;
    while (p.done < p.readUpTo && moved < budget) {
      const n = Math.min(p.readUpTo - p.done, PIECE_BYTES, budget - moved);
      const into = p.done === 0 && n === target!.byteLength ? target! : target!.subarray(p.done, p.done + n);
      const got = this.copy(peer, p, p.done, into);
      if (got < 0) return moved; // refused: the payload comes through the ring
      if (!(got > 0)) throw corrupt(`rank ${peer}'s described buffer ended after ${p.done} of ${p.want} bytes`);
      p.done += got;
      moved += got;
    }
    if (p.helping && p.done >= p.readUpTo) {
      const outcome = p.control!.helpOutcome(p.token);
      if (outcome === 0) {
        // The producer is still writing its half — unless it is gone (its thread ended, its pins with
        // it): a read of nothing says so (ESRCH → PEER_LOST), where waiting would wait forever.
        this.copy(peer, p, p.done === 0 ? 0 : p.done - 1, EMPTY);
        return moved;
      }
      p.helping = false;
      p.control!.withdrawHelp(p.token); // answered: the request ends
      this.releaseTarget(p);
      // FAILED because the sender's send failed: no use reading the rest.
      if (p.control!.fateOf(p.token) === Fate.GIVEN_UP) throw givenUp(peer);
      if (outcome === HelpResult.WRITTEN) {
        this.counts.helped++;
        p.done = p.want;
      } else {
        p.readUpTo = p.want;
        return moved + this.read(peer, p, Math.max(0, budget - moved));
      }
    }
    if (p.done >= p.want) {
      // All here: deliver — unless the sender's send failed first (its caller may have reused the
      // buffer these bytes came from). One compare-and-swap decides which of the two happened.
      if (p.control!.decide(p.token, Fate.DELIVERED) !== Fate.DELIVERED) throw givenUp(peer);
      this.counts.reads++;
      this.counts.bytesRead += p.done;
      p.state = State.IDLE;
      p.target = undefined;
      // The sender's buffer is free as soon as the bytes are here: answer first, then deliver.
      p.control!.finish(p.token, CopyResult.READ);
      this.hooks.wakeProducer(peer);
      this.inner.commit(peer);
    }
    return moved;
  }

  /**
   * Copies bytes `offset …` of `p`'s payload into `into`: the bytes copied, or −1 after a refusal
   * (the frame then waits for its fallback). Throws PEER_LOST or CORRUPT.
   */
  private copy(peer: number, p: PeerCopy, offset: number, into: Uint8Array): number {
    try {
      return this.reader.read(p.pid, p.handle, offset, into);
    } catch (error) {
      // The sender's send failed and its caller let the buffer go: that, not a bad descriptor.
      if (p.control?.fateOf(p.token) === Fate.GIVEN_UP) throw givenUp(peer, error);
      const code = (error as { code?: string }).code ?? '';
      if (REFUSALS.has(code)) {
        this.refuse(peer, p);
        return -1;
      }
      if (code === 'ESRCH') throw new VmcommError('PEER_LOST', `rank ${peer} is gone (its process, or the memory it described, no longer exists)`, { cause: error, peer });
      if (code === 'EFAULT') throw corrupt(`rank ${peer} described ${p.length} bytes it does not have`);
      throw new VmcommError('PEER_LOST', `single copy from rank ${peer} failed: ${(error as Error).message}`, { cause: error, peer });
    }
  }

  /** This rank cannot read `peer`: ask for the payload through the ring, and for every later one. */
  private refuse(peer: number, p: PeerCopy): void {
    this.counts.refusals++;
    this.refused.add(peer);
    p.state = State.FALLBACK;
    // A half the producer was asked to write: withdrawn (the fallback frame brings it all). A claimed
    // request cannot be cleared, so this waits for a piece under way (the producer sends the fallback
    // frame only after it, so no piece lands over it either way).
    if (p.helping) p.control!.withdrawHelp(p.token);
    p.helping = false;
    this.releaseTarget(p);
    p.control!.finish(p.token, CopyResult.REFUSED);
    this.hooks.wakeProducer(peer);
  }

  /**
   * This rank stops reading (it stops, or the peer failed): every frame in progress is dropped, a half
   * the producer was asked to write is withdrawn, and targets are released.
   */
  stop(): void {
    for (let peer = 0; peer < this.peers.length; peer++) {
      const p = this.peers[peer];
      if (p === undefined) continue;
      this.abandon(peer, p);
      // Dropped with the transport: a producer's piece still under way after the withdrawal's wait
      // ran out (≤ 2 MiB into a shm target) is the window left after a stop.
      p.abandoned = undefined;
    }
  }

  /** Drops `p`'s frame in progress: withdraws a half asked of the producer, releases the target. */
  private abandon(peer: number, p: PeerCopy): void {
    // The producer claims the request for each piece it writes, and the withdrawal waits for a piece
    // under way: afterwards nothing lands in the target, which the core then hands back. Unless the
    // wait ran out (a producer that died mid-piece, or is stuck): then its piece may still land, and
    // the target stays referenced (a pinned one stays valid by itself).
    if (p.helping && p.control?.withdrawHelp(p.token) === false && this.reader.handlesHoldMemory !== true) p.abandoned = p.target;
    p.state = State.IDLE;
    p.begun = Begun.PASS;
    p.target = undefined;
    p.helping = false;
    this.releaseTarget(p);
    this.reading = this.reading.filter((r) => r !== peer);
  }

  /** A handle for the producer to write `target` through; none (this rank copies it all) if the target cannot have one. */
  private handleOf(target: Uint8Array): bigint | undefined {
    try {
      return this.reader.targetHandle(target);
    } catch {
      return undefined;
    }
  }

  private releaseTarget(p: PeerCopy): void {
    const handle = p.targetHandle;
    if (handle === undefined) return;
    p.targetHandle = undefined;
    this.reader.releaseTarget(handle);
  }
}
