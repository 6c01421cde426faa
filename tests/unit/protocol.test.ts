import { describe, expect, it } from 'vitest';
import { decodeHeader, emptyHeader, encodeHeader, FRAME_HEADER_BYTES, frameLength, FrameKind } from '../../lib/protocol.js';

describe('frame header', () => {
  it('round-trips every field, including 64-bit lengths', () => {
    const h = { ...emptyHeader(), kind: FrameKind.DATA, flags: 1, context: 0xfffffffe, source: 7, tag: 0x3fffffff, seq: 0xffffffff, sendId: 3, recvId: 4, aux: 5, payloadBytes: 2 ** 40 + 3, messageBytes: 2 ** 40 + 3 };
    const bytes = encodeHeader(h, new Uint8Array(FRAME_HEADER_BYTES));
    expect(decodeHeader(bytes, emptyHeader())).toEqual(h);
    expect(frameLength(bytes)).toBe(2 ** 40 + 3);
  });

  it('rejects a wrong version, an unknown kind and impossible lengths as CORRUPT', () => {
    const good = encodeHeader({ ...emptyHeader(), kind: FrameKind.EAGER, payloadBytes: 1, messageBytes: 1 }, new Uint8Array(FRAME_HEADER_BYTES));
    const bad = (mutate: (b: Uint8Array) => void) => {
      const b = good.slice();
      mutate(b);
      return () => decodeHeader(b, emptyHeader());
    };
    expect(bad((b) => (b[0] = 9))).toThrow(expect.objectContaining({ name: 'VmcommError', code: 'CORRUPT' }));
    expect(bad((b) => (b[1] = 0))).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
    expect(bad((b) => (b[1] = 200))).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
    expect(bad((b) => (b[39] = 0xff))).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
    expect(bad((b) => (b[32] = 2))).toThrow(expect.objectContaining({ code: 'CORRUPT' })); // payload > message
    expect(() => decodeHeader(good.subarray(0, 10), emptyHeader())).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
  });
});
