/**
 * Single copy (cross-memory attach, LiMIC's idea) on top of the ring layer, with no change to it.
 *
 * ## Protocol
 *
 * A frame whose payload is at least `cmaMinBytes` long, between ranks that both allow CMA and share a
 * PID namespace, does not travel through the ring. The producer instead publishes a *descriptor
 * frame* — a {@link FRAME_HEADER_BYTES}-byte marker header (byte 0 = {@link SHM_FRAME_MARK}, never
 * a protocol version, so the core could not mistake it for a frame of its own) whose 72-byte payload
 * is the original header, the producer's pid, a token, the payload's address and its length — and
 * then publishes nothing more on that ring until the consumer answers (*the gate*; see
 * `shm-channel.ts`). The consumer:
 *
 * 1. hands the original header to the core (`begin`), which says where the payload goes — for a
 *    rendezvous `DATA` frame, the user's receive buffer;
 * 2. `cmaRead`s the payload straight from the producer's memory into it (pieces of at most
 *    {@link CMA_PIECE_BYTES} per call, continued by later polls so a huge message never holds the
 *    event loop for long);
 * 3. `commit`s, then stores the token and {@link CmaResult.READ} in the ring file's control words
 *    (`layout.ts`) and wakes the producer if it sleeps. The producer's `done` fires then: its buffer
 *    may be reused.
 *
 * **Cooperative copy.** `process_vm_readv` keeps one core busy while the producer, which waits at
 * the gate anyway, idles. So for a payload of at least {@link HELP_MIN_BYTES} the consumer asks
 * the producer (ring-file control words, `layout.ts`) to write the second half straight into the
 * target with `process_vm_writev`, while it reads the first half: both cores copy, as in MPICH's
 * pipelined two-copy protocol, with one copy each. The consumer answers READ only after the producer
 * said its half is written (or could not be: then the consumer reads it too).
 *
 * If the kernel refuses (`EPERM`: another user, Yama, a non-dumpable process; `ENOSYS`; `ENOTSUP`:
 * `VMCOMM_CMA=0`), the consumer answers {@link CmaResult.REFUSED} and keeps the frame open; the
 * producer then sends the payload through the ring as a *fallback frame* (marker kind
 * {@link ShmFrame.CMA_FALLBACK}), which lands in the same target, and sends no more descriptors to
 * that peer. Because of the gate nothing overtakes the frame, so order holds and no message is lost.
 *
 * ## Validation
 *
 * The consumer checks every descriptor: its length against the original header, its pid against the
 * producer's card (so a peer cannot make this rank read a third process), and that nothing else comes
 * from that peer while a descriptor is open. A remote range that ends early (`EFAULT`, a short read)
 * is `CORRUPT`; a producer that died (`ESRCH`) is `PEER_LOST`. The producer checks the answer words
 * (`RingFileControl.cmaOutcome`).
 *
 * @module
 */

import type { FrameSink } from '../../lib/backend.js';
import { VmcommError } from '../../lib/errors.js';
import { FRAME_HEADER_BYTES, frameLength } from '../../lib/protocol.js';
import { corrupt } from '../../lib/ring/region.js';
import type { NativeAddon } from '../native/native.js';
import { CmaResult, HelpResult, type RingFileControl } from './layout.js';

/** Byte 0 of a frame header that only the shm transport reads (the core's frames carry version 1 there). */
export const SHM_FRAME_MARK = 0xe5;
/** Byte 1 of a marked header. */
export const ShmFrame = {
  /** The payload is a single-copy descriptor ({@link CMA_DESCRIPTOR_BYTES} bytes). */
  CMA_DESCRIPTOR: 1,
  /** The payload is the one the last descriptor described, sent through the ring after a refusal. */
  CMA_FALLBACK: 2,
} as const;

/** Bytes of a descriptor: the original header, u32 pid, u32 token, u64 address, u64 length. */
export const CMA_DESCRIPTOR_BYTES = FRAME_HEADER_BYTES + 24;
/** One `cmaRead` moves at most this much; a longer payload is continued by later polls. */
export const CMA_PIECE_BYTES = 2 * 1024 * 1024;
/** Payloads of at least this many bytes are copied by both sides (see "Cooperative copy"). */
export const HELP_MIN_BYTES = 512 * 1024;

const D_PID = FRAME_HEADER_BYTES;
const D_TOKEN = FRAME_HEADER_BYTES + 4;
const D_ADDRESS = FRAME_HEADER_BYTES + 8;
const D_LENGTH = FRAME_HEADER_BYTES + 16;

/** Errors of `cmaRead` that mean "not allowed here", not "broken": fall back to the ring. */
const REFUSALS = new Set(['EPERM', 'EACCES', 'ENOSYS', 'ENOTSUP', 'EOPNOTSUPP']);

/** Writes a marker header of `kind` announcing `payloadBytes` into `out` (48 bytes). */
export function markerHeader(out: Uint8Array, kind: number, payloadBytes: number): Uint8Array {
  out.fill(0, 0, FRAME_HEADER_BYTES);
  out[0] = SHM_FRAME_MARK;
  out[1] = kind;
  const v = new DataView(out.buffer, out.byteOffset, FRAME_HEADER_BYTES);
  v.setUint32(32, payloadBytes % 0x1_0000_0000, true);
  v.setUint32(36, Math.floor(payloadBytes / 0x1_0000_0000), true);
  return out;
}

/** Fills a descriptor (see {@link CMA_DESCRIPTOR_BYTES}) into `out`. */
export function encodeDescriptor(out: Uint8Array, header: Uint8Array, pid: number, token: number, address: bigint, length: number): Uint8Array {
  out.set(header.subarray(0, FRAME_HEADER_BYTES), 0);
  const v = new DataView(out.buffer, out.byteOffset, CMA_DESCRIPTOR_BYTES);
  v.setUint32(D_PID, pid, true);
  v.setInt32(D_TOKEN, token, true);
  v.setBigUint64(D_ADDRESS, address, true);
  v.setUint32(D_LENGTH, length % 0x1_0000_0000, true);
  v.setUint32(D_LENGTH + 4, Math.floor(length / 0x1_0000_0000), true);
  return out;
}

/** What a {@link CmaSink} asks of its transport. */
export interface CmaHooks {
  /** The pid `peer`'s card gives (descriptors must carry it). */
  pidOf(peer: number): number;
  /** Whether this rank may read `peer`'s memory at all (both allow CMA, same PID namespace). */
  allowed(peer: number): boolean;
  /** The control words of the ring from `peer`, where answers go. */
  control(peer: number): RingFileControl | undefined;
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
interface PeerCma {
  state: State;
  begun: Begun;
  readonly descriptor: Uint8Array;
  readonly view: DataView;
  readonly header: Uint8Array;
  pid: number;
  token: number;
  address: bigint;
  length: number;
  target: Uint8Array | undefined;
  want: number;
  done: number;
  /** This rank reads bytes `0 … readUpTo`; the producer writes the rest while {@link helping}. */
  readUpTo: number;
  helping: boolean;
}

/**
 * The consumer's side: a {@link FrameSink} in front of the core's, which passes the core's frames
 * through and turns descriptor and fallback frames into the one frame they stand for.
 */
export class CmaSink implements FrameSink {
  private readonly peers: (PeerCma | undefined)[] = [];
  /** Peers whose memory this rank could not read: no more descriptors are accepted from them. */
  private readonly refused = new Set<number>();
  /** Peers with a read in progress. */
  private reading: number[] = [];
  /** Descriptors received, payloads read by single copy (and their bytes), refusals (diagnostics). */
  readonly counts = { descriptors: 0, reads: 0, bytesRead: 0, refusals: 0, helped: 0 };

  constructor(
    private readonly inner: FrameSink,
    private readonly addon: Pick<NativeAddon, 'cmaRead' | 'addressOf'>,
    private readonly hooks: CmaHooks,
  ) {}

  /** Reads in progress (the transport's poll continues them). */
  get active(): number {
    return this.reading.length;
  }

  /** Whether `peer`'s memory was found unreadable. */
  refuses(peer: number): boolean {
    return this.refused.has(peer);
  }

  begin(peer: number, header: Uint8Array): Uint8Array | undefined {
    const s = this.peers[peer];
    if (header[0] !== SHM_FRAME_MARK) {
      if (s !== undefined) {
        if (s.state !== State.IDLE) throw corrupt(`rank ${peer} sent a frame while its single-copy message was still open`);
        s.begun = Begun.PASS;
      }
      return this.inner.begin(peer, header);
    }
    const p = s ?? this.newPeer(peer);
    const length = frameLength(header);
    switch (header[1]) {
      case ShmFrame.CMA_DESCRIPTOR:
        if (p.state !== State.IDLE) throw corrupt(`rank ${peer} sent a second single-copy descriptor before the first was answered`);
        if (length !== CMA_DESCRIPTOR_BYTES) throw corrupt(`a single-copy descriptor of ${length} bytes`);
        p.begun = Begun.DESCRIPTOR;
        return p.descriptor;
      case ShmFrame.CMA_FALLBACK:
        if (p.state !== State.FALLBACK) throw corrupt(`rank ${peer} sent a fallback payload no refusal asked for`);
        if (length !== p.length) throw corrupt(`a fallback payload of ${length} bytes for a ${p.length}-byte message`);
        p.begun = Begun.FALLBACK;
        return p.target;
      default:
        throw corrupt(`unknown shm frame kind ${header[1]}`);
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
    this.inner.commit(peer);
  }

  lost(peer: number, error: Error): void {
    const p = this.peers[peer];
    if (p !== undefined) {
      p.state = State.IDLE;
      p.begun = Begun.PASS;
      p.target = undefined;
    }
    this.reading = this.reading.filter((r) => r !== peer);
    this.inner.lost(peer, error);
  }

  /**
   * Continues the reads in progress, up to about `maxBytes` in all. Returns the bytes moved (0 = no
   * progress). Failures are reported through {@link CmaHooks.fail}.
   */
  pump(maxBytes: number): number {
    let moved = 0;
    for (let i = 0; i < this.reading.length && moved < maxBytes; ) {
      const peer = this.reading[i];
      const p = this.peers[peer]!;
      try {
        moved += this.read(peer, p, maxBytes - moved);
      } catch (error) {
        this.reading.splice(i, 1);
        this.hooks.fail(peer, error as Error);
        continue;
      }
      if (p.state === State.READING) i++;
      else this.reading.splice(i, 1);
    }
    return moved;
  }

  private newPeer(peer: number): PeerCma {
    const descriptor = new Uint8Array(CMA_DESCRIPTOR_BYTES);
    const p: PeerCma = {
      state: State.IDLE,
      begun: Begun.PASS,
      descriptor,
      view: new DataView(descriptor.buffer),
      header: descriptor.subarray(0, FRAME_HEADER_BYTES),
      pid: 0,
      token: 0,
      address: 0n,
      length: 0,
      target: undefined,
      want: 0,
      done: 0,
      readUpTo: 0,
      helping: false,
    };
    this.peers[peer] = p;
    return p;
  }

  /** A descriptor arrived: begin the frame it stands for, then read (or refuse). */
  private open(peer: number, p: PeerCma): void {
    this.counts.descriptors++;
    const v = p.view;
    p.pid = v.getUint32(D_PID, true);
    p.token = v.getInt32(D_TOKEN, true);
    p.address = v.getBigUint64(D_ADDRESS, true);
    const hi = v.getUint32(D_LENGTH + 4, true);
    if (hi > 0x1f_ffff) throw corrupt('a single-copy length beyond 2^53');
    p.length = hi * 0x1_0000_0000 + v.getUint32(D_LENGTH, true);
    if (p.length !== frameLength(p.header)) throw corrupt(`a descriptor of ${p.length} bytes for a frame that announces ${frameLength(p.header)}`);
    if (p.pid !== this.hooks.pidOf(peer)) throw corrupt(`rank ${peer} described memory of pid ${p.pid}, not its own`);
    if (this.hooks.control(peer) === undefined) throw corrupt(`rank ${peer} sent a descriptor on a ring this rank does not know`);
    // The core says where the payload goes (for rendezvous DATA: the user's buffer).
    const target = this.inner.begin(peer, p.header);
    p.target = target;
    p.want = target === undefined ? 0 : Math.min(target.byteLength, p.length);
    p.done = 0;
    p.readUpTo = p.want;
    p.helping = false;
    if (this.refused.has(peer) || !this.hooks.allowed(peer)) return this.refuse(peer, p);
    if (p.want >= HELP_MIN_BYTES) {
      // The second half (page-aligned) is the producer's to write; this rank reads the first.
      const split = Math.floor(p.want / 2 / 4096) * 4096;
      this.hooks.control(peer)!.askHelp(p.token, this.addon.addressOf(target!) + BigInt(split), split, p.want - split);
      this.hooks.wakeProducer(peer);
      p.readUpTo = split;
      p.helping = true;
    }
    p.state = State.READING;
    // The first piece now; the rest (if any) from the transport's poll.
    this.read(peer, p, CMA_PIECE_BYTES);
    if (p.state === State.READING) this.reading.push(peer);
  }

  /** Reads up to `budget` bytes of `p`'s payload; finishes the frame when all is in. */
  private read(peer: number, p: PeerCma, budget: number): number {
    const target = p.target;
    let moved = 0;
    while (p.done < p.readUpTo && moved < budget) {
      const n = Math.min(p.readUpTo - p.done, CMA_PIECE_BYTES, budget - moved);
      const into = p.done === 0 && n === target!.byteLength ? target! : target!.subarray(p.done, p.done + n);
      let got: number;
      try {
        got = this.addon.cmaRead(p.pid, p.done === 0 ? p.address : p.address + BigInt(p.done), into);
      } catch (error) {
        const code = (error as { code?: string }).code ?? '';
        if (REFUSALS.has(code)) {
          this.refuse(peer, p);
          return moved;
        }
        if (code === 'ESRCH') throw new VmcommError('PEER_LOST', `rank ${peer} is gone (its process no longer exists)`, { cause: error, peer });
        if (code === 'EFAULT') throw corrupt(`rank ${peer} described ${p.length} bytes at an address it has not mapped`);
        throw new VmcommError('PEER_LOST', `single copy from rank ${peer} failed: ${(error as Error).message}`, { cause: error, peer });
      }
      if (!(got > 0)) throw corrupt(`rank ${peer}'s described buffer ended after ${p.done} of ${p.want} bytes`);
      p.done += got;
      moved += got;
    }
    if (p.helping && p.done >= p.readUpTo) {
      const outcome = this.hooks.control(peer)!.helpOutcome(p.token);
      if (outcome === 0) return moved; // the producer is still writing its half
      p.helping = false;
      if (outcome === HelpResult.WRITTEN) {
        this.counts.helped++;
        p.done = p.want;
      } else {
        p.readUpTo = p.want;
        return moved + this.read(peer, p, Math.max(0, budget - moved));
      }
    }
    if (p.done >= p.want) {
      this.counts.reads++;
      this.counts.bytesRead += p.done;
      p.state = State.IDLE;
      p.target = undefined;
      // The sender's buffer is free as soon as the bytes are here: answer first, then deliver.
      this.hooks.control(peer)!.finishCma(p.token, CmaResult.READ);
      this.hooks.wakeProducer(peer);
      this.inner.commit(peer);
    }
    return moved;
  }

  /** This rank cannot read `peer`: ask for the payload through the ring, and for every later one. */
  private refuse(peer: number, p: PeerCma): void {
    this.counts.refusals++;
    this.refused.add(peer);
    p.state = State.FALLBACK;
    this.hooks.control(peer)!.finishCma(p.token, CmaResult.REFUSED);
    this.hooks.wakeProducer(peer);
  }
}
