// lib/endpoint.ts with a transport that opens at once (Transport.openNow): the first frame leaves
// inside send(); a refusal is reported as a failed dial, with the transport's own error, without a
// second dial; a transport that reports the peer lost while it opens leaves no frame waiting.
import { describe, expect, it } from 'vitest';
import type { Channel, Transport } from '../../lib/backend.js';
import { Endpoint } from '../../lib/endpoint.js';
import { eager, fakeTransport, RecordingChannel } from './migration/inbound-fakes.js';

const settle = () => new Promise((r) => setImmediate(r));

/** A transport whose `openNow` does what `open` says; counts its dials. */
function opening(open: () => Channel) {
  const calls = { openNow: 0, connect: 0 };
  const transport: Transport = {
    ...fakeTransport('now', 50, async () => {
      calls.connect++;
      return open();
    }),
    openNow: () => {
      calls.openNow++;
      return open();
    },
  };
  return { transport, calls };
}

/** Sends frame `tag`; its `done` result lands in the returned record. */
function sendOn(endpoint: Endpoint, tag: number) {
  const result = { done: false, error: undefined as Error | undefined };
  const f = eager(tag, [tag]);
  endpoint.send(f.header, f.payload, (error) => {
    expect(result.done).toBe(false); // once
    result.done = true;
    result.error = error;
  });
  return result;
}

describe('Endpoint with a transport that opens at once (openNow)', () => {
  it('sends the first frame inside send(): no microtask, no connect()', () => {
    const channel = new RecordingChannel();
    const { transport, calls } = opening(() => channel);
    const endpoint = new Endpoint(1, transport, () => expect.unreachable());
    const first = sendOn(endpoint, 1);
    expect(first).toEqual({ done: true, error: undefined });
    expect(endpoint.open).toBe(true);
    sendOn(endpoint, 2);
    expect(channel.frames.map((f) => f.payload?.[0])).toEqual([1, 2]);
    expect(calls).toEqual({ openNow: 1, connect: 0 });
  });

  it('a refusal fails the frame with the transport’s own error, on a microtask, without dialling again', async () => {
    const refusal = new Error('ring corrupt');
    const { transport, calls } = opening(() => {
      throw refusal;
    });
    const failures: Error[] = [];
    const endpoint = new Endpoint(1, transport, (_peer, e) => failures.push(e));
    const first = sendOn(endpoint, 1);
    const second = sendOn(endpoint, 2); // queued behind the failed dial
    expect(first.done).toBe(false);
    await settle();
    expect(first).toEqual({ done: true, error: refusal });
    expect(second).toEqual({ done: true, error: refusal });
    expect(failures).toEqual([refusal]);
    expect(calls).toEqual({ openNow: 1, connect: 0 });
    expect(sendOn(endpoint, 3)).toEqual({ done: true, error: refusal });
  });

  it('a transport that reports the peer lost before it throws (as ivshmem does) leaves no frame waiting', async () => {
    const lost = new Error('rank 1 lost');
    let endpoint!: Endpoint;
    const { transport } = opening(() => {
      endpoint.fail(lost); // what the engine does when the transport reports the loss to its sink
      throw new Error('ring corrupt');
    });
    endpoint = new Endpoint(1, transport, () => undefined);
    const first = sendOn(endpoint, 1);
    expect(first).toEqual({ done: true, error: lost });
    await settle();
    expect(sendOn(endpoint, 2)).toEqual({ done: true, error: lost });
  });

  it('a channel opened after the peer was reported lost is closed, and the frame fails', async () => {
    const lost = new Error('rank 1 lost');
    const channel = new RecordingChannel();
    let endpoint!: Endpoint;
    const { transport } = opening(() => {
      endpoint.fail(lost);
      return channel;
    });
    endpoint = new Endpoint(1, transport, () => expect.unreachable());
    expect(sendOn(endpoint, 1)).toEqual({ done: true, error: lost });
    await settle();
    expect(channel.closed).toBe(true);
    expect(channel.frames).toEqual([]);
    expect(endpoint.open).toBe(false);
  });
});
