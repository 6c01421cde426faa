/**
 * Every message of a pair carries the next sequence number of that pair; the receiving engine
 * checks that each EAGER or RTS frame comes after the last one. A frame delivered twice or out of
 * order (a transport's or the ordered inbound layer's fault, or shared memory gone wrong) closes the
 * channel as CORRUPT instead of matching a message out of MPI's order. Gaps pass: a send withdrawn
 * while it waited for the rendezvous window took a number and never reached the wire
 * (tests/unit/rendezvous-window.test.ts covers that end to end).
 */
import { describe, expect, it } from 'vitest';
import type { Engine } from '../../lib/engine.js';
import { emptyHeader, encodeHeader, FRAME_HEADER_BYTES, FrameKind } from '../../lib/protocol.js';
import { createLocalJob } from '../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../lib/start-world.js';
import { memory } from '../helpers/memory-transport.js';
import { finalizeAfterEach } from '../helpers/settle.js';
import { readyEngine } from './migration/inbound-fakes.js';

/** An engine of rank 1 of 2 whose channels accept everything. */
const engine = (): Engine => readyEngine(1, 2);

/** Hands `e` one frame of `kind` from rank 0 with sequence number `seq`. */
function deliver(e: Engine, kind: FrameKind, seq: number): void {
  const h = emptyHeader();
  h.kind = kind;
  h.seq = seq;
  h.tag = 5;
  if (kind === FrameKind.EAGER) h.payloadBytes = h.messageBytes = 1;
  else h.messageBytes = 4096; // an RTS announces its length
  if (kind === FrameKind.RTS) h.sendId = seq + 1;
  const target = e.begin(0, encodeHeader(h, new Uint8Array(FRAME_HEADER_BYTES)));
  target?.set([seq & 0xff]);
  e.commit(0);
}

const track = finalizeAfterEach();

describe('message sequence numbers', () => {
  it('a message delivered twice is CORRUPT', () => {
    const e = engine();
    deliver(e, FrameKind.EAGER, 0);
    deliver(e, FrameKind.EAGER, 1);
    expect(() => deliver(e, FrameKind.EAGER, 1)).toThrow(expect.objectContaining({ code: 'CORRUPT', message: expect.stringContaining('delivered twice or out of order') }));
  });

  it('eager messages and rendezvous announcements share the sequence, so one overtaking the other is CORRUPT', () => {
    const e = engine();
    deliver(e, FrameKind.EAGER, 0);
    deliver(e, FrameKind.RTS, 2);
    expect(() => deliver(e, FrameKind.EAGER, 1)).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
  });

  it('a gap passes (a withdrawn send never reached the wire), and numbers wrap at 2^32', () => {
    const e = engine();
    deliver(e, FrameKind.EAGER, 0);
    deliver(e, FrameKind.EAGER, 7);
    deliver(e, FrameKind.RTS, 8);
    // Forward in steps of less than 2^31 (what counts as "after"), up to the wrap.
    deliver(e, FrameKind.EAGER, 0x7fffffff);
    deliver(e, FrameKind.EAGER, 0xffffffff);
    deliver(e, FrameKind.EAGER, 0);
    expect(() => deliver(e, FrameKind.EAGER, 0xfffffffe)).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
  });

  it('between two real worlds, thousands of mixed messages keep passing the check', async () => {
    const plugin = memory({ eagerLimitBytes: 64, eagerCredits: 4 });
    const [a, b] = track(await Promise.all(createLocalJob(2).map((x) => initWithBootstrap(x, { backends: [plugin], only: ['memory'], rendezvousWindow: 2 }))));
    const n = 2000;
    // Small ones eager, every seventh one rendezvous, all sent before any receive is posted.
    const sends = Array.from({ length: n }, (_, i) => (i % 7 === 0 ? a.isendBuffer(new Uint8Array(256).fill(i & 0xff), 1, 4) : a.isend(i, 1, 4)));
    for (let i = 0; i < n; i++) {
      if (i % 7 === 0) {
        const into = new Uint8Array(256);
        await b.recvBuffer(into, 0, 4);
        expect(into[255]).toBe(i & 0xff);
      } else expect(await b.recv(0, 4)).toBe(i);
    }
    await Promise.all(sends);
  });

  it('the fast send path (one header reused, its number rewritten) numbers each pair on its own', async () => {
    const plugin = memory({ eagerLimitBytes: 64, eagerCredits: 4, trySend: true });
    const [a, b, c] = track(await Promise.all(createLocalJob(3).map((x) => initWithBootstrap(x, { backends: [plugin], only: ['memory'] }))));
    const out = new Uint8Array(8);
    const got = { 1: new Uint8Array(8), 2: new Uint8Array(8) };
    // Blocking sends of the same shape to two peers in turn: the second peer's numbers start at 0
    // while the first's go on; a reused header with the other pair's number would be refused.
    for (let i = 0; i < 200; i++) {
      const dest = i % 3 === 0 ? 2 : 1;
      out.fill(i & 0xff);
      await a.sendBuffer(out, dest, 6);
      const r = dest === 1 ? b : c;
      await r.recvBuffer(got[dest], 0, 6);
      expect(got[dest][7]).toBe(i & 0xff);
    }
  });
});
