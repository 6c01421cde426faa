import { describe, expect, it } from 'vitest';
import { decodeHeader, emptyHeader, encodeHeader, FRAME_HEADER_BYTES, frameLength, frameLengthOfWords, FrameKind, HeaderWords, newHeaderBuffer, type FrameHeader } from '../../lib/protocol.js';

describe('frame header', () => {
  it('round-trips every field, including 64-bit lengths', () => {
    const h = { ...emptyHeader(), kind: FrameKind.DATA, flags: 1, context: 0xfffffffe, source: 7, tag: 0x3fffffff, seq: 0xffffffff, sendId: 3, recvId: 4, aux: 5, payloadBytes: 2 ** 40 + 3, messageBytes: 2 ** 40 + 3 };
    const bytes = encodeHeader(h, new Uint8Array(FRAME_HEADER_BYTES));
    expect(decodeHeader(bytes, emptyHeader())).toEqual(h);
    expect(frameLength(bytes)).toBe(2 ** 40 + 3);
  });

  it('lays fields out little-endian as the module table says (signed source and tag, 16-bit flags)', () => {
    const h = { ...emptyHeader(), kind: FrameKind.RTS, flags: 0x1234, context: 0x80000001, source: -1, tag: -2, seq: 0x89abcdef, sendId: 0xfedcba98, recvId: 1, aux: 0xffffffff, payloadBytes: 0, messageBytes: 2 ** 53 - 1 };
    const bytes = encodeHeader(h, new Uint8Array(FRAME_HEADER_BYTES).fill(0xaa));
    const v = new DataView(bytes.buffer);
    expect([v.getUint8(0), v.getUint8(1), v.getUint16(2, true)]).toEqual([1, FrameKind.RTS, 0x1234]);
    expect([v.getUint32(4, true), v.getInt32(8, true), v.getInt32(12, true), v.getUint32(16, true)]).toEqual([0x80000001, -1, -2, 0x89abcdef]);
    expect([v.getUint32(20, true), v.getUint32(24, true), v.getUint32(28, true)]).toEqual([0xfedcba98, 1, 0xffffffff]);
    expect([v.getBigUint64(32, true), v.getBigUint64(40, true)]).toEqual([0n, 2n ** 53n - 1n]);
    expect(decodeHeader(bytes, emptyHeader())).toEqual(h);
    expect(() => encodeHeader(h, new Uint8Array(FRAME_HEADER_BYTES - 1))).toThrow(RangeError);
  });

  it('a header buffer (encoded and decoded by 32-bit words) holds exactly the bytes of the byte path, for random headers and lengths up to 2^53 − 1', () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const u32 = () => Math.floor(rand() * 2 ** 32);
    const length = () => [0, 1, 8, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1][Math.floor(rand() * 8)] ?? 0;
    const words = newHeaderBuffer();
    const plain = new Uint8Array(FRAME_HEADER_BYTES);
    const own = new HeaderWords();
    for (let i = 0; i < 2000; i++) {
      const message = rand() < 0.5 ? length() : Math.floor(rand() * 2 ** 53);
      const h: FrameHeader = {
        kind: (1 + Math.floor(rand() * 8)) as FrameHeader['kind'],
        flags: u32() & 0xffff,
        context: u32(),
        source: u32() | 0,
        tag: u32() | 0,
        seq: u32(),
        sendId: u32(),
        recvId: u32(),
        aux: u32(),
        payloadBytes: Math.floor(rand() * (message + 1)),
        messageBytes: message,
      };
      encodeHeader(h, words);
      encodeHeader(h, plain);
      expect(Array.from(words)).toEqual(Array.from(plain));
      expect(decodeHeader(words, emptyHeader())).toEqual(h);
      expect(decodeHeader(plain, emptyHeader())).toEqual(h);
      // Through a caller's own word cache, which last saw the other buffer (a hit, then a miss).
      expect(decodeHeader(words, emptyHeader(), own)).toEqual(h);
      expect(decodeHeader(plain, emptyHeader(), own)).toEqual(h);
      expect(frameLength(words)).toBe(h.payloadBytes);
      expect(frameLengthOfWords(words, new Int32Array(words.buffer))).toBe(h.payloadBytes);
    }
    // 2^53 and beyond cannot be a length: refused by both readers alike.
    const big = newHeaderBuffer();
    new Int32Array(big.buffer)[9] = 0x20_0000;
    expect(() => frameLength(big)).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
    expect(() => frameLengthOfWords(big, new Int32Array(big.buffer))).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
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
