// lib/migration/ordered-inbound.ts on its own: a fake engine records what reaches it, transports are
// plain objects, frames are handed to the per-transport sinks by hand, in the interleavings two
// transports with different timing produce.
import { describe, expect, it } from 'vitest';
import type { FrameSink, Transport } from '../../../lib/backend.js';
import { OrderedInbound } from '../../../lib/migration/ordered-inbound.js';
import { encodePath, PathStep } from '../../../lib/migration/path-frames.js';
import { FrameKind } from '../../../lib/protocol.js';
import { deliver, deliverLater, eager, FakeEngine, fakeTransport, frame, marker, RecordingHooks } from './inbound-fakes.js';

/** One receiving rank (rank 1 of 3 by default) with an ordered inbound layer over `transports`. */
function setup(names: readonly string[] = ['ivshmem', 'tcp'], size = 3) {
  const transports = names.map((n, i) => fakeTransport(n, 100 - i));
  const engine = new FakeEngine();
  const hooks = new RecordingHooks(transports);
  const inbound = new OrderedInbound(engine.asEngine(), size, hooks);
  const sinks = new Map<string, FrameSink>(transports.map((t) => [t.name, inbound.sinkFor(() => t)]));
  const sink = (name: string): FrameSink => sinks.get(name)!;
  const t = (name: string): Transport => transports.find((x) => x.name === name)!;
  /** Every peer starts on `name`. */
  const startOn = (name: string) => inbound.start(Array.from({ length: size }, () => t(name)));
  return { transports, engine, hooks, inbound, sink, t, startOn };
}

/** The layer reported a CORRUPT loss of peer 0 against `transport` (instead of throwing). */
function expectReported(hooks: RecordingHooks, transport: string, message: RegExp): void {
  expect(hooks.losses.map((l) => l.transport)).toEqual([transport]);
  expect(hooks.losses[0].error).toMatchObject({ name: 'VmcommError', code: 'CORRUPT' });
  expect(hooks.losses[0].error.message).toMatch(message);
}

function expectCorrupt(fn: () => void, message?: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, 'expected a CORRUPT error').toMatchObject({ name: 'VmcommError', code: 'CORRUPT' });
  if (message) expect((thrown as Error).message).toMatch(message);
}

describe('OrderedInbound: the current transport', () => {
  it('delivers its frames straight to the engine, into the buffer the engine handed out (no copy)', () => {
    const { engine, sink, startOn } = setup();
    startOn('ivshmem');
    const target = sink('ivshmem').begin(0, eager(1, [7, 8, 9]).header);
    expect(target).toBeDefined();
    expect(target).toBe(engine.handedOut.get(0)); // the engine's own buffer, not a held copy
    target!.set([7, 8, 9]);
    sink('ivshmem').commit(0);
    deliver(sink('ivshmem'), 0, eager(2));
    expect(engine.delivered).toEqual([
      { peer: 0, kind: FrameKind.EAGER, tag: 1, payload: [7, 8, 9] },
      { peer: 0, kind: FrameKind.EAGER, tag: 2, payload: [] },
    ]);
    expect(engine.violations).toEqual([]);
  });

  it('keeps peers apart: a switch of one peer does not hold another peer’s frames', () => {
    const { engine, hooks, sink, startOn } = setup();
    startOn('ivshmem');
    deliver(sink('ivshmem'), 0, marker(1, 'tcp'));
    deliver(sink('ivshmem'), 2, eager(20));
    deliver(sink('tcp'), 2, eager(21)); // peer 2 is still on ivshmem: held
    deliver(sink('tcp'), 0, eager(10));
    expect(engine.tags(0)).toEqual([10]);
    expect(engine.tags(2)).toEqual([20]);
    expect(hooks.switches).toEqual([{ peer: 0, from: 'ivshmem', to: 'tcp', epoch: 1 }]);
  });

  it('hands negotiation steps to the migration in stream order and never to the engine', () => {
    const { engine, hooks, sink, startOn } = setup();
    startOn('tcp');
    deliver(sink('tcp'), 0, eager(1));
    deliver(sink('tcp'), 0, encodePath(PathStep.OFFER, 0, { to: 'ivshmem', card: { slot: 3 } }));
    deliver(sink('tcp'), 0, eager(2));
    expect(engine.tags(0)).toEqual([1, 2]);
    expect(hooks.steps).toHaveLength(1);
    expect(hooks.steps[0]).toMatchObject({ peer: 0, frame: { step: PathStep.OFFER, body: { to: 'ivshmem', card: { slot: 3 } } } });
    expect(engine.violations).toEqual([]);
  });
});

describe('OrderedInbound: frames of another transport', () => {
  it('are held until the current transport’s SWITCH marker, then replayed in order before later frames', () => {
    const { engine, hooks, inbound, sink, t, startOn } = setup();
    startOn('ivshmem');
    deliver(sink('ivshmem'), 0, eager(1, [1]));
    // The peer switched: its new-epoch frames overtake the tail of the old channel.
    deliver(sink('tcp'), 0, eager(4, [4, 4]));
    deliver(sink('tcp'), 0, eager(5, [5]));
    expect(engine.tags()).toEqual([1]);
    expect(inbound.holding(0, t('tcp'))).toBe(true);
    deliver(sink('ivshmem'), 0, eager(2, [2]));
    deliver(sink('ivshmem'), 0, eager(3));
    expect(engine.tags()).toEqual([1, 2, 3]);
    deliver(sink('ivshmem'), 0, marker(1, 'tcp'));
    expect(engine.tags()).toEqual([1, 2, 3, 4, 5]);
    deliver(sink('tcp'), 0, eager(6));
    expect(engine.tags()).toEqual([1, 2, 3, 4, 5, 6]);
    // Payloads survived the hold.
    expect(engine.delivered.map((d) => d.payload)).toEqual([[1], [2], [], [4, 4], [5], []]);
    expect(hooks.switches).toEqual([{ peer: 0, from: 'ivshmem', to: 'tcp', epoch: 1 }]);
    expect(inbound.currentOf(0)).toMatchObject({ epoch: 1 });
    expect(inbound.currentOf(0).transport?.name).toBe('tcp');
    expect(inbound.holding(0, t('tcp'))).toBe(false);
    expect(engine.violations).toEqual([]);
  });

  it('an EMPTY marker on the new transport that opens epoch current+1 switches at once (nothing came on the old one)', () => {
    const { engine, hooks, sink, startOn } = setup();
    startOn('ivshmem');
    deliver(sink('tcp'), 0, marker(1, 'tcp', true));
    expect(hooks.switches).toEqual([{ peer: 0, from: 'ivshmem', to: 'tcp', epoch: 1 }]);
    deliver(sink('tcp'), 0, eager(1));
    expect(engine.tags()).toEqual([1]);
    expect(engine.violations).toEqual([]);
  });

  it('an EMPTY marker with frames behind it replays them at the switch', () => {
    const { engine, sink, startOn } = setup();
    startOn('ivshmem');
    deliver(sink('ivshmem'), 0, eager(1));
    deliver(sink('ivshmem'), 0, marker(1, 'tcp'));
    // Epoch 1 on tcp stayed empty: the peer went back to ivshmem, leading with an empty marker for epoch 2.
    deliver(sink('ivshmem'), 0, marker(2, 'ivshmem', true));
    deliver(sink('ivshmem'), 0, eager(2));
    expect(engine.tags()).toEqual([1, 2]);
  });

  it('an EMPTY marker that skips an epoch is not applied: what follows it stays held', () => {
    const { engine, hooks, sink, startOn } = setup();
    startOn('ivshmem');
    deliver(sink('tcp'), 0, marker(2, 'tcp', true));
    deliver(sink('tcp'), 0, eager(9));
    expect(hooks.switches).toEqual([]);
    expect(engine.tags()).toEqual([]);
  });

  it('an EMPTY marker naming another transport than the one it came through is CORRUPT (reported, not thrown at the innocent transport)', () => {
    const { sink, startOn, hooks } = setup(['ivshmem', 'tcp', 'shm']);
    startOn('ivshmem');
    deliver(sink('tcp'), 0, marker(1, 'shm', true));
    expectReported(hooks, 'ivshmem', /empty switch marker to shm through tcp/);
  });

  it('a marker for the wrong epoch on the current transport is CORRUPT', () => {
    const { sink, startOn } = setup();
    startOn('ivshmem');
    expectCorrupt(() => deliver(sink('ivshmem'), 0, marker(2, 'tcp')), /epoch 2 while epoch 0 was current/);
  });

  it('a marker for an epoch already done is CORRUPT (a replayed marker)', () => {
    const { sink, startOn } = setup();
    startOn('ivshmem');
    deliver(sink('ivshmem'), 0, marker(1, 'tcp'));
    expectCorrupt(() => deliver(sink('tcp'), 0, marker(1, 'ivshmem')), /epoch 1 while epoch 1 was current/);
  });

  it('a held marker for the wrong epoch is CORRUPT when it is replayed, reported against the transport it came through', () => {
    const { sink, startOn, hooks, engine } = setup();
    startOn('ivshmem');
    deliver(sink('tcp'), 0, marker(5, 'ivshmem')); // held: tcp is not current
    deliver(sink('ivshmem'), 0, marker(1, 'tcp')); // the replay of tcp's frames fails: tcp's fault
    expectReported(hooks, 'tcp', /epoch 5 while epoch 1 was current/);
    expect(engine.delivered).toEqual([]);
  });

  it('frames held beyond what the peer may have in flight are CORRUPT at begin', () => {
    const { sink, startOn, engine } = setup();
    startOn('ivshmem');
    engine.budget = { frames: 3, bytes: 1 << 20 };
    for (let i = 0; i < 3; i++) deliver(sink('tcp'), 0, eager(i, [1, 2, 3]));
    expectCorrupt(() => deliver(sink('tcp'), 0, eager(3, [1, 2, 3])), /more through tcp ahead of its switch marker/);
  });

  it('an EMPTY marker for an epoch already done is CORRUPT', () => {
    const { sink, startOn, hooks } = setup();
    startOn('ivshmem');
    deliver(sink('ivshmem'), 0, marker(1, 'tcp'));
    deliver(sink('tcp'), 0, marker(2, 'ivshmem'));
    deliver(sink('tcp'), 0, marker(1, 'tcp', true)); // held on tcp (ivshmem is current again), a stale epoch
    expect(hooks.losses).toHaveLength(1);
    expect(hooks.losses[0].error).toMatchObject({ name: 'VmcommError', code: 'CORRUPT' });
    expect(hooks.losses[0].error.message).toMatch(/empty switch marker for epoch 1 through tcp while epoch 2 was current/);
  });

  it('a marker naming a transport this rank does not run is CORRUPT', () => {
    const { sink, startOn } = setup();
    startOn('ivshmem');
    expectCorrupt(() => deliver(sink('ivshmem'), 0, marker(1, 'carrier-pigeon')), /carrier-pigeon, which this rank does not run/);
  });

  it('a held frame above the pair’s payload limit is CORRUPT at begin (its payload is allocated before it arrives)', () => {
    const { engine, sink, startOn } = setup();
    startOn('ivshmem');
    engine.eagerLimit = 16;
    expectCorrupt(() => sink('tcp').begin(0, eager(1, new Array(17).fill(1)).header), /17 payload bytes, more than the 16/);
    // A control frame that is held may carry nothing.
    expectCorrupt(() => sink('tcp').begin(0, frame(FrameKind.CTS, 0, [], { payloadBytes: 4, messageBytes: 4 }).header));
  });

  it('a held frame whose payload arrives in pieces is replayed at its commit, in order', () => {
    const { engine, sink, startOn } = setup();
    startOn('ivshmem');
    deliver(sink('tcp'), 0, eager(2, [2]));
    const finish3 = deliverLater(sink('tcp'), 0, eager(3, [3, 3, 3])); // header here, payload still coming
    deliver(sink('ivshmem'), 0, eager(1, [1]));
    deliver(sink('ivshmem'), 0, marker(1, 'tcp'));
    // The switch replays what is complete, and stops at the frame still arriving.
    expect(engine.tags()).toEqual([1, 2]);
    finish3();
    expect(engine.tags()).toEqual([1, 2, 3]);
    expect(engine.delivered.at(-1)!.payload).toEqual([3, 3, 3]); // the payload, not zeros
    // Later frames on tcp go straight again.
    const target = sink('tcp').begin(0, eager(4, [4]).header);
    expect(target).toBe(engine.handedOut.get(0));
    target!.set([4]);
    sink('tcp').commit(0);
    expect(engine.tags()).toEqual([1, 2, 3, 4]);
    expect(engine.violations).toEqual([]);
  });

  it('a frame of the current transport in progress while another transport’s frame is held does not interleave', () => {
    const { engine, sink, startOn } = setup();
    startOn('ivshmem');
    const finish1 = deliverLater(sink('ivshmem'), 0, eager(1, [1, 1]));
    deliver(sink('tcp'), 0, eager(3, [3])); // held; its commit must not replay anything into the engine mid-frame
    finish1();
    deliver(sink('ivshmem'), 0, marker(1, 'tcp'));
    expect(engine.tags()).toEqual([1, 3]);
    expect(engine.violations).toEqual([]);
  });

  it('ivshmem → tcp → ivshmem: the third epoch’s frames arrive before the second’s and still come last', () => {
    const { engine, hooks, sink, startOn } = setup();
    startOn('ivshmem');
    // Epoch 0 on ivshmem, its marker, then epoch 2's frames on ivshmem — all before tcp delivers epoch 1.
    deliver(sink('ivshmem'), 0, eager(1));
    deliver(sink('ivshmem'), 0, eager(2));
    deliver(sink('ivshmem'), 0, marker(1, 'tcp'));
    deliver(sink('ivshmem'), 0, eager(6));
    deliver(sink('ivshmem'), 0, eager(7));
    expect(engine.tags()).toEqual([1, 2]);
    deliver(sink('tcp'), 0, eager(3));
    deliver(sink('tcp'), 0, eager(4));
    expect(engine.tags()).toEqual([1, 2, 3, 4]);
    deliver(sink('tcp'), 0, eager(5));
    deliver(sink('tcp'), 0, marker(2, 'ivshmem'));
    expect(engine.tags()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    deliver(sink('ivshmem'), 0, eager(8));
    expect(engine.tags()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(hooks.switches.map((s) => `${s.from}->${s.to}@${s.epoch}`)).toEqual(['ivshmem->tcp@1', 'tcp->ivshmem@2']);
  });

  it('ivshmem → tcp → ivshmem when tcp’s epoch arrives entirely before ivshmem’s first marker', () => {
    const { engine, sink, startOn } = setup();
    startOn('ivshmem');
    deliver(sink('tcp'), 0, eager(3));
    deliver(sink('tcp'), 0, marker(2, 'ivshmem'));
    deliver(sink('ivshmem'), 0, eager(1));
    deliver(sink('ivshmem'), 0, marker(1, 'tcp'));
    // tcp's held epoch is replayed, its marker hands back to ivshmem, where epoch 2 continues.
    deliver(sink('ivshmem'), 0, eager(4));
    expect(engine.tags()).toEqual([1, 3, 4]);
    expect(engine.violations).toEqual([]);
  });

  it('negotiation steps held on another transport reach the migration only at their place in the stream', () => {
    const { engine, hooks, sink, startOn } = setup();
    startOn('ivshmem');
    deliver(sink('tcp'), 0, encodePath(PathStep.CONFIRM, 0, { to: 'ivshmem' }));
    expect(hooks.steps).toEqual([]);
    deliver(sink('ivshmem'), 0, eager(1));
    deliver(sink('ivshmem'), 0, marker(1, 'tcp'));
    expect(hooks.steps.map((s) => s.frame.step)).toEqual([PathStep.CONFIRM]);
    expect(engine.tags()).toEqual([1]);
  });
});

describe('OrderedInbound: before start()', () => {
  it('holds every frame, then replays the chosen transport’s once the choice is known', () => {
    const { engine, hooks, sink, t, inbound } = setup();
    deliver(sink('ivshmem'), 0, eager(1, [1]));
    deliver(sink('tcp'), 0, eager(3, [3]));
    const finish2 = deliverLater(sink('ivshmem'), 0, eager(2, [2, 2]));
    expect(engine.delivered).toEqual([]);
    inbound.start([t('ivshmem'), t('ivshmem'), t('ivshmem')]);
    expect(engine.tags()).toEqual([1]); // frame 2 is still arriving
    finish2();
    expect(engine.tags()).toEqual([1, 2]);
    expect(engine.delivered[1].payload).toEqual([2, 2]);
    // tcp's early frame belongs to a later epoch: it waits for ivshmem's marker.
    deliver(sink('ivshmem'), 0, marker(1, 'tcp'));
    expect(engine.tags()).toEqual([1, 2, 3]);
    expect(hooks.switches).toHaveLength(1);
    expect(engine.violations).toEqual([]);
  });

  it('rejects a frame that could not come before this rank sent anything (CTS, DATA, CREDIT): CORRUPT', () => {
    const { sink } = setup();
    for (const kind of [FrameKind.CTS, FrameKind.DATA, FrameKind.CREDIT, FrameKind.CANCEL_REPLY]) {
      expectCorrupt(() => sink('tcp').begin(0, frame(kind, 0).header), new RegExp(`kind ${kind} through tcp before`));
    }
  });

  it('accepts the early kinds (EAGER, RTS, RTS_CANCEL, PATH)', () => {
    const { engine, sink, t, inbound } = setup();
    deliver(sink('tcp'), 0, eager(1, [1]));
    deliver(sink('tcp'), 0, frame(FrameKind.RTS, 2, [], { messageBytes: 1 << 20, sendId: 1 }));
    deliver(sink('tcp'), 0, frame(FrameKind.RTS_CANCEL, 3, [], { sendId: 1 }));
    deliver(sink('tcp'), 0, encodePath(PathStep.NUDGE, 0, { to: 'ivshmem' }));
    inbound.start([t('tcp'), t('tcp'), t('tcp')]);
    expect(engine.delivered.map((d) => d.kind)).toEqual([FrameKind.EAGER, FrameKind.RTS, FrameKind.RTS_CANCEL]);
  });

  it('rejects an early eager payload above engine.earlyEagerLimitBytes, and an early RTS with a payload: CORRUPT', () => {
    const { engine, sink } = setup();
    engine.earlyEagerLimitBytes = 8;
    expect(() => sink('tcp').begin(0, eager(1, new Array(8).fill(0)).header)).not.toThrow();
    sink('tcp').commit(0);
    expectCorrupt(() => sink('tcp').begin(0, eager(2, new Array(9).fill(0)).header), /9 payload bytes, more than the 8/);
    expectCorrupt(() => sink('tcp').begin(0, frame(FrameKind.RTS, 3, [], { payloadBytes: 1, messageBytes: 1 }).header));
  });

  // BUG (lib/migration/ordered-inbound.ts, start() → drain() → replay()): an early frame that the
  // engine refuses only once the pair's settings are known (an eager message above the pair's eager
  // limit — a rank started with another eagerLimitBytes) throws out of start(). The forEach stops
  // there: the peers after it never get a current transport, so their early frames (and every later
  // one) stay held forever; in a world the exception leaves World.select() and init() fails on that
  // rank. Engine.ready(), which this layer now stands in front of, documents the intended outcome:
  // "a frame that fails only now … ends that peer, not the world's start-up".
  it('an early frame the engine refuses at start() ends that peer only; the other peers’ early frames are replayed', () => {
    const { engine, hooks, sink, t, inbound } = setup();
    engine.rejectFrame = (peer) => peer === 0;
    deliver(sink('ivshmem'), 0, eager(1, [1]));
    deliver(sink('ivshmem'), 2, eager(2, [2]));
    let thrown: unknown;
    try {
      inbound.start([t('ivshmem'), t('ivshmem'), t('ivshmem')]);
    } catch (e) {
      thrown = e;
    }
    expect(engine.tags(2)).toEqual([2]);
    deliver(sink('ivshmem'), 2, eager(3));
    expect(engine.tags(2)).toEqual([2, 3]);
    expect(thrown).toBeUndefined();
    expect([...hooks.losses, ...engine.losses].map((l) => l.peer)).toEqual([0]);
  });

  it('a frame from a rank outside the world is CORRUPT', () => {
    const { sink } = setup();
    expectCorrupt(() => sink('tcp').begin(7, eager(1).header), /rank 7, which is not in this world/);
  });
});

describe('OrderedInbound: losses', () => {
  it('forwards a transport’s lost() to hooks.lost with the transport and the error', () => {
    const { hooks, sink, startOn } = setup();
    startOn('ivshmem');
    const error = new Error('ring torn down');
    sink('tcp').lost(2, error);
    expect(hooks.losses).toEqual([{ transport: 'tcp', peer: 2, error }]);
  });

  it('before start(): applies a loss only if it concerns the transport chosen for the pair', () => {
    const { hooks, sink, t, inbound } = setup();
    const onTcp = new Error('tcp reset');
    sink('tcp').lost(0, onTcp);
    sink('ivshmem').lost(2, new Error('ivshmem gone'));
    expect(hooks.losses).toEqual([]);
    inbound.start([t('tcp'), t('ivshmem'), t('tcp')]);
    expect(hooks.losses).toEqual([{ transport: 'tcp', peer: 0, error: onTcp }]);
  });

  it('a frame in progress when its transport reports the loss is forgotten (a later commit delivers nothing)', () => {
    const { engine, sink, startOn } = setup();
    startOn('ivshmem');
    sink('tcp').begin(0, eager(1, [1]).header);
    sink('tcp').lost(0, new Error('reset'));
    sink('tcp').commit(0);
    deliver(sink('ivshmem'), 0, eager(2));
    expect(engine.tags()).toEqual([2]);
  });
});
