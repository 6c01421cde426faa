// Single copy's protocol (single-copy-sink.ts, single-copy-channel.ts) on a ring in plain memory,
// with a stand-in for the copy (a map of pretend addresses, as the shm transport's kernel copy would
// see them): read, refusal and fallback, order, pieces, cooperative copy, handles released, validation,
// a dead reader. Each transport's own copier is tested with it (backends/shm/test/cma.test.ts,
// backends/threads/test/single-copy.test.ts).
import { describe, expect, it } from 'vitest';
import type { FrameSink } from '../../backend.js';
import { emptyHeader, encodeHeader, FrameKind, frameLength } from '../../protocol.js';
import { Inbox, InboxSender, inboxBytes, initInbox } from '../inbox.js';
import { SingleCopyChannel } from '../single-copy-channel.js';
import { Fate, MAX_TOKEN, nextToken, SINGLE_COPY_CONTROL_BYTES, SingleCopyControl, WITHDRAW_WAIT_MS } from '../single-copy-control.js';
import { HELP_MIN_BYTES, PIECE_BYTES, SingleCopySink, type PayloadReader } from '../single-copy-sink.js';
import { initRing, RingConsumer, ringRegionBytes } from '../spsc-ring.js';
import { pattern, same } from '../../../tests/helpers/bytes.js';

/** The cooperative-copy request for `token`, as a producer would find it (claimed and released at once). */
function peekHelp(control: SingleCopyControl, token: number) {
  const req = control.claimHelp(token);
  if (req !== undefined) control.releaseHelp(token);
  return req;
}

const PRODUCER_PID = 4242;
const CONSUMER_PID = 4343;
const MIN = 1024;

/** A producer (rank 0) and a consumer (rank 1) on one ring in plain memory; the "kernel" is a map of addresses. */
function harness(options: { refuse?: boolean; refuseWrites?: boolean; pidOf?: number; ringBytes?: number; readerAlive?: () => boolean; helpMinBytes?: number } = {}) {
  const ringBytes = options.ringBytes ?? 4096;
  const sab = new SharedArrayBuffer(SINGLE_COPY_CONTROL_BYTES + ringRegionBytes(ringBytes));
  const control = new SingleCopyControl({ sab, byteOffset: 0, byteLength: SINGLE_COPY_CONTROL_BYTES });
  const region = { sab, byteOffset: SINGLE_COPY_CONTROL_BYTES, byteLength: ringRegionBytes(ringBytes) };
  initRing(region);
  const inboxRegion = { sab: new SharedArrayBuffer(inboxBytes(2)), byteOffset: 0, byteLength: inboxBytes(2) };
  initInbox(inboxRegion, 2);
  new Inbox(inboxRegion);
  const memory = new Map<bigint, Uint8Array>();
  let nextAddress = 0x10000n;
  /** Gives a view an address in the pretend address space (both "processes" share it). */
  const addressOf = (view: ArrayBufferView): bigint => {
    const address = nextAddress;
    nextAddress += BigInt(view.byteLength) + 0x10000n;
    memory.set(address, new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
    return address;
  };
  const kernel = {
    reads: 0,
    writes: 0,
    refuse: options.refuse ?? false,
    refuseWrites: options.refuseWrites ?? false,
    gone: false,
    released: 0,
    targetsReleased: 0,
    closedHooks: 0,
    addressOf,
    cmaWrite(pid: number, remote: bigint, from: ArrayBufferView): number {
      this.writes++;
      if (this.refuseWrites) throw Object.assign(new Error('operation not permitted'), { code: 'EPERM', errno: 1 });
      expect(pid).toBe(CONSUMER_PID);
      for (const [base, view] of memory) {
        if (remote >= base && remote < base + BigInt(view.byteLength)) {
          const at = Number(remote - base);
          const n = Math.min(from.byteLength, view.byteLength - at);
          view.set(new Uint8Array(from.buffer, from.byteOffset, n), at);
          return n;
        }
      }
      throw Object.assign(new Error('bad address'), { code: 'EFAULT', errno: 14 });
    },
    cmaRead(pid: number, remote: bigint, into: ArrayBufferView): number {
      if (into.byteLength > 0) this.reads++; // copies; a read of nothing asks only whether the sender is there
      if (this.gone) throw Object.assign(new Error('no such process'), { code: 'ESRCH', errno: 3 });
      if (this.refuse) throw Object.assign(new Error('operation not permitted'), { code: 'EPERM', errno: 1 });
      expect(pid).toBe(PRODUCER_PID);
      for (const [base, view] of memory) {
        if (remote >= base && remote < base + BigInt(view.byteLength)) {
          const from = Number(remote - base);
          const n = Math.min(into.byteLength, view.byteLength - from);
          new Uint8Array(into.buffer, into.byteOffset, n).set(view.subarray(from, from + n));
          return n;
        }
      }
      throw Object.assign(new Error('bad address'), { code: 'EFAULT', errno: 14 });
    },
  };
  const lost: Error[] = [];
  const pending = new Set<SingleCopyChannel>();
  const channel = new SingleCopyChannel({
    ring: { peer: 1, self: 0, ring: region, descriptor: new Uint8Array([1]), peerInbox: new InboxSender(inboxRegion), wake: () => {}, closed: () => kernel.closedHooks++ },
    control,
    writer: {
      pid: PRODUCER_PID,
      minBytes: MIN,
      handleOf: (payload) => addressOf(payload),
      release: () => kernel.released++,
      write: (handle, offset, from) => kernel.cmaWrite(CONSUMER_PID, handle + BigInt(offset), from),
    },
    needsFlush: (c) => pending.add(c),
    lost: (_peer, error) => lost.push(error),
    readerAlive: options.readerAlive ?? (() => true),
    livenessCheckMs: 5,
    now: () => performance.now(),
  });
  const delivered: { kind: number; data: Uint8Array }[] = [];
  let current: { kind: number; data: Uint8Array } | undefined;
  const inner: FrameSink = {
    begin: (_peer, header) => {
      current = { kind: header[1], data: new Uint8Array(frameLength(header)) };
      return current.data;
    },
    commit: () => delivered.push(current!),
    lost: (_peer, error) => lost.push(error),
  };
  const failed: Error[] = [];
  const reader: PayloadReader = {
    read: (pid, handle, offset, into) => kernel.cmaRead(pid, handle + BigInt(offset), into),
    targetHandle: (target) => addressOf(target),
    releaseTarget: () => kernel.targetsReleased++,
    helpMinBytes: options.helpMinBytes,
  };
  const sink = new SingleCopySink(inner, reader, {
    pidOf: () => options.pidOf ?? PRODUCER_PID,
    allowed: () => true,
    control: () => control,
    wakeProducer: () => {},
    fail: (_peer, error) => failed.push(error),
  });
  const consumer = new RingConsumer(region);
  /** Runs both sides until nothing moves. */
  const run = (rounds = 200): void => {
    for (let i = 0; i < rounds; i++) {
      consumer.poll(sink, 0, 16);
      sink.pump(PIECE_BYTES);
      for (const c of pending) if (c.flush() >= 0 && !c.pending) pending.delete(c);
    }
  };
  const send = (payload: Uint8Array, kind: number = FrameKind.DATA) => {
    const header = encodeHeader({ ...emptyHeader(), kind: kind as never, payloadBytes: payload.byteLength, messageBytes: payload.byteLength, recvId: 1 }, new Uint8Array(48));
    const state = { done: false, error: undefined as Error | undefined };
    channel.send(header, payload, (error) => {
      state.done = true;
      state.error = error;
    });
    return state;
  };
  return { channel, sink, kernel, delivered, lost, failed, run, send, consumer, memory, control };
}

describe('single copy, the protocol', () => {
  it('reads a large payload from the sender, holds later frames back until then, and frees the sender’s buffer only after the read', () => {
    const h = harness();
    const small = pattern(100, 1);
    const big = pattern(MIN * 5, 2);
    const s1 = h.send(small);
    const s2 = h.send(big);
    const s3 = h.send(pattern(10, 3), FrameKind.EAGER);
    expect(s1.done).toBe(true);
    expect(s2.done).toBe(false); // borrowed until the reader has it
    expect(s3.done).toBe(false); // behind the gate
    h.run();
    expect(s2).toEqual({ done: true, error: undefined });
    expect(s3.done).toBe(true);
    expect(h.delivered.map((d) => d.data.byteLength)).toEqual([100, MIN * 5, 10]);
    expect(same(h.delivered[1].data, big)).toBe(true);
    expect(h.delivered[2].kind).toBe(FrameKind.EAGER);
    expect(h.channel.counts).toEqual({ singleCopies: 1, fallbacks: 0 });
    expect(h.sink.counts).toMatchObject({ descriptors: 1, reads: 1, bytesRead: MIN * 5, refusals: 0 });
    expect(h.kernel.released).toBe(1); // the payload's handle, once answered
    expect(h.lost).toEqual([]);
  });

  it('after a refusal (EPERM) sends the payload through the ring, in order, and every later one too', () => {
    const h = harness({ refuse: true });
    const a = pattern(MIN * 3, 4);
    const b = pattern(MIN * 2, 5);
    const sends = [h.send(a), h.send(pattern(7, 6)), h.send(b)];
    h.run();
    expect(sends.every((s) => s.done && s.error === undefined)).toBe(true);
    expect(h.delivered.map((d) => d.data.byteLength)).toEqual([MIN * 3, 7, MIN * 2]);
    expect(same(h.delivered[0].data, a)).toBe(true);
    expect(same(h.delivered[2].data, b)).toBe(true);
    expect(h.kernel.reads).toBe(1); // one try, then never again
    expect(h.sink.refuses(0)).toBe(true);
    expect(h.channel.singleCopy).toBe(false);
    expect(h.channel.counts).toEqual({ singleCopies: 0, fallbacks: 1 });
    expect(h.lost).toEqual([]);
  });

  it('cooperative copy: for a large payload the sender writes the second half into the reader while it reads the first', () => {
    const h = harness();
    const big = pattern(HELP_MIN_BYTES * 3 + 12345, 9);
    const s = h.send(big);
    h.run();
    expect(s).toEqual({ done: true, error: undefined });
    expect(same(h.delivered[0].data, big)).toBe(true);
    expect(h.kernel.writes).toBeGreaterThan(0);
    expect(h.sink.counts).toMatchObject({ reads: 1, helped: 1 });
    expect(h.kernel.targetsReleased).toBe(1); // the target's handle, once the sender wrote its half
    expect(h.kernel.released).toBe(1);
    expect(h.lost).toEqual([]);
    expect(peekHelp(h.control, 1)).toBeUndefined(); // answered: the request ended (tokens wrap)
  });

  it('cooperative copy: when the kernel refuses the sender’s write, the reader reads that half itself', () => {
    const h = harness({ refuseWrites: true });
    const big = pattern(HELP_MIN_BYTES * 2, 10);
    const s = h.send(big);
    h.run();
    expect(s).toEqual({ done: true, error: undefined });
    expect(same(h.delivered[0].data, big)).toBe(true);
    expect(h.kernel.writes).toBe(1);
    expect(h.sink.counts).toMatchObject({ reads: 1, helped: 0 });
    expect(h.kernel.targetsReleased).toBe(1);
    expect(h.lost).toEqual([]);
  });

  it('reads a payload larger than one piece over several polls', () => {
    // Writes refused, so the reader copies all of it (the cooperative case is checked below).
    const h = harness({ refuseWrites: true });
    const huge = pattern(PIECE_BYTES * 2 + 3, 7);
    const s = h.send(huge);
    h.consumer.poll(h.sink, 0, 16); // the descriptor and the first piece
    expect(h.sink.active).toBe(1);
    expect(s.done).toBe(false);
    h.run();
    expect(s.done).toBe(true);
    expect(same(h.delivered[0].data, huge)).toBe(true);
    expect(h.kernel.reads).toBe(3);
  });

  it('cooperative copy of a payload of several pieces: each side copies its half piece by piece', () => {
    const h = harness();
    const huge = pattern(PIECE_BYTES * 4 + 3, 8);
    const s = h.send(huge);
    h.run();
    expect(s).toEqual({ done: true, error: undefined });
    expect(same(h.delivered[0].data, huge)).toBe(true);
    expect(h.kernel.reads).toBe(2); // the first half: 4 MiB in 2 MiB pieces
    expect(h.kernel.writes).toBe(3); // the second half: 4 MiB + 3 bytes
  });

  it('refuses a descriptor that names another process: CORRUPT', () => {
    const h = harness({ pidOf: 1 });
    h.send(pattern(MIN, 8));
    expect(() => h.run()).toThrow(expect.objectContaining({ name: 'VmcommError', code: 'CORRUPT', message: expect.stringMatching(/pid 4242/) }));
  });

  it('a sender that is gone (ESRCH) is PEER_LOST at the reader', () => {
    const h = harness();
    h.kernel.gone = true;
    h.send(pattern(MIN, 9));
    expect(() => h.run()).toThrow(expect.objectContaining({ code: 'PEER_LOST' }));
  });

  it('closes at once when nothing is behind the gate; with a descriptor open, once the reader answered', async () => {
    // A rank that sleeps polls nothing until its doorbell rings: a close that waited for a flush of
    // an idle channel would never finish (threads sleeps in Atomics.waitAsync without a timeout).
    const idle = harness();
    let closed = false;
    void idle.channel.close().then(() => (closed = true));
    await Promise.resolve();
    await Promise.resolve();
    expect(closed).toBe(true);

    const busy = harness();
    const s = busy.send(pattern(MIN * 2, 13));
    let busyClosed = false;
    void busy.channel.close().then(() => (busyClosed = true));
    await Promise.resolve();
    expect(busyClosed).toBe(false);
    busy.run();
    await Promise.resolve();
    await Promise.resolve();
    expect(s).toEqual({ done: true, error: undefined });
    expect(busyClosed).toBe(true);
  });

  // The sender's caller is told its send failed and may reuse the buffer at once: the reader must not
  // deliver bytes it copied from there, nor wait for a half that will never be written.
  it('a sender that fails while the reader waits for the half it asked: the reader is woken, delivers nothing and fails the pair (PEER_LOST)', () => {
    const h = harness();
    const big = pattern(HELP_MIN_BYTES * 2, 14);
    const s = h.send(big);
    h.consumer.poll(h.sink, 0, 16); // the descriptor: the reader reads its half and asks for the other
    expect(h.sink.active).toBe(1);
    h.channel.fail(new Error('the sender stops'));
    expect(s.error).toMatchObject({ message: 'the sender stops' });
    for (let i = 0; i < 4; i++) h.sink.pump(PIECE_BYTES);
    expect(h.sink.active).toBe(0);
    expect(h.kernel.writes).toBe(0);
    expect(h.delivered).toEqual([]);
    expect(h.failed).toEqual([expect.objectContaining({ code: 'PEER_LOST', message: expect.stringMatching(/failed on its side/) })]);
    expect(h.sink.counts).toMatchObject({ reads: 0, helped: 0 });
    expect(h.kernel.released).toBe(1);
    expect(h.kernel.targetsReleased).toBe(1);
  });

  it('a sender that fails after its reader delivered, before it saw the answer: its send succeeds (both ranks agree)', () => {
    const h = harness({ helpMinBytes: Number.POSITIVE_INFINITY });
    const big = pattern(MIN * 4, 17);
    const s = h.send(big);
    h.consumer.poll(h.sink, 0, 16); // read and delivered at once; the sender has not flushed yet
    expect(same(h.delivered[0].data, big)).toBe(true);
    h.channel.fail(new Error('the sender stops'));
    expect(s).toEqual({ done: true, error: undefined });
    expect(h.control.fateOf(1)).toBe(Fate.DELIVERED);
  });

  it('the sender gives a failed message up before its caller learns of it', () => {
    const h = harness({ helpMinBytes: Number.POSITIVE_INFINITY });
    const header = encodeHeader({ ...emptyHeader(), kind: FrameKind.DATA, payloadBytes: PIECE_BYTES * 2, messageBytes: PIECE_BYTES * 2, recvId: 1 }, new Uint8Array(48));
    let fateAtDone: number | undefined;
    h.channel.send(header, pattern(PIECE_BYTES * 2, 18), () => (fateAtDone = h.control.fateOf(1)));
    h.consumer.poll(h.sink, 0, 16); // the descriptor and the first piece: the message is open
    h.channel.fail(new Error('the sender stops'));
    expect(fateAtDone).toBe(Fate.GIVEN_UP);
  });

  it('a finished or withdrawn cooperative copy leaves no request or answer that a later descriptor with its token (after the wrap) could take for its own', () => {
    const control = new SingleCopyControl({ sab: new SharedArrayBuffer(SINGLE_COPY_CONTROL_BYTES), byteOffset: 0, byteLength: SINGLE_COPY_CONTROL_BYTES });
    control.askHelp(7, 0x1000n, 4096, 4096);
    expect(peekHelp(control, 7)).toEqual({ handle: 0x1000n, from: 4096, length: 4096 });
    control.helped(7, 1); // WRITTEN
    expect(control.helpOutcome(7)).toBe(1);
    control.withdrawHelp(7); // the consumer took the answer
    expect(peekHelp(control, 7)).toBeUndefined(); // a producer with token 7 again finds no request
    expect(peekHelp(control, 6)).toBeUndefined(); // nor one with any other token (no token is left behind)
    control.askHelp(7, 0x2000n, 0, 8192); // a later descriptor with the same token
    expect(control.helpOutcome(7)).toBe(0); // the old answer does not pass for its own
    control.withdrawHelp(7);
    expect(peekHelp(control, 7)).toBeUndefined();
  });

  it('a withdrawal waits for the piece the sender has claimed; one that never ends is given up after a bound, and says so', () => {
    const control = new SingleCopyControl({ sab: new SharedArrayBuffer(SINGLE_COPY_CONTROL_BYTES), byteOffset: 0, byteLength: SINGLE_COPY_CONTROL_BYTES });
    control.askHelp(3, 0x1000n, 0, 4096);
    expect(control.claimHelp(3)).toEqual({ handle: 0x1000n, from: 0, length: 4096 }); // the sender writes a piece…
    expect(control.claimHelp(3)).toBeUndefined(); // (one claim at a time)
    const t0 = performance.now();
    expect(control.withdrawHelp(3)).toBe(false); // …and never ends it (stuck, or died mid-piece): the reader stops waiting
    expect(performance.now() - t0).toBeGreaterThanOrEqual(WITHDRAW_WAIT_MS - 1);
    control.releaseHelp(3); // the piece ends after all: the request stays withdrawn
    expect(control.claimHelp(3)).toBeUndefined(); // no further piece
    // A piece that ends within the wait: the withdrawal returns once it is released (here before it is asked).
    control.askHelp(4, 0x2000n, 0, 4096);
    expect(control.claimHelp(4)).toBeDefined();
    control.releaseHelp(4);
    expect(control.withdrawHelp(4)).toBe(true);
    expect(control.claimHelp(4)).toBeUndefined();
    control.releaseHelp(4); // a release without a claim changes nothing
    expect(control.claimHelp(4)).toBeUndefined();
  });

  it('a refused descriptor withdraws the half it had asked the sender for', () => {
    const h = harness({ ringBytes: 1 << 21 }); // the fallback frame moves the payload through the ring
    const s = h.send(pattern(HELP_MIN_BYTES * 2, 20));
    h.consumer.poll(h.sink, 0, 16); // the reader asks for the second half and reads the first
    expect(peekHelp(h.control, 1)).toBeDefined();
    h.kernel.refuse = true;
    h.sink.pump(PIECE_BYTES); // its next read of nothing is refused: the payload comes through the ring
    expect(peekHelp(h.control, 1)).toBeUndefined();
    expect(h.sink.active).toBe(1); // open, waiting for the fallback frame
    h.channel.flush(); // the sender sees the refusal and writes the payload into the ring (it fits)
    h.consumer.poll(h.sink, 0, 16); // the fallback frame: delivered, and no longer open
    expect(h.delivered).toHaveLength(1);
    expect(h.sink.active).toBe(0);
    h.run();
    expect(s).toEqual({ done: true, error: undefined });
  });

  it('tokens run from 1 to MAX_TOKEN and wrap to 1; the fate word tells them apart', () => {
    expect(nextToken(0)).toBe(1);
    expect(nextToken(MAX_TOKEN - 1)).toBe(MAX_TOKEN);
    expect(nextToken(MAX_TOKEN)).toBe(1);
    const control = new SingleCopyControl({ sab: new SharedArrayBuffer(SINGLE_COPY_CONTROL_BYTES), byteOffset: 0, byteLength: SINGLE_COPY_CONTROL_BYTES });
    expect(control.fateOf(MAX_TOKEN)).toBe(0);
    expect(control.decide(MAX_TOKEN, Fate.GIVEN_UP)).toBe(Fate.GIVEN_UP);
    expect(control.decide(MAX_TOKEN, Fate.DELIVERED)).toBe(Fate.GIVEN_UP); // the first decision holds
    expect(control.fateOf(1)).toBe(0);
    expect(control.decide(1, Fate.DELIVERED)).toBe(Fate.DELIVERED);
    expect(control.decide(1, Fate.GIVEN_UP)).toBe(Fate.DELIVERED);
  });

  it('a sender that fails before it saw the reader’s refusal sends no fallback: the reader stops waiting for it (PEER_LOST)', () => {
    const h = harness({ refuse: true });
    const s = h.send(pattern(MIN * 2, 19));
    h.consumer.poll(h.sink, 0, 16); // the descriptor: refused, the reader waits for the payload through the ring
    expect(h.sink.active).toBe(1);
    h.sink.pump(PIECE_BYTES);
    expect(h.failed).toEqual([]); // still waiting: the sender is alive
    h.channel.fail(new Error('the sender stops'));
    expect(s.error).toMatchObject({ message: 'the sender stops' });
    h.sink.pump(PIECE_BYTES);
    expect(h.failed).toEqual([expect.objectContaining({ code: 'PEER_LOST' })]);
    expect(h.sink.active).toBe(0);
    expect(h.delivered).toEqual([]);
  });

  it('a sender that fails while the reader copies all of it alone: what was copied is not delivered (PEER_LOST)', () => {
    const h = harness({ helpMinBytes: Number.POSITIVE_INFINITY });
    const huge = pattern(PIECE_BYTES * 2 + 3, 16);
    const s = h.send(huge);
    h.consumer.poll(h.sink, 0, 16); // the descriptor and the first piece
    expect(h.sink.active).toBe(1);
    h.channel.fail(new Error('the sender stops'));
    expect(s.error).toMatchObject({ message: 'the sender stops' });
    for (let i = 0; i < 4; i++) h.sink.pump(PIECE_BYTES);
    expect(h.kernel.reads).toBe(3); // it copied all of it, then found the send given up
    expect(h.delivered).toEqual([]);
    expect(h.failed).toEqual([expect.objectContaining({ code: 'PEER_LOST' })]);
    expect(h.sink.active).toBe(0);
  });

  // The stand-in fails a read of nothing once the sender is gone, as threads' pins do (shm's read of
  // nothing makes no system call: there the inbox-lock sweep reports a dead process).
  it('a sender that is gone while the reader waits for its half: PEER_LOST from a read of nothing, not a wait forever', () => {
    const h = harness();
    h.send(pattern(HELP_MIN_BYTES * 2, 15));
    h.consumer.poll(h.sink, 0, 16);
    expect(h.sink.active).toBe(1);
    h.sink.pump(PIECE_BYTES);
    expect(h.failed).toEqual([]); // still waiting: the sender is alive
    h.kernel.gone = true;
    h.sink.pump(PIECE_BYTES);
    expect(h.failed).toEqual([expect.objectContaining({ code: 'PEER_LOST' })]);
    expect(h.sink.active).toBe(0);
    expect(h.kernel.targetsReleased).toBe(1);
  });

  it('a reader that gives a frame up withdraws the half it asked for: the sender writes no further piece', () => {
    const h = harness();
    h.send(pattern(PIECE_BYTES * 4 + 3, 16)); // the sender's half: three pieces
    h.consumer.poll(h.sink, 0, 16);
    h.channel.flush(); // the sender writes one piece of its half
    expect(h.kernel.writes).toBe(1);
    h.sink.lost(0, new Error('the reader gives up'));
    expect(h.kernel.targetsReleased).toBe(1);
    for (let i = 0; i < 5; i++) h.channel.flush();
    expect(h.kernel.writes).toBe(1);
  });

  it('a descriptor whose memory the sender does not have (EFAULT) is CORRUPT at the reader', () => {
    const h = harness({ refuseWrites: true });
    h.send(pattern(MIN * 3, 17));
    h.memory.clear();
    expect(() => h.run()).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
  });

  it('a reader that closed its side of the ring fails an open descriptor with PEER_LOST', async () => {
    const h = harness();
    const s = h.send(pattern(MIN * 2, 18));
    h.consumer.close();
    const until = Date.now() + 5_000;
    while (!s.done && Date.now() < until) {
      h.channel.flush();
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect(s.error).toMatchObject({ code: 'PEER_LOST', message: expect.stringMatching(/closed this ring/) });
  });

  it('closing a channel that failed tells the transport, as a ring channel does (no frame from the peer after close)', async () => {
    const h = harness();
    h.channel.fail(new Error('broken'));
    await h.channel.close();
    expect(h.kernel.closedHooks).toBe(1);
    const g = harness();
    await g.channel.close();
    expect(g.kernel.closedHooks).toBe(1);
  });

  it('a reader that died while the sender waits fails the send with PEER_LOST and reports the loss, once', async () => {
    let alive = true;
    const h = harness({ readerAlive: () => alive });
    const s = h.send(pattern(MIN * 2, 10));
    const later = h.send(pattern(5, 11));
    alive = false;
    // Nobody reads: the sender checks its reader after livenessCheckMs of waiting.
    const until = Date.now() + 5_000;
    while (!s.done && Date.now() < until) {
      h.channel.flush();
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect(s.error).toMatchObject({ name: 'VmcommError', code: 'PEER_LOST' });
    expect(later.error).toMatchObject({ code: 'PEER_LOST' });
    expect(h.kernel.released).toBe(1); // a failed send releases its payload's handle too
    expect(h.lost).toHaveLength(1);
    const after = h.send(pattern(3, 12));
    await Promise.resolve();
    expect(after.error).toMatchObject({ code: 'PEER_LOST' });
  });
});

