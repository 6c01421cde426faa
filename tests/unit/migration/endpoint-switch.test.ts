// lib/endpoint.ts (switchTo) seen from the receiver: a sender's Endpoint switches transports while
// frames are on their way or waiting for a dial; what each transport's channel carried is then handed
// to a receiver's OrderedInbound (lib/migration/ordered-inbound.ts) in the worst order — newest
// transport first — and the receiver must get every frame once, in order, with no CORRUPT.
import { describe, expect, it } from 'vitest';
import type { Channel, FrameSink, Transport } from '../../../lib/backend.js';
import { Endpoint } from '../../../lib/endpoint.js';
import { OrderedInbound } from '../../../lib/migration/ordered-inbound.js';
import { encodePath, PathStep } from '../../../lib/migration/path-frames.js';
import { deliver, eager, FakeEngine, fakeTransport, RecordingChannel, RecordingHooks } from './inbound-fakes.js';

/** A transport whose dial the test completes by hand (`open(name)`), or at once when `instant`. */
function wire(names: readonly string[]) {
  const channels = new Map<string, RecordingChannel>();
  const pendingDials = new Map<string, (() => void)[]>();
  let instant = true;
  const transports = names.map((name, i) =>
    fakeTransport(name, 100 - i, () => {
      const ch = channels.get(name) ?? (channels.set(name, new RecordingChannel()), channels.get(name)!);
      if (instant) return Promise.resolve<Channel>(ch);
      return new Promise<Channel>((resolve) => {
        const list = pendingDials.get(name) ?? (pendingDials.set(name, []), pendingDials.get(name)!);
        list.push(() => resolve(ch));
      });
    }),
  );
  const t = (name: string): Transport => transports.find((x) => x.name === name)!;
  const failures: Error[] = [];
  const endpoint = new Endpoint(1, transports[0], (_p, e) => failures.push(e));
  const switchTo = (name: string) => endpoint.switchTo(t(name), (epoch, empty) => encodePath(PathStep.SWITCH, epoch, { to: name }, empty));
  const send = (tag: number) => endpoint.send(eager(tag, [tag]).header, Uint8Array.of(tag));
  // The receiver (rank 1) of rank 0's frames.
  const engine = new FakeEngine();
  const inbound = new OrderedInbound(engine.asEngine(), 2, new RecordingHooks(transports));
  inbound.start([transports[0], transports[0]]);
  const sinks = new Map<string, FrameSink>(transports.map((x) => [x.name, inbound.sinkFor(() => x)]));
  /** Delivers everything each channel carried, transports in `order`; returns the error thrown, if any. */
  const receive = (order: readonly string[]): unknown => {
    try {
      for (const name of order) for (const f of channels.get(name)?.frames ?? []) deliver(sinks.get(name)!, 0, f);
    } catch (e) {
      return e;
    }
    return undefined;
  };
  return {
    endpoint,
    engine,
    switchTo,
    send,
    receive,
    failures,
    slowDials: () => (instant = false),
    open: (name: string) => pendingDials.get(name)?.splice(0).forEach((f) => f()),
  };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('Endpoint.switchTo, as the receiver sees it', () => {
  it('with an open channel: the marker follows the old frames there, new frames go to the new transport', async () => {
    const w = wire(['fast', 'slow']);
    w.send(1);
    w.send(2);
    await settle();
    expect(w.endpoint.open).toBe(true);
    const retired = w.switchTo('slow');
    expect(retired?.transport.name).toBe('fast');
    expect(w.endpoint.epoch).toBe(1);
    w.send(3);
    w.send(4);
    await settle();
    expect(w.receive(['slow', 'fast'])).toBeUndefined();
    expect(w.engine.tags()).toEqual([1, 2, 3, 4]);
    expect(w.engine.delivered.map((d) => d.payload)).toEqual([[1], [2], [3], [4]]);
  });

  it('before anything was sent: an empty marker leads on the new transport', async () => {
    const w = wire(['fast', 'slow']);
    expect(w.switchTo('slow')).toBeUndefined();
    w.send(1);
    await settle();
    expect(w.receive(['slow', 'fast'])).toBeUndefined();
    expect(w.engine.tags()).toEqual([1]);
  });

  it('there and back with the channel open each time: three epochs, in order', async () => {
    const w = wire(['fast', 'slow']);
    w.send(1);
    await settle();
    w.switchTo('slow');
    w.send(2);
    await settle();
    w.switchTo('fast');
    w.send(3);
    await settle();
    expect(w.endpoint.epoch).toBe(2);
    expect(w.receive(['slow', 'fast'])).toBeUndefined();
    expect(w.engine.tags()).toEqual([1, 2, 3]);
  });

  it('there and back with nothing sent on the middle transport: the receiver skips its empty epoch', async () => {
    const w = wire(['fast', 'slow']);
    w.send(1);
    await settle();
    w.switchTo('slow');
    w.switchTo('fast');
    w.send(2);
    await settle();
    expect(w.receive(['fast', 'slow'])).toBeUndefined();
    expect(w.engine.tags()).toEqual([1, 2]);
  });

  it('frames still waiting for the first dial move to the new transport, behind an empty marker', async () => {
    const w = wire(['fast', 'slow']);
    w.slowDials();
    w.send(1);
    w.send(2);
    w.switchTo('slow');
    w.open('fast'); // the old dial completes late: it must not install its channel
    w.open('slow');
    await settle();
    expect(w.receive(['fast', 'slow'])).toBeUndefined();
    expect(w.engine.tags()).toEqual([1, 2]);
  });

  it('a second switch while the first switch’s dial is pending, after an open channel', async () => {
    const w = wire(['fast', 'slow']);
    w.send(1);
    await settle();
    w.slowDials();
    w.switchTo('slow');
    w.send(2); // dials slow
    w.switchTo('fast'); // before slow answered
    w.open('slow');
    w.open('fast');
    await settle();
    expect(w.receive(['fast', 'slow'])).toBeUndefined();
    expect(w.engine.tags()).toEqual([1, 2]);
  });

  // BUG (lib/endpoint.ts, switchTo + send): the first switch happens before any channel was open, so
  // its marker waits as `pendingMarker`; the next send moves that marker (epoch 1, empty, "to slow")
  // into the queue and dials slow. A second switch before that dial answers takes a new epoch (2),
  // because `pendingMarker` is now undefined, and unshifts a second empty marker in front of the first:
  // the new channel carries [marker 2 → fast (empty), marker 1 → slow (empty), frame]. The receiver,
  // still in epoch 0, reads "epoch 2" first: CORRUPT on the current transport (fast → slow → fast), and
  // a marker held forever with the frame behind it on any third transport (fast → slow → tcp).
  it('two switches before the pair’s first frame got a channel: fast → slow → fast', async () => {
    const w = wire(['fast', 'slow']);
    w.slowDials();
    w.switchTo('slow'); // nothing sent yet on fast: marker pending
    w.send(1); // marker + frame queued, dialing slow
    w.switchTo('fast'); // slow has not answered yet
    w.open('slow');
    w.open('fast');
    await settle();
    expect(w.receive(['fast', 'slow'])).toBeUndefined();
    expect(w.engine.tags()).toEqual([1]);
  });

  it('two switches before the pair’s first frame got a channel: fast → slow → tcp', async () => {
    const w = wire(['fast', 'slow', 'tcp']);
    w.slowDials();
    w.switchTo('slow');
    w.send(1);
    w.switchTo('tcp');
    w.open('slow');
    w.open('tcp');
    await settle();
    expect(w.receive(['tcp', 'slow', 'fast'])).toBeUndefined();
    expect(w.engine.tags()).toEqual([1]);
  });
});
