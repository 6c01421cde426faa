/**
 * Encoding of values for `send`/`recv` (mpi4py's lowercase API): msgpackr, configured so typed arrays,
 * Buffers, Maps, Dates and bigints of any size round-trip with their types, and plain objects stay plain
 * objects (records) while Maps stay Maps.
 *
 * @module
 */

import { Buffer } from 'node:buffer';
import { Packr, Unpackr } from 'msgpackr';
import { VmcommError } from './errors.js';

const OPTIONS = {
  // Typed arrays (all element types), Buffers, Dates, Maps and Sets keep their types.
  moreTypes: true,
  // Objects travel as records (with their structure inline), so a decoded msgpack map is a real Map.
  useRecords: true,
  mapsAsObjects: false,
  // Decoded binaries own their memory: they never alias a receive buffer or shared-memory ring.
  copyBuffers: true,
  // 64-bit integers decode as bigint; larger bigints use msgpackr's arbitrary-size extension.
  int64AsType: 'bigint' as const,
  useBigIntExtension: true,
};

/** Encodes and decodes values. One per world; not thread-safe (nor need it be: one isolate). */
export class ValueCodec {
  // Separate instances: a Packr that also unpacks would mix record structures between directions.
  private readonly packr = new Packr(OPTIONS);
  private readonly unpackr = new Unpackr(OPTIONS);

  /**
   * Encodes `value`. The returned bytes are never overwritten by later calls (msgpackr moves on in its
   * buffer), so they may be sent without a copy.
   */
  encode(value: unknown): Uint8Array {
    // msgpackr would turn a function into nil silently; at the top level that is surely a mistake.
    if (typeof value === 'function' || typeof value === 'symbol') {
      throw new VmcommError('INVALID_ARGUMENT', `a ${typeof value} cannot be sent; send data (nested functions travel as undefined)`);
    }
    // msgpackr writes −0 as the integer 0; a number sent alone keeps its sign as a float64 (0xcb),
    // which msgpackr decodes as −0. Inside arrays and objects −0 still arrives as +0 (typed arrays keep it).
    if (value === 0 && 1 / value < 0) return Uint8Array.of(0xcb, 0x80, 0, 0, 0, 0, 0, 0, 0);
    try {
      return this.packr.pack(value);
    } catch (cause) {
      throw new VmcommError('INVALID_ARGUMENT', `value cannot be encoded for sending (${(cause as Error).message}); send plain data, typed arrays, Maps, Dates or bigints`, { cause });
    }
  }

  /** Decodes a whole message; a malformed one is `CORRUPT`. */
  decode<T>(bytes: Uint8Array): T {
    if (bytes.byteLength === 0) return undefined as T;
    try {
      // Through a Buffer (a view, no copy, unless it is one already): msgpackr then tells Buffers
      // (bin) from Uint8Arrays (typed ext).
      const source = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      return this.unpackr.unpack(source) as T;
    } catch (cause) {
      throw new VmcommError('CORRUPT', `a received value could not be decoded (${(cause as Error).message})`, { cause });
    }
  }
}
