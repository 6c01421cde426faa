import { describe, expect, it } from 'vitest';
import { allgatherBytes, allreduceValue, alltoallBytes, bcastBytes, gatherBytes, reduceValue, scanValue, scatterBytes, type ValueReduction } from '../../../lib/collectives/value-collectives.js';
import { runCollective } from '../../helpers/collective-harness.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
// A non-commutative reduction: concatenation, so the rank order shows in the result.
const concat: ValueReduction<string> = { combine: (a, b) => `${a}${b}`, encode: (s) => enc.encode(s), decode: (b) => dec.decode(b) };
const word = (r: number) => `<${r}>`;

describe('value collectives (binomial trees, recursive doubling) at 1–9 ranks', () => {
  for (let size = 1; size <= 9; size++) {
    it(`size ${size}`, async () => {
      for (const root of new Set([0, size - 1, Math.floor(size / 2)])) {
        const { results } = await runCollective(size, async (io) => {
          const b = await bcastBytes(io, io.rank === root ? enc.encode(`from ${root}`) : undefined, root);
          const g = await gatherBytes(io, enc.encode(word(io.rank)), root);
          const s = await scatterBytes(io, io.rank === root ? Array.from({ length: size }, (_, r) => enc.encode(`to ${r}`)) : undefined, root);
          const a = await alltoallBytes(io, Array.from({ length: size }, (_, r) => enc.encode(`${io.rank}->${r}`)));
          const ag = await allgatherBytes(io, enc.encode(word(io.rank)));
          const red = await reduceValue(io, word(io.rank), concat, root);
          const all = await allreduceValue(io, word(io.rank), concat);
          const scan = await scanValue(io, word(io.rank), concat, false);
          const exscan = await scanValue(io, word(io.rank), concat, true);
          return { b: dec.decode(b), g: g?.map((x) => dec.decode(x)), s: dec.decode(s), a: a.map((x) => dec.decode(x)), ag: ag.map((x) => dec.decode(x)), red, all, scan, exscan };
        }, { seed: size * 31 + root, rendezvousBytes: 4 });
        const everyone = Array.from({ length: size }, (_, r) => word(r));
        results.forEach((x, r) => {
          expect(x.b).toBe(`from ${root}`);
          expect(x.g).toEqual(r === root ? everyone : undefined);
          expect(x.s).toBe(`to ${r}`);
          expect(x.a).toEqual(Array.from({ length: size }, (_, s) => `${s}->${r}`));
          expect(x.ag).toEqual(everyone);
          expect(x.red).toBe(r === root ? everyone.join('') : undefined);
          expect(x.all).toBe(everyone.join(''));
          expect(x.scan).toBe(everyone.slice(0, r + 1).join(''));
          expect(x.exscan).toBe(r === 0 ? undefined : everyone.slice(0, r).join(''));
        });
      }
    });
  }
});
