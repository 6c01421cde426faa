import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { Op, type PredefinedOp } from '../../../lib/constants.js';
import { VmcommError } from '../../../lib/errors.js';
import type { TypedArray } from '../../../lib/collectives/io.js';
import { kernelFor } from '../../../lib/collectives/op-kernels.js';
import {
  ELEMENT_BYTES,
  ELEMENT_TYPES,
  INTEGER_ELEMENT_TYPES,
  OP_TYPES,
  PREDEFINED_OPS,
  TYPED_ARRAY_CONSTRUCTORS,
  checkValueOp,
  defineOp,
  elementTypeOf,
  isTypedArray,
  opTypeTableMarkdown,
  reduceValues,
  reducerFor,
  typedArrayOf,
  type ElementType,
  type OpFunction,
} from '../../../lib/collectives/ops.js';

// ------------------------------------------------------------------ helpers

/** mulberry32: a small seeded generator, so every run checks the same data. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const bytes = (v: TypedArray) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
const isFloat = (t: ElementType) => t === 'float32' || t === 'float64';
const isBig = (t: ElementType) => t === 'bigint64' || t === 'biguint64';
const isLoc = (op: PredefinedOp) => op === 'MINLOC' || op === 'MAXLOC';
const seedOf = (s: string) => [...s].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0, 2166136261);

/** Element values as the test reads them (numbers or bigints). */
type Num = number | bigint;

function fill(type: ElementType, values: readonly Num[]): TypedArray {
  const out = new TYPED_ARRAY_CONSTRUCTORS[type](values.length);
  for (let i = 0; i < values.length; i++) (out as unknown as Num[])[i] = values[i];
  return out;
}

const SPECIAL_FLOATS = [0, -0, 1, -1, Infinity, -Infinity, NaN, Number.MIN_VALUE, 1e308];

/** `n` random elements over the type's whole range, floats with a few specials mixed in. */
function randomElements(type: ElementType, n: number, next: () => number): TypedArray {
  if (isFloat(type)) {
    const values: number[] = [];
    for (let i = 0; i < n; i++) {
      values.push(next() < 0.1 ? SPECIAL_FLOATS[Math.floor(next() * SPECIAL_FLOATS.length)] : (next() - 0.5) * 2 ** Math.floor(next() * 40 - 20));
    }
    return fill(type, values);
  }
  const raw = new Uint8Array(n * ELEMENT_BYTES[type]);
  for (let i = 0; i < raw.length; i++) raw[i] = Math.floor(next() * 256);
  // Small values too, so logical ops see zeros and products do not always overflow.
  const out = typedArrayOf(type, raw.buffer, 0, n);
  for (let i = 0; i < n; i++) if (next() < 0.3) (out as unknown as Num[])[i] = isBig(type) ? BigInt(Math.floor(next() * 3)) : Math.floor(next() * 3);
  return out;
}

/** `n` random (value, index) pairs with few distinct values, so ties are common. */
function randomPairs(type: ElementType, n: number, next: () => number): TypedArray {
  const values: Num[] = [];
  const signed = !type.startsWith('uint') && type !== 'biguint64';
  for (let i = 0; i < n; i++) {
    let v: number = Math.floor(next() * 4) - (signed ? 2 : 0);
    if (isFloat(type) && next() < 0.1) v = NaN;
    const k = Math.floor(next() * 100);
    values.push(isBig(type) ? BigInt(v) : v, isBig(type) ? BigInt(k) : k);
  }
  return fill(type, values);
}

const BITS: Record<ElementType, number> = { int8: 8, uint8: 8, uint8clamped: 8, int16: 16, uint16: 16, int32: 32, uint32: 32, float32: 32, float64: 64, bigint64: 64, biguint64: 64 };

/** What storing the exact integer `x` into an array of `type` keeps. */
function wrap(type: ElementType, x: bigint): Num {
  let r: bigint;
  if (type === 'uint8clamped') r = x < 0n ? 0n : x > 255n ? 255n : x;
  else if (type.startsWith('int') || type === 'bigint64') r = BigInt.asIntN(BITS[type], x);
  else r = BigInt.asUintN(BITS[type], x);
  return isBig(type) ? r : Number(r);
}

/** The reference result of one element, written out the plain way (exact integers, then wrapped). */
function reference(op: PredefinedOp, type: ElementType, a: Num, b: Num): Num {
  if (isFloat(type)) {
    const x = a as number, y = b as number;
    const r = op === 'SUM' ? x + y : op === 'PROD' ? x * y : op === 'MIN' ? Math.min(x, y) : Math.max(x, y);
    return type === 'float32' ? Math.fround(r) : r;
  }
  const x = BigInt(a), y = BigInt(b);
  const bool = (v: boolean) => (v ? 1n : 0n);
  const exact: Record<Exclude<PredefinedOp, 'MINLOC' | 'MAXLOC'>, () => bigint> = {
    SUM: () => x + y,
    PROD: () => x * y,
    MIN: () => (x < y ? x : y),
    MAX: () => (x > y ? x : y),
    LAND: () => bool(x !== 0n && y !== 0n),
    LOR: () => bool(x !== 0n || y !== 0n),
    LXOR: () => bool((x !== 0n) !== (y !== 0n)),
    BAND: () => x & y,
    BOR: () => x | y,
    BXOR: () => x ^ y,
  };
  return wrap(type, exact[op as keyof typeof exact]());
}

/** The reference MINLOC/MAXLOC of two pairs: the better value; equal values → smaller index; NaN wins. */
function referenceLoc(max: boolean, av: Num, ai: Num, bv: Num, bi: Num): [Num, Num] {
  const aNaN = Number.isNaN(av), bNaN = Number.isNaN(bv);
  const smaller = ai < bi ? ai : bi;
  if (aNaN && bNaN) return [av, smaller];
  if (aNaN) return [av, ai];
  if (bNaN) return [bv, bi];
  if (av === bv) return [av, smaller];
  return (max ? av > bv : av < bv) ? [av, ai] : [bv, bi];
}

function referenceArray(op: PredefinedOp, type: ElementType, a: TypedArray, b: TypedArray): Num[] {
  const x = Array.from(a as ArrayLike<Num>), y = Array.from(b as ArrayLike<Num>);
  if (!isLoc(op)) return x.map((v, i) => reference(op, type, v, y[i]));
  const out: Num[] = [];
  for (let i = 0; i < x.length; i += 2) out.push(...referenceLoc(op === 'MAXLOC', x[i], x[i + 1], y[i], y[i + 1]));
  return out;
}

/** Runs `fn` and returns what it threw (failing if it did not throw). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

function expectInvalid(fn: () => unknown, ...parts: (string | RegExp)[]): VmcommError {
  const e = thrown(fn);
  expect(e).toBeInstanceOf(VmcommError);
  expect((e as VmcommError).code).toBe('INVALID_ARGUMENT');
  for (const p of parts) expect((e as VmcommError).message).toMatch(p);
  return e as VmcommError;
}

// ------------------------------------------------------------------ element types

describe('element types', () => {
  it('names every typed-array class, sizes and rebuilds views', () => {
    for (const t of ELEMENT_TYPES) {
      const Ctor = TYPED_ARRAY_CONSTRUCTORS[t];
      expect(elementTypeOf(new Ctor(3))).toBe(t);
      expect(ELEMENT_BYTES[t]).toBe(Ctor.BYTES_PER_ELEMENT);
      const buffer = new ArrayBuffer(8 * 4);
      const v = typedArrayOf(t, buffer, 8, 2);
      expect(v).toBeInstanceOf(Ctor);
      expect([v.byteOffset, v.length]).toEqual([8, 2]);
      expect(typedArrayOf(t, buffer, 8).length).toBe(24 / ELEMENT_BYTES[t]);
    }
    expect(elementTypeOf(Buffer.from('hi'))).toBe('uint8');
    expect(elementTypeOf(runInNewContext('new Float64Array(2)') as Float64Array)).toBe('float64');
    expect(elementTypeOf(typedArrayOf('int32', new SharedArrayBuffer(16), 4, 3))).toBe('int32');
    expect(INTEGER_ELEMENT_TYPES).not.toContain('float32');
    expect(INTEGER_ELEMENT_TYPES).toContain('biguint64');
  });

  it('rejects non-typed arrays, unknown types, unaligned or outside ranges', () => {
    expectInvalid(() => elementTypeOf(new DataView(new ArrayBuffer(8)) as unknown as TypedArray), /typed array/);
    expectInvalid(() => elementTypeOf({ [Symbol.toStringTag]: 'Float64Array', length: 1 } as unknown as TypedArray));
    expect(isTypedArray([1, 2])).toBe(false);
    expect(isTypedArray(new DataView(new ArrayBuffer(1)))).toBe(false);
    expectInvalid(() => typedArrayOf('float16' as ElementType, new ArrayBuffer(8), 0, 1), /element type/, /float16/);
    expectInvalid(() => typedArrayOf('float64', new ArrayBuffer(16), 4, 1), /byteOffset/, /multiple of 8/);
    expectInvalid(() => typedArrayOf('int32', new ArrayBuffer(16), 4, 4), /length/, /at most 3/);
  });
});

// ------------------------------------------------------------------ the op × type table

describe('the op × type table', () => {
  it('follows MPI: arithmetic and loc ops everywhere, logical and bitwise on integers only', () => {
    expect(PREDEFINED_OPS).toEqual(Object.values(Op));
    for (const op of ['SUM', 'PROD', 'MIN', 'MAX', 'MINLOC', 'MAXLOC'] as const) expect(OP_TYPES[op]).toEqual(ELEMENT_TYPES);
    for (const op of ['LAND', 'LOR', 'LXOR', 'BAND', 'BOR', 'BXOR'] as const) {
      expect(OP_TYPES[op]).toEqual(ELEMENT_TYPES.filter((t) => !isFloat(t)));
    }
  });

  it('has a loop for exactly the cells it allows', () => {
    for (const op of PREDEFINED_OPS) for (const t of ELEMENT_TYPES) expect(kernelFor(op, t) !== undefined, `${op} × ${t}`).toBe(OP_TYPES[op].includes(t));
    expect(kernelFor('SUM', 'constructor' as ElementType)).toBeUndefined();
    expect(kernelFor('toString' as PredefinedOp, 'int8')).toBeUndefined();
  });

  it('renders as a markdown table', () => {
    const lines = opTypeTableMarkdown().trimEnd().split('\n');
    expect(lines).toHaveLength(2 + PREDEFINED_OPS.length);
    expect(lines[0]).toBe('| Op | Int8Array | Uint8Array | Uint8ClampedArray | Int16Array | Uint16Array | Int32Array | Uint32Array | Float32Array | Float64Array | BigInt64Array | BigUint64Array |');
    expect(lines[1]).toMatch(/^\| --- (\| :-: ){11}\|$/);
    expect(lines.find((l) => l.startsWith('| SUM |'))).toBe(`| SUM |${' ✓ |'.repeat(11)}`);
    expect(lines.find((l) => l.startsWith('| BAND |'))).toBe(`| BAND |${' ✓ |'.repeat(7)} — | — |${' ✓ |'.repeat(2)}`);
  });
});

// ------------------------------------------------------------------ every cell against the reference

describe.each(PREDEFINED_OPS)('reducerFor(%s, …)', (op) => {
  it.each(ELEMENT_TYPES)('%s', (type) => {
    if (!OP_TYPES[op].includes(type)) {
      expectInvalid(() => reducerFor(op, type), `Op.${op}`, type, /takes/, OP_TYPES[op][0]);
      return;
    }
    const reducer = reducerFor(op, type);
    const per = isLoc(op) ? 2 : 1;
    expect(reducer.elementBytes).toBe(per * ELEMENT_BYTES[type]);
    expect(reducer.commutative).toBe(true);
    expect(reducerFor(op, type)).toBe(reducer);
    const next = rng(seedOf(`${op}/${type}`));
    const make = (n: number) => (isLoc(op) ? randomPairs(type, n, next) : randomElements(type, n, next));
    const Ctor = TYPED_ARRAY_CONSTRUCTORS[type];

    for (const n of [0, 1, 3, 8, 33, 257]) {
      const a = make(n), b = make(n);
      const want = referenceArray(op, type, a, b);
      const out = new Ctor(n * per);
      reducer.combine(bytes(a), bytes(b), bytes(out));
      expect(Array.from(out as ArrayLike<Num>), `n=${n}`).toEqual(want);
      // In place, either side (the inputs are the same values, so the result is too).
      const left = a.slice(), right = b.slice();
      reducer.combine(bytes(left), bytes(b), bytes(left));
      expect(Array.from(left as ArrayLike<Num>)).toEqual(want);
      reducer.combine(bytes(a), bytes(right), bytes(right));
      expect(Array.from(right as ArrayLike<Num>)).toEqual(want);
    }

    // A block in the middle of larger buffers (algorithms split buffers), at element offsets that
    // leave 1- and 2-byte types off the 4-byte grid; the elements around it stay untouched.
    const total = 40 * per, from = 3 * per, count = 29 * per;
    const a = make(40), b = make(40), out = make(40), before = out.slice();
    const sub = (x: TypedArray) => bytes(x).subarray(from * ELEMENT_BYTES[type], (from + count) * ELEMENT_BYTES[type]);
    reducer.combine(sub(a), sub(b), sub(out));
    const want = referenceArray(op, type, a.subarray(from, from + count), b.subarray(from, from + count));
    const got = Array.from(out as ArrayLike<Num>);
    expect(got.slice(from, from + count)).toEqual(want);
    expect([...got.slice(0, from), ...got.slice(from + count)]).toEqual([...Array.from(before as ArrayLike<Num>).slice(0, from), ...Array.from(before as ArrayLike<Num>).slice(from + count, total)]);

    // Byte ranges that are not aligned to the element (not promised, but handled).
    const n = 5 * per, width = n * ELEMENT_BYTES[type];
    const x = make(5), y = make(5), shifted = new Uint8Array(3 * (width + 1) + 8);
    const at = (k: number) => shifted.subarray(1 + k * (width + 1), 1 + k * (width + 1) + width);
    at(0).set(bytes(x));
    at(1).set(bytes(y));
    reducer.combine(at(0), at(1), at(2));
    expect(Array.from(typedArrayOf(type, at(2).slice().buffer, 0, n) as ArrayLike<Num>)).toEqual(referenceArray(op, type, x, y));
  });
});

describe('reducer semantics', () => {
  const run = (op: PredefinedOp, type: ElementType, a: Num[], b: Num[]) => {
    const out = new TYPED_ARRAY_CONSTRUCTORS[type](a.length);
    reducerFor(op, type).combine(bytes(fill(type, a)), bytes(fill(type, b)), bytes(out));
    return Array.from(out as ArrayLike<Num>);
  };

  it('wraps integers like the typed array, saturates clamped bytes, rounds float32', () => {
    expect(run('SUM', 'int32', [2 ** 31 - 1], [1])).toEqual([-(2 ** 31)]);
    expect(run('PROD', 'uint32', [0xffffffff], [0xffffffff])).toEqual([1]);
    expect(run('PROD', 'int32', [0x12345678], [0x9abcdef])).toEqual([Math.imul(0x12345678, 0x9abcdef)]);
    expect(run('SUM', 'int8', [127], [1])).toEqual([-128]);
    expect(run('PROD', 'uint16', [65535], [65535])).toEqual([1]);
    expect(run('SUM', 'uint8clamped', [200, 3], [100, 4])).toEqual([255, 7]);
    expect(run('SUM', 'bigint64', [2n ** 63n - 1n], [1n])).toEqual([-(2n ** 63n)]);
    expect(run('PROD', 'biguint64', [2n ** 64n - 1n], [2n ** 64n - 1n])).toEqual([1n]);
    expect(run('SUM', 'float32', [1], [2 ** -30])).toEqual([1]);
  });

  it('MIN/MAX follow Math.min/Math.max: NaN wins, −0 below +0', () => {
    expect(run('MIN', 'float64', [NaN, 1, -0, 0], [1, NaN, 0, -0])).toEqual([NaN, NaN, -0, -0]);
    expect(run('MAX', 'float64', [-0, 0], [0, -0])).toEqual([0, 0]);
    expect(run('MIN', 'uint32', [0xffffffff], [1])).toEqual([1]);
    expect(run('MAX', 'biguint64', [2n ** 64n - 1n], [1n])).toEqual([2n ** 64n - 1n]);
    expect(run('MAX', 'bigint64', [-1n], [1n])).toEqual([1n]);
  });

  it('logical ops give 0/1 (0n/1n)', () => {
    expect(run('LAND', 'int16', [5, 0, -3, 0], [7, 7, 0, 0])).toEqual([1, 0, 0, 0]);
    expect(run('LOR', 'uint8', [5, 0, 3, 0], [7, 7, 0, 0])).toEqual([1, 1, 1, 0]);
    expect(run('LXOR', 'int32', [5, 0, -3, 0], [7, 7, 0, 0])).toEqual([0, 1, 1, 0]);
    expect(run('LAND', 'bigint64', [2n ** 40n, -1n], [-5n, 0n])).toEqual([1n, 0n]);
    expect(run('LXOR', 'biguint64', [2n ** 63n, 0n], [0n, 0n])).toEqual([1n, 0n]);
  });

  it('bitwise ops work on the bits of any integer type', () => {
    expect(run('BAND', 'bigint64', [-1n, 0x0f0f_0000_ffffn], [2n ** 62n + 5n, 0xffff_0000_0f0fn])).toEqual([2n ** 62n + 5n, 0x0f0f_0000_0f0fn]);
    expect(run('BXOR', 'int8', [-1, 0x55, 3], [0x0f, 0x0f, 3])).toEqual([-16, 0x5a, 0]);
    expect(run('BOR', 'uint16', [0x8000], [1])).toEqual([0x8001]);
  });

  it('MINLOC/MAXLOC keep the smaller index on equal values, whichever side it is on', () => {
    expect(run('MINLOC', 'int32', [3, 7, 3, 2, 1, 9], [3, 2, 3, 7, 2, 0])).toEqual([3, 2, 3, 2, 1, 9]);
    expect(run('MAXLOC', 'float64', [3, 7, 3, 2, 1, 9], [3, 2, 3, 7, 2, 0])).toEqual([3, 2, 3, 2, 2, 0]);
    expect(run('MAXLOC', 'biguint64', [5n, 4n, 5n, 1n], [5n, 2n, 6n, 9n])).toEqual([5n, 2n, 6n, 9n]);
    expect(run('MINLOC', 'float32', [NaN, 4, 1, 4, NaN, 8], [1, 2, NaN, 6, NaN, 3])).toEqual([NaN, 4, NaN, 6, NaN, 3]);
    expectInvalid(() => reducerFor('MINLOC', 'int32').combine(new Uint8Array(12), new Uint8Array(12), new Uint8Array(12)), /multiple of 8 bytes/);
  });

  it('rejects byte ranges of different lengths, unknown ops and unknown types', () => {
    const r = reducerFor('SUM', 'float64');
    expectInvalid(() => r.combine(new Uint8Array(8), new Uint8Array(16), new Uint8Array(8)), /8, 16 and 8 bytes/);
    expectInvalid(() => r.combine(new Uint8Array(12), new Uint8Array(12), new Uint8Array(12)), /multiple of 8/);
    expectInvalid(() => reducerFor('sum' as PredefinedOp, 'float64'), /op must be one of SUM, PROD/, /"sum"/);
    expectInvalid(() => reducerFor(42 as unknown as PredefinedOp, 'float64'), /op must be/, /42/);
    expectInvalid(() => reducerFor(null as unknown as PredefinedOp, 'float64'), /op must be/);
    expectInvalid(() => reducerFor('SUM', 'float16' as ElementType), /element type/, /float16/);
    const e = expectInvalid(() => reducerFor('BAND', 'float64'), 'Op.BAND', 'float64', 'Float64Array');
    expect(e.message).toBe(
      'Op.BAND does not apply to float64 elements (Float64Array): BAND takes integer element types only ' +
        'int8, uint8, uint8clamped, int16, uint16, int32, uint32, bigint64, biguint64; float64 takes SUM, PROD, MIN, MAX, MINLOC, MAXLOC',
    );
  });
});

// ------------------------------------------------------------------ function ops

describe('function ops', () => {
  it('defineOp wraps the function and marks whether it commutes', () => {
    const add = (a: number, b: number) => a + b;
    const commuting = defineOp(add, { commute: true });
    const ordered = defineOp(add);
    expect(commuting).not.toBe(add);
    expect(commuting.commute).toBe(true);
    expect(ordered.commute).toBe(false);
    expect(commuting.name).toBe('add');
    expect(Object.hasOwn(add, 'commute')).toBe(false);
    expect(commuting(2, 3)).toBe(5);
    expect(reducerFor(commuting, 'float64').commutative).toBe(true);
    expect(reducerFor(ordered, 'float64').commutative).toBe(false);
    expect(reducerFor((a: unknown) => a, 'float64').commutative).toBe(false);
    expectInvalid(() => defineOp(5 as unknown as OpFunction), /defineOp\(fn\) must be a function/);
  });

  it('is called block-wise on arrays of the buffer type, lower ranks first', () => {
    const calls: { a: unknown; b: unknown }[] = [];
    const digits = defineOp((a: Int32Array, b: Int32Array) => {
      calls.push({ a: a.constructor, b: Array.from(b) });
      return a.map((x, i) => x * 10 + b[i]);
    });
    const r = reducerFor(digits, 'int32');
    expect(r.elementBytes).toBe(4);
    const left = new Int32Array([1, 2, 3, 4, 5, 6]), right = new Int32Array([7, 8, 9, 1, 2, 3]), out = new Int32Array(6);
    // Two blocks, as an algorithm that split the buffer would combine them.
    r.combine(bytes(left).subarray(0, 8), bytes(right).subarray(0, 8), bytes(out).subarray(0, 8));
    r.combine(bytes(left).subarray(8), bytes(right).subarray(8), bytes(out).subarray(8));
    expect(Array.from(out)).toEqual([17, 28, 39, 41, 52, 63]);
    expect(calls).toEqual([{ a: Int32Array, b: [7, 8] }, { a: Int32Array, b: [9, 1, 2, 3] }]);
  });

  it('may modify its arguments without touching the buffers, in place or not', () => {
    // MPI in-out style: the result is written into b, which is returned.
    const inout = (a: Float64Array, b: Float64Array) => {
      for (let i = 0; i < b.length; i++) b[i] = a[i] - b[i];
      return b;
    };
    const r = reducerFor(inout, 'float64');
    const a = new Float64Array([10, 20]), b = new Float64Array([1, 2]), out = new Float64Array(2);
    r.combine(bytes(a), bytes(b), bytes(out));
    expect([Array.from(out), Array.from(a), Array.from(b)]).toEqual([[9, 18], [10, 20], [1, 2]]);
    r.combine(bytes(a), bytes(b), bytes(a));
    expect([Array.from(a), Array.from(b)]).toEqual([[9, 18], [1, 2]]);
    r.combine(bytes(a), bytes(b), bytes(b));
    expect([Array.from(a), Array.from(b)]).toEqual([[9, 18], [8, 16]]);
    const mutateA = (x: Float64Array, y: Float64Array) => {
      for (let i = 0; i < x.length; i++) x[i] *= y[i];
      return x;
    };
    const c = new Float64Array([2, 3]), d = new Float64Array([4, 5]);
    reducerFor(mutateA, 'float64').combine(bytes(c), bytes(d), bytes(d));
    expect([Array.from(c), Array.from(d)]).toEqual([[2, 3], [8, 15]]);
  });

  it('stores array-like results as typed-array stores do, and rejects results that do not fit', () => {
    const out = new Int16Array(3);
    reducerFor(() => [1, 2.7, -40000], 'int16').combine(new Uint8Array(6), new Uint8Array(6), bytes(out));
    expect(Array.from(out)).toEqual([1, 2, 25536]);
    reducerFor(() => new Float64Array([5, 6, 7]), 'int16').combine(new Uint8Array(6), new Uint8Array(6), bytes(out));
    expect(Array.from(out)).toEqual([5, 6, 7]);
    const big = new BigInt64Array(2);
    reducerFor((a: BigInt64Array) => [a[0] + 1n, 2n ** 64n + 3n], 'bigint64').combine(new Uint8Array(16), new Uint8Array(16), bytes(big));
    expect(Array.from(big)).toEqual([1n, 3n]);
    const combine = (fn: OpFunction, type: ElementType, n = 2) => () => {
      const size = n * ELEMENT_BYTES[type];
      reducerFor(fn, type).combine(new Uint8Array(size), new Uint8Array(size), new Uint8Array(size));
    };
    const named = function myOp() { return 5; };
    expectInvalid(combine(named, 'float64'), 'op myOp on float64 elements must return an array-like of 2 numbers', /got 5$/);
    expectInvalid(combine(() => [1, 2, 3], 'float64'), /array-like of 2 numbers/, /an array of length 3/);
    expectInvalid(combine(() => 'ab', 'uint8'), /got "ab"/);
    expectInvalid(combine(() => null, 'uint8'), /got null/);
    expectInvalid(combine(() => [1, 2], 'bigint64'), /returned 1 at index 0; it must return bigints/);
    expectInvalid(combine(() => [1n, 2n], 'int32'), /returned 1n at index 0; it must return numbers/);
    expectInvalid(combine(() => new BigInt64Array(2), 'float64'), /a BigInt64Array of length 2/);
    expectInvalid(combine(() => new Float64Array(3), 'float64'), /a Float64Array of length 3/);
  });

  it('lets what the function throws propagate unchanged', () => {
    const boom = new RangeError('boom');
    const r = reducerFor(() => {
      throw boom;
    }, 'uint8');
    expect(thrown(() => r.combine(new Uint8Array(1), new Uint8Array(1), new Uint8Array(1)))).toBe(boom);
    expect(thrown(() => reduceValues(() => { throw boom; }, 1, 2))).toBe(boom);
  });

  it('handles unaligned byte ranges', () => {
    const r = reducerFor((a: Float64Array, b: Float64Array) => a.map((x, i) => x - b[i]), 'float64');
    const raw = new Uint8Array(3 * 16 + 1);
    const at = (k: number) => raw.subarray(1 + 16 * k, 17 + 16 * k);
    at(0).set(bytes(new Float64Array([5, 7])));
    at(1).set(bytes(new Float64Array([1, 2])));
    r.combine(at(0), at(1), at(2));
    expect(Array.from(new Float64Array(at(2).slice().buffer))).toEqual([4, 5]);
    r.combine(at(0), at(1), at(0));
    expect(Array.from(new Float64Array(at(0).slice().buffer))).toEqual([4, 5]);
  });
});

// ------------------------------------------------------------------ the value path

describe('reduceValues', () => {
  it('reduces numbers with every op but MINLOC/MAXLOC', () => {
    const cases: [PredefinedOp, number, number, number][] = [
      ['SUM', 1.5, 2, 3.5], ['PROD', -3, 4, -12], ['MIN', 3, NaN, NaN], ['MAX', -0, 0, 0], ['MIN', -0, 0, -0],
      ['LAND', 5, 0, 0], ['LAND', 5, -2, 1], ['LOR', 0, 0, 0], ['LOR', 0, 9, 1], ['LXOR', 3, 4, 0], ['LXOR', 3, 0, 1],
      ['BAND', 12, 10, 8], ['BOR', 12, 10, 14], ['BXOR', 12, 10, 6], ['BAND', -1, 2 ** 40 + 3, 2 ** 40 + 3],
      ['BOR', 2 ** 52, 1, 2 ** 52 + 1], ['BXOR', -(2 ** 53) + 1, 2 ** 53 - 1, -2], ['BAND', -(2 ** 53) + 1, -2, -(2 ** 53)],
    ];
    for (const [op, a, b, want] of cases) expect(reduceValues(op, a, b), `${a} ${op} ${b}`).toBe(want);
    // Against BigInt on random safe integers, both signs, inside and outside 32 bits.
    const next = rng(99);
    for (let i = 0; i < 500; i++) {
      const r = () => Math.floor((next() - 0.5) * 2 ** Math.floor(next() * 54));
      const a = r(), b = r();
      expect(reduceValues('BAND', a, b)).toBe(Number(BigInt(a) & BigInt(b)));
      expect(reduceValues('BOR', a, b)).toBe(Number(BigInt(a) | BigInt(b)));
      expect(reduceValues('BXOR', a, b)).toBe(Number(BigInt(a) ^ BigInt(b)));
    }
  });

  it('reduces bigints of any size exactly', () => {
    const huge = 2n ** 200n + 12345n, neg = -(3n ** 150n);
    expect(reduceValues('SUM', huge, neg)).toBe(huge + neg);
    expect(reduceValues('PROD', huge, neg)).toBe(huge * neg);
    expect(reduceValues('MIN', huge, neg)).toBe(neg);
    expect(reduceValues('MAX', huge, neg)).toBe(huge);
    expect(reduceValues('BAND', huge, neg)).toBe(huge & neg);
    expect(reduceValues('BOR', huge, neg)).toBe(huge | neg);
    expect(reduceValues('BXOR', huge, neg)).toBe(huge ^ neg);
    expect(reduceValues('LAND', huge, 0n)).toBe(0n);
    expect(reduceValues('LOR', huge, 0n)).toBe(1n);
  });

  it('takes booleans for logical ops only', () => {
    expect(reduceValues('LAND', true, false)).toBe(false);
    expect(reduceValues('LOR', true, false)).toBe(true);
    expect(reduceValues('LXOR', true, true)).toBe(false);
    expectInvalid(() => reduceValues('SUM', true, false), 'Op.SUM does not apply to booleans', /LAND, LOR, LXOR/);
    expectInvalid(() => reduceValues('MAX', true, false), 'Op.MAX');
    expectInvalid(() => reduceValues('BAND', true, false), 'Op.BAND');
  });

  it('reduces arrays element-wise, nested too', () => {
    expect(reduceValues('SUM', [1, [2, 3n], []], [10, [20, 30n], []])).toEqual([11, [22, 33n], []]);
    expect(reduceValues('LOR', [[true, false], [0, 2]], [[false, false], [0, 0]])).toEqual([[true, false], [0, 1]]);
    const a = [1, 2], b = [3, 4];
    const sum = reduceValues('SUM', a, b);
    expect(sum).not.toBe(a);
    expect([a, b]).toEqual([[1, 2], [3, 4]]);
    expectInvalid(() => reduceValues('SUM', [1, 2], [1, 2, 3]), /an array of length 2 with an array of length 3/, /same type and shape/);
    expectInvalid(() => reduceValues('SUM', [1, [2, 3]], [1, [2]]), /value\[1\]/);
    expectInvalid(() => reduceValues('SUM', [1], 1), /value/);
    expectInvalid(() => reduceValues('SUM', 1, 1n), /cannot combine 1 with 1n/);
    expectInvalid(() => reduceValues('SUM', [[1]], [[1n]]), /value\[0\]\[0\]/);
    expectInvalid(() => reduceValues('SUM', ['a'], ['b']), /value\[0\] for Op.SUM must be a number, bigint, boolean/, /"a"/);
    expectInvalid(() => reduceValues('SUM', { x: 1 }, { x: 1 }), /\[object Object\]/);
    expectInvalid(() => reduceValues('BAND', 2 ** 60, 1), /safe integers/, /use bigints/);
    expectInvalid(() => reduceValues('LAND', 1.5, 1), /Op.LAND takes integers/);
  });

  it('reduces typed arrays through the loops, into a new array', () => {
    const a = new Int32Array([1, 2, 2 ** 31 - 1]), b = new Int32Array([10, 20, 1]);
    const sum = reduceValues('SUM', a, b) as Int32Array;
    expect(sum).toBeInstanceOf(Int32Array);
    expect(sum).not.toBe(a);
    expect(Array.from(sum)).toEqual([11, 22, -(2 ** 31)]);
    expect(Array.from(a)).toEqual([1, 2, 2 ** 31 - 1]);
    const offset = new Float64Array(new ArrayBuffer(40), 8, 3).fill(1.5);
    expect(Array.from(reduceValues('MAX', offset, new Float64Array([2, 1, 0])) as Float64Array)).toEqual([2, 1.5, 1.5]);
    expect(reduceValues('SUM', [new Uint8Array([1]), 2], [new Uint8Array([3]), 4])).toEqual([new Uint8Array([4]), 6]);
    expectInvalid(() => reduceValues('SUM', new Int32Array(2), new Float64Array(2)), /Int32Array of length 2 with a Float64Array/);
    expectInvalid(() => reduceValues('SUM', new Int32Array(2), new Int32Array(3)), /length 2 with an Int32Array of length 3/);
    expectInvalid(() => reduceValues('SUM', new Int32Array(2), [1, 2]), /same type and shape/);
    expectInvalid(() => reduceValues('BAND', new Float64Array(2), new Float64Array(2)), 'Op.BAND does not apply to float64');
    expectInvalid(() => reduceValues('MINLOC', new Float64Array(3), new Float64Array(3)), /length must be even/);
  });

  it('reduces [value, index] pairs for MINLOC/MAXLOC, ties to the smaller index', () => {
    expect(reduceValues('MINLOC', [3, 5], [3, 2])).toEqual([3, 2]);
    expect(reduceValues('MINLOC', [3, 1], [3, 2])).toEqual([3, 1]);
    expect(reduceValues('MAXLOC', [3, 5], [4, 9])).toEqual([4, 9]);
    expect(reduceValues('MINLOC', [3, 5], [4, 9])).toEqual([3, 5]);
    expect(reduceValues('MINLOC', [NaN, 5], [4, 9])).toEqual([NaN, 5]);
    expect(reduceValues('MAXLOC', [2n ** 100n, 7n], [2n ** 100n, 3n])).toEqual([2n ** 100n, 3n]);
    expect(reduceValues('MAXLOC', [2n ** 100n, 7], [5n, 3])).toEqual([2n ** 100n, 7]);
    expect(reduceValues('MAXLOC', [[1, 0], [[5, 1], [5, 0]]], [[2, 1], [[4, 0], [5, 4]]])).toEqual([[2, 1], [[5, 1], [5, 0]]]);
    expectInvalid(() => reduceValues('MINLOC', 3, 4), /takes \[value, index\] pairs/);
    expectInvalid(() => reduceValues('MINLOC', [3, 0.5], [3, 1]), /value is an array of length 2 \[3, 0.5\]/);
    expectInvalid(() => reduceValues('MINLOC', [3, 1], [[3, 1]]), /value is an array of length 1/);
    expectInvalid(() => reduceValues('MINLOC', [3, 1], [3n, 1]), /same type and shape/);
  });

  it('gives function ops the whole values, lower ranks first', () => {
    const concat = defineOp((a: string, b: string) => a + b);
    expect(reduceValues(concat, 'lo', 'hi')).toBe('lohi');
    const a = new Float64Array([1, 2]);
    const same = reduceValues((x: Float64Array) => x, a, new Float64Array(5));
    expect(same).toBe(a);
    expectInvalid(() => reduceValues('NOPE' as PredefinedOp, 1, 2), /op must be one of/, /"NOPE"/);
  });
});

describe('checkValueOp', () => {
  it('accepts what reduceValues accepts', () => {
    const ok: [PredefinedOp | OpFunction, unknown][] = [
      ['SUM', 1], ['SUM', 1n], ['SUM', [1, [2n, new Float64Array(3)]]], ['LAND', true], ['LXOR', [0, 1n, false]],
      ['BAND', 2 ** 53 - 1], ['MINLOC', [1, 0]], ['MAXLOC', [[1n, 2n], [[3, 4]]]], ['MINLOC', new Int8Array(4)],
      ['MAX', []], [(a: unknown) => a, 'anything'], [defineOp(() => null), undefined],
    ];
    for (const [op, v] of ok) expect(checkValueOp(op, v), `${String(op)} ${String(v)}`).toBeUndefined();
  });

  it('returns (does not throw) the error for what reduceValues rejects', () => {
    const bad: [PredefinedOp | OpFunction, unknown, RegExp][] = [
      ['SUM', true, /Op.SUM does not apply to booleans/],
      ['SUM', 'x', /value for Op.SUM must be/],
      ['SUM', [1, [2, null]], /value\[1\]\[1\] for Op.SUM/],
      ['BAND', 1.5, /safe integers/],
      ['BAND', new Float32Array(2), /Op.BAND does not apply to float32 elements \(Float32Array\): BAND takes integer/],
      ['BAND', [new Float32Array(2)], /Float32Array, value\[0\]\)/],
      ['LOR', 0.5, /takes integers/],
      ['MINLOC', 4, /pairs/],
      ['MINLOC', new Uint16Array(3), /even/],
      ['MAXLOC', [[1, 2], [1, 2.5]], /value\[1\] is an array of length 2 \[1, 2.5\]/],
      ['MEAN' as PredefinedOp, 1, /op must be one of/],
      [7 as unknown as OpFunction, 1, /op must be one of/],
    ];
    for (const [op, v, message] of bad) {
      const e = checkValueOp(op, v);
      expect(e, `${String(op)}`).toBeInstanceOf(VmcommError);
      expect(e!.code).toBe('INVALID_ARGUMENT');
      expect(e!.message).toMatch(message);
      // reduceValues agrees, on a second operand of the same shape.
      expect(() => reduceValues(op, v, v)).toThrow(e!.message);
    }
  });
});
