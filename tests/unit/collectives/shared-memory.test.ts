// The shared-memory collectives' protocol (lib/collectives/shared-memory.ts) over the memory test
// transport's cells: worlds of one process, so every interleaving of the protocol is reachable
// deterministically — late ranks, queued calls, ranks that disagree, lost members, timeouts. The same
// protocol over the shm transport's cells runs in the collective matrix (tests/integration/collectives).
import { describe, expect, it } from 'vitest';
import type { Communicator } from '../../../lib/communicator.js';
import { IN_PLACE, Op } from '../../../lib/constants.js';
import { defineOp } from '../../../lib/collectives/ops.js';
import { createLocalJob, reportLocalPeerLost } from '../../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../../lib/start-world.js';
import type { Bootstrap } from '../../../lib/bootstrap.js';
import { memory, type MemoryTransport } from '../../helpers/memory-transport.js';
import { finalizeAfterEach, outcomes, sleep } from '../../helpers/settle.js';

const track = finalizeAfterEach();
async function job(size: number, cellBytes = 64): Promise<{ comms: Communicator[]; boots: Bootstrap[]; transports: MemoryTransport[] }> {
  const boots = createLocalJob(size);
  const factory = memory({ cellBytes: cellBytes > 0 ? cellBytes : undefined });
  const comms = track(await Promise.all(boots.map((b) => initWithBootstrap(b, { backends: [factory], only: ['memory'] }))));
  return { comms, boots, transports: factory.instances };
}

/** The collective-context frames a rank sent so far (a shared-memory call sends none). */
function collectiveFramesSent(c: Communicator): number {
  return c.stats().reduce((a, s) => a + s.messagesSent, 0);
}

describe('shared-memory collectives (cells of the memory test transport)', () => {
  it('allreduce of a number, of typed arrays and allreduceBuffer: the rank-order result, bit-identical everywhere, without messages', async () => {
    const { comms, transports } = await job(5);
    await Promise.all(comms.map((c) => c.barrier()));
    const before = comms.map(collectiveFramesSent);
    const values = [0.1, 1e16, -1e16, 0.2, 0.3];
    const got = await Promise.all(comms.map((c) => c.allreduce(values[c.rank], Op.SUM)));
    // ((((x0 + x1) + x2) + x3) + x4): rank order, which no other association reproduces here.
    const want = values.reduce((a, b) => a + b);
    expect(got).toEqual(comms.map(() => want));
    const arrays = await Promise.all(comms.map((c) => c.allreduce(Int32Array.of(c.rank, -c.rank, 7), Op.MAX)));
    for (const a of arrays) expect(Array.from(a)).toEqual([4, 0, 7]);
    const bufs = comms.map((c) => Float64Array.of(c.rank + 0.5));
    await Promise.all(comms.map((c, r) => c.allreduceBuffer(bufs[r], bufs[r], Op.PROD)));
    for (const b of bufs) expect(b[0]).toBe(0.5 * 1.5 * 2.5 * 3.5 * 4.5);
    expect(comms.map(collectiveFramesSent)).toEqual(before);
    expect(transports.every((t) => t.cellsGiven === 1)).toBe(true);
  });

  it('one number or double with VMCOMM_COLL_ALLREDUCE=shared-memory on one rank and the table’s choice on the other: both take the one-number path, agree, and send no message', async () => {
    const boots = createLocalJob(2);
    const factory = memory({ cellBytes: 64 });
    const comms = track(await Promise.all(boots.map((b, r) => initWithBootstrap(b, { backends: [factory], only: ['memory'], env: r === 0 ? { VMCOMM_COLL_ALLREDUCE: 'shared-memory' } : {} }))));
    const before = comms.map(collectiveFramesSent);
    const bufs = comms.map((c) => Float64Array.of(c.rank + 1));
    await Promise.all(comms.map((c, r) => c.allreduceBuffer(IN_PLACE, bufs[r], Op.MAX)));
    expect(bufs.map((b) => b[0])).toEqual([2, 2]);
    expect(await Promise.all(comms.map((c) => c.allreduce(c.rank + 1, Op.SUM)))).toEqual([3, 3]);
    expect(comms.map(collectiveFramesSent)).toEqual(before);
  });

  it('a rank whose VMCOMM_COLL_ALLREDUCE makes it use messages: INVALID_ARGUMENT on both, not a hang', async () => {
    const boots = createLocalJob(2);
    const factory = memory({ cellBytes: 64 });
    const comms = track(await Promise.all(boots.map((b, r) => initWithBootstrap(b, { backends: [factory], only: ['memory'], env: r === 1 ? { VMCOMM_COLL_ALLREDUCE: 'recursive-doubling' } : {} }))));
    expect(await outcomes(comms.map((c) => c.allreduce(1, Op.SUM, { timeout: 5_000 })))).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
  });

  it('bcast of values and bcastBuffer: the root’s data on every rank, from every root; what fits a cell goes without messages', async () => {
    const { comms } = await job(4);
    await Promise.all(comms.map((c) => c.barrier()));
    const before = comms.map(collectiveFramesSent);
    for (let root = 0; root < 4; root++) {
      const value = { root, tag: `r${root}` };
      expect(await Promise.all(comms.map((c) => c.bcast(c.rank === root ? value : undefined, root)))).toEqual(comms.map(() => value));
      const views = comms.map((c) => (c.rank === root ? Float64Array.from({ length: 8 }, (_, i) => root * 10 + i) : new Float64Array(8).fill(-1)));
      await Promise.all(comms.map((c, r) => c.bcastBuffer(views[r], root)));
      for (const v of views) expect(Array.from(v)).toEqual(Array.from({ length: 8 }, (_, i) => root * 10 + i));
    }
    // Strings around the cell's size (64 bytes here, 60 after the length; a string of 32–255
    // characters encodes in 2 + length bytes): inline up to 57 characters, then the length (and the
    // algorithm of the bytes) through the cell and the bytes by messages.
    const text = (length: number) => 'x'.repeat(length);
    const bcastText = (length: number) => Promise.all(comms.map((c) => c.bcast(c.rank === 1 ? text(length) : undefined, 1)));
    for (let length = 40; length <= 57; length++) expect(await bcastText(length)).toEqual(comms.map(() => text(length)));
    expect(comms.map(collectiveFramesSent)).toEqual(before);
    for (let length = 58; length <= 70; length++) expect(await bcastText(length)).toEqual(comms.map(() => text(length)));
    expect(collectiveFramesSent(comms[1])).toBeGreaterThan(before[1]);
  });

  it('bcast of numbers: every double arrives bit for bit (NaN, −0, ±Infinity, subnormals), from roots that change, without messages; the message path agrees', async () => {
    const { comms } = await job(3);
    await Promise.all(comms.map((c) => c.barrier()));
    const before = comms.map(collectiveFramesSent);
    const numbers = [42.5, -0, 0, NaN, Infinity, -Infinity, Number.MIN_VALUE, 2 ** 53 + 2, -1e-310, 7];
    for (const [i, x] of numbers.entries()) {
      // Two calls from one root, then the next root: the kept path and hash follow the root.
      for (const root of [i % 3, i % 3, (i + 1) % 3]) {
        const got = await Promise.all(comms.map((c) => c.bcast(c.rank === root ? x : undefined, root)));
        for (const g of got) expect(Object.is(g, x)).toBe(true);
      }
    }
    expect(comms.map(collectiveFramesSent)).toEqual(before);
    const viaMessages = await Promise.all(comms.map((c) => c.bcast(c.rank === 2 ? -0 : undefined, 2, { algorithm: 'binomial' })));
    for (const g of viaMessages) expect(Object.is(g, -0)).toBe(true);
    // A root that changes between calls while another rank keeps the old one: caught, not a wrong value.
    const split = await outcomes(comms.map((c) => c.bcast(c.rank === 0 ? 1 : undefined, c.rank === 1 ? 1 : 0, { timeout: 5_000 })));
    expect(split).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
  });

  it('a value too long for a cell: its bytes follow the shared head as messages, also to ranks that still wait in the head', async () => {
    const { comms } = await job(3);
    const long = 'w'.repeat(300);
    // The receivers enter first and wait in the head's pass. The root completes it at once and sends
    // the bytes behind a message already queued to each receiver, so they arrive before the
    // receivers learn that the head's pass is over (a receiver that took them for another path's
    // messages failed the call).
    await Promise.all([1, 2].flatMap((r) => [comms[0].send('open', r, 6), comms[r].recv(0, 6)])); // channels open
    const receivers = comms.slice(1).map((c) => c.bcast(undefined, 0));
    const notes = comms.slice(1).map((c) => c.recv(0, 5));
    await sleep(5);
    for (const r of [1, 2]) void comms[0].send('note', r, 5);
    expect(await Promise.all([comms[0].bcast(long, 0), ...receivers])).toEqual([long, long, long]);
    expect(await Promise.all(notes)).toEqual(['note', 'note']);
  });

  it('calls started together: a bcast whose value needs the length head, then other shared calls; one rank late', async () => {
    const { comms } = await job(2);
    for (const length of [50, 58, 62, 200]) {
      const text = 'q'.repeat(length);
      const start = (c: Communicator) => Promise.all([c.bcast(c.rank === 0 ? text : undefined, 0), c.barrier(), c.allreduce(c.rank, Op.SUM)]);
      const early = start(comms[1]);
      await sleep(10);
      expect(await Promise.all([start(comms[0]), early])).toEqual([
        [text, undefined, 1],
        [text, undefined, 1],
      ]);
    }
  });

  it('the root names the algorithm of a long value’s bytes: ranks whose VMCOMM_COLL_BCAST differ still agree', async () => {
    const long = 'L'.repeat(30_000);
    const envs = [{ VMCOMM_COLL_BCAST: 'pipeline' }, { VMCOMM_COLL_BCAST: 'scatter-allgather' }, {}];
    for (const cellBytes of [0, 64]) {
      const boots = createLocalJob(3);
      const factory = memory({ cellBytes: cellBytes > 0 ? cellBytes : undefined });
      const comms = track(await Promise.all(boots.map((b, r) => initWithBootstrap(b, { backends: [factory], only: ['memory'], env: envs[r] }))));
      // With cells, the head's path must agree too: name it.
      const opts = cellBytes > 0 ? { algorithm: 'shared-memory', timeout: 5_000 } : { timeout: 5_000 };
      for (const root of [0, 1, 2]) expect(await Promise.all(comms.map((c) => c.bcast(c.rank === root ? long : undefined, root, opts)))).toEqual([long, long, long]);
    }
  });

  it('a named shared-memory bcast: a long value still arrives (its length goes through the cell); a buffer too large for a cell is INVALID_ARGUMENT', async () => {
    const { comms } = await job(2);
    const long = 'z'.repeat(500);
    expect(await Promise.all(comms.map((c) => c.bcast(c.rank === 0 ? long : undefined, 0, { algorithm: 'shared-memory' })))).toEqual([long, long]);
    expect(await outcomes(comms.map((c) => c.bcastBuffer(new Float64Array(9), 0, { algorithm: 'shared-memory' })))).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
    // Cells too small for a length head (8 bytes, 4 after the length): the head goes by messages, and
    // a named shared-memory bcast still works on every rank.
    const tiny = (await job(2, 8)).comms;
    expect(await Promise.all(tiny.map((c) => c.bcast(c.rank === 1 ? long : undefined, 1, { algorithm: 'shared-memory' })))).toEqual([long, long]);
    expect(await Promise.all(tiny.map((c) => c.bcast(c.rank === 1 ? 3 : undefined, 1)))).toEqual([3, 3]);
  });

  it('bcastBuffer on ranks whose VMCOMM_COLL_BCAST name different message algorithms: INVALID_ARGUMENT everywhere, not a hang', async () => {
    const envs = [{ VMCOMM_COLL_BCAST: 'pipeline' }, { VMCOMM_COLL_BCAST: 'scatter-allgather' }, { VMCOMM_COLL_BCAST: 'pipeline' }];
    const boots = createLocalJob(3);
    const factory = memory({});
    const comms = track(await Promise.all(boots.map((b, r) => initWithBootstrap(b, { backends: [factory], only: ['memory'], env: envs[r] }))));
    const got = await outcomes(comms.map((c) => c.bcastBuffer(new Uint8Array(1 << 20), 0, { timeout: 5_000 })));
    expect(got).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
  });

  it('a receiving rank whose VMCOMM_COLL_BCAST makes it wait for a message: INVALID_ARGUMENT on both, not a hang', async () => {
    for (const algorithm of ['binomial', 'pipeline']) {
      const boots = createLocalJob(2);
      const factory = memory({ cellBytes: 64 });
      const comms = track(await Promise.all(boots.map((b, r) => initWithBootstrap(b, { backends: [factory], only: ['memory'], env: r === 1 ? { VMCOMM_COLL_BCAST: algorithm } : {} }))));
      expect(await outcomes(comms.map((c) => c.bcast(c.rank === 0 ? 7 : undefined, 0, { timeout: 5_000 })))).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
      const both = track(await Promise.all(createLocalJob(2).map((b, r) => initWithBootstrap(b, { backends: [memory({ cellBytes: 64 })], only: ['memory'], env: r === 1 ? { VMCOMM_COLL_BCAST: algorithm } : {} }))));
      expect(await outcomes(both.map((c) => c.bcastBuffer(new Uint8Array(8), 0, { timeout: 5_000 })))).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
    }
  });

  it('reduce of numbers, typed arrays and a function op: the rank-order result at every root, undefined elsewhere, without messages', async () => {
    const { comms } = await job(4);
    await Promise.all(comms.map((c) => c.barrier()));
    const before = comms.map(collectiveFramesSent);
    const affine = defineOp((a: Float64Array, b: Float64Array) => a.map((x, i) => 2 * x + b[i]));
    for (let root = 0; root < 4; root++) {
      const values = [0.1, 1e16, -1e16, 0.2];
      expect(await Promise.all(comms.map((c) => c.reduce(values[c.rank], Op.SUM, root)))).toEqual(comms.map((c) => (c.rank === root ? values.reduce((a, b) => a + b) : undefined)));
      const maxes = await Promise.all(comms.map((c) => c.reduce(Int16Array.of(c.rank, -c.rank), Op.MAX, root)));
      for (const [r, m] of maxes.entries()) expect(m === undefined ? undefined : Array.from(m)).toEqual(r === root ? [3, 0] : undefined);
      const folded = await Promise.all(comms.map((c) => c.reduce(Float64Array.of(c.rank + 1), affine, root)));
      // 2·(2·(2·1 + 2) + 3) + 4 = 26 (any other order gives another number)
      for (const [r, f] of folded.entries()) expect(f === undefined ? undefined : Array.from(f)).toEqual(r === root ? [26] : undefined);
    }
    expect(comms.map(collectiveFramesSent)).toEqual(before);
  });

  it('typed arrays of every kind, arguments that change from call to call: each call reduces by its own arguments, in rank order, without messages', async () => {
    const { comms } = await job(4, 512);
    await Promise.all(comms.map((c) => c.barrier()));
    const before = comms.map(collectiveFramesSent);
    // Float64 SUM where only ((x0 + x1) + x2) + x3 gives 1: the order shows.
    const terms = [1e16, 1, -1e16, 1];
    // Calls whose shape, op, root or class changes each time (the kept decisions must follow).
    for (let i = 0; i < 12; i++) {
      const root = i % 4;
      const n = 1 + (i % 3);
      const sums = await Promise.all(comms.map((c) => c.allreduce(new Float64Array(n).fill(terms[c.rank]), Op.SUM)));
      for (const s of sums) expect(Array.from(s)).toEqual(new Array(n).fill(1));
      // The same shape three times: then only the op changes, then only the root.
      for (const [op, at, want] of [[Op.SUM, root, 1], [Op.MAX, root, 1e16], [Op.SUM, (root + 1) % 4, 1]] as const) {
        const reduced = await Promise.all(comms.map((c) => c.reduce(new Float64Array(n).fill(terms[c.rank]), op, at)));
        for (const [r, got] of reduced.entries()) expect(got === undefined ? undefined : Array.from(got)).toEqual(r === at ? new Array(n).fill(want) : undefined);
      }
      // Classes whose op loop runs on another view (int8 bitwise, uint32 sum) take the byte fold.
      const ands = await Promise.all(comms.map((c) => c.allreduce(Int8Array.of(-1 ^ (1 << c.rank), -1), Op.BAND)));
      for (const a of ands) expect(Array.from(a)).toEqual([-16, -1]);
      const wraps = await Promise.all(comms.map((c) => c.allreduce(Uint32Array.of(0xffff_ffff, c.rank), Op.SUM)));
      for (const w of wraps) expect(Array.from(w)).toEqual([0xffff_fffc, 6]);
      const bytes = await Promise.all(comms.map((c) => c.allreduce(Buffer.from([c.rank, 200]), Op.MAX)));
      for (const b of bytes) expect(Array.from(b)).toEqual([3, 200]);
      const bigs = await Promise.all(comms.map((c) => c.reduce(BigInt64Array.of(BigInt(c.rank) << 40n), Op.SUM, root)));
      expect(bigs[root]![0]).toBe(6n << 40n);
      const recvs = comms.map((c) => new Float32Array(n).fill(c.rank + 1));
      await Promise.all(comms.map((c, r) => c.allreduceBuffer(IN_PLACE, recvs[r], Op.PROD)));
      for (const b of recvs) expect(Array.from(b)).toEqual(new Array(n).fill(24));
    }
    expect(comms.map(collectiveFramesSent)).toEqual(before);
  });

  it('allreduce and reduce reduce the value an array held when called, not what it holds when the call runs', async () => {
    const { comms } = await job(3);
    const arrays = comms.map((c) => Float64Array.of(c.rank + 1, 10));
    // Rank 0 calls first, behind a barrier the others have not reached (so its passes open later),
    // and changes its array at once; the others call later.
    const barrier = comms[0].barrier();
    const first = comms[0].allreduce(arrays[0], Op.SUM);
    const firstReduce = comms[0].reduce(arrays[0], Op.SUM, 0);
    arrays[0].fill(1000);
    await sleep(20);
    await Promise.all(comms.slice(1).map((c) => c.barrier()));
    await barrier;
    const rest = await Promise.all(comms.slice(1).map((c) => c.allreduce(arrays[c.rank], Op.SUM)));
    await Promise.all(comms.slice(1).map((c) => c.reduce(arrays[c.rank], Op.SUM, 0)));
    for (const got of [await first, ...rest]) expect(Array.from(got)).toEqual([6, 30]);
    expect(Array.from((await firstReduce)!)).toEqual([6, 30]);
    // Neither the input nor the result is the other.
    expect(await first).not.toBe(arrays[0]);
    expect(Array.from(arrays[0])).toEqual([1000, 1000]);
  });

  it('allgather and gather of values, allgatherv and gatherv of typed arrays: every rank’s in rank order, without messages when each fits a cell', async () => {
    const { comms } = await job(4);
    await Promise.all(comms.map((c) => c.barrier()));
    const before = comms.map(collectiveFramesSent);
    const value = (r: number) => [r + 0.5, { r }, `s${r}`, -0][r];
    const all = await Promise.all(comms.map((c) => c.allgather(value(c.rank))));
    for (const got of all) {
      expect(got).toEqual([0.5, { r: 1 }, 's2', -0]);
      expect(Object.is(got[3], -0)).toBe(true);
    }
    for (let root = 0; root < 4; root++) {
      const gathered = await Promise.all(comms.map((c) => c.gather(value(c.rank), root)));
      for (const [r, g] of gathered.entries()) expect(g).toEqual(r === root ? [0.5, { r: 1 }, 's2', -0] : undefined);
      // Counts with a zero and blocks of different sizes (at most a 64-byte cell each).
      const counts = [2, 0, 8, 1];
      const want = Float64Array.from([0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 3]);
      const gv = await Promise.all(comms.map((c) => c.gatherv(new Float64Array(counts[c.rank]).fill(c.rank), counts, root)));
      for (const [r, g] of gv.entries()) expect(g === undefined ? undefined : Array.from(g)).toEqual(r === root ? Array.from(want) : undefined);
      const agv = await Promise.all(comms.map((c) => c.allgatherv(new Float64Array(counts[c.rank]).fill(c.rank), counts)));
      for (const g of agv) expect(Array.from(g)).toEqual(Array.from(want));
    }
    // One counts array changed in place between calls, and another class with the same counts: each
    // call gathers by what it is given.
    const shared = [1, 1, 1, 1];
    for (const [n, Kind] of [[1, Float64Array], [2, Float64Array], [2, Float32Array], [1, Float32Array]] as const) {
      shared[2] = n;
      const got = await Promise.all(comms.map((c) => c.allgatherv(new Kind(shared[c.rank]).fill(c.rank + 1), shared)));
      for (const g of got) {
        expect(g).toBeInstanceOf(Kind);
        expect(Array.from(g)).toEqual([1, 2, ...new Array(n).fill(3), 4]);
      }
    }
    // send a view of recv at this rank's place (MPI_IN_PLACE as the MPI adapter passes it), and send
    // a view of recv somewhere else: every block arrives whole.
    const recvs = comms.map(() => new Float64Array(4));
    await Promise.all(comms.map((c, r) => {
      recvs[r][r] = 10 + r;
      return c.allgatherv(recvs[r].subarray(r, r + 1), [1, 1, 1, 1], recvs[r]);
    }));
    for (const got of recvs) expect(Array.from(got)).toEqual([10, 11, 12, 13]);
    const overlapping = comms.map((c) => Float64Array.of(c.rank + 20, 0, 0, 0));
    await Promise.all(comms.map((c, r) => c.allgatherv(overlapping[r].subarray(0, 1), [1, 1, 1, 1], overlapping[r])));
    for (const got of overlapping) expect(Array.from(got)).toEqual([20, 21, 22, 23]);
    expect(comms.map(collectiveFramesSent)).toEqual(before);
    // After a kept call, a send that is no typed array is refused everywhere, not left waiting.
    expect(await outcomes(comms.map((c) => c.allgatherv((c.rank === 1 ? undefined : new Float32Array(1)) as Float32Array, [1, 1, 1, 1], undefined, { timeout: 5_000 })))).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
  });

  it('gatherv with a send that is no typed array on one rank: INVALID_ARGUMENT everywhere, not a hang', async () => {
    const { comms } = await job(3);
    expect(await outcomes(comms.map((c) => c.gatherv((c.rank === 2 ? [1] : Float64Array.of(1)) as Float64Array, [1, 1, 1], 0, undefined, { timeout: 5_000 })))).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
  });

  it('values too long for a cell: their length goes through it and their bytes follow by messages, to everyone or to the root', async () => {
    const { comms } = await job(4);
    // 64-byte cells carry 60 bytes after the length: ranks 1 and 3 send more.
    const text = (r: number) => `${r}`.padEnd(r % 2 === 1 ? 100 + r : 10, '#');
    expect(await Promise.all(comms.map((c) => c.allgather(text(c.rank))))).toEqual(comms.map(() => [0, 1, 2, 3].map(text)));
    for (let root = 0; root < 4; root++) {
      const gathered = await Promise.all(comms.map((c) => c.gather(text(c.rank), root)));
      for (const [r, g] of gathered.entries()) expect(g).toEqual(r === root ? [0, 1, 2, 3].map(text) : undefined);
    }
    // A rank late to the call: the others wait in the pass, then the long bytes move.
    const early = comms.slice(0, 3).map((c) => c.allgather(text(c.rank)));
    await sleep(20);
    const late = comms[3].allgather(text(3));
    for (const got of await Promise.all([...early, late])) expect(got).toEqual([0, 1, 2, 3].map(text));
    // A gather's root late: the long values' messages wait for it.
    const sent = comms.slice(1).map((c) => c.gather(text(c.rank), 0));
    await sleep(20);
    expect(await comms[0].gather(text(0), 0)).toEqual([0, 1, 2, 3].map(text));
    expect(await Promise.all(sent)).toEqual([undefined, undefined, undefined]);
  });

  it('a rank whose VMCOMM_COLL_ALLGATHER makes it use messages: INVALID_ARGUMENT everywhere, not a hang; a named shared-memory allgather needs cells that fit', async () => {
    const boots = createLocalJob(2);
    const factory = memory({ cellBytes: 64 });
    const comms = track(await Promise.all(boots.map((b, r) => initWithBootstrap(b, { backends: [factory], only: ['memory'], env: r === 1 ? { VMCOMM_COLL_ALLGATHER: 'ring' } : {} }))));
    expect(await outcomes(comms.map((c) => c.allgather(c.rank, { timeout: 5_000 })))).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
    const again = (await job(2)).comms;
    expect(await outcomes(again.map((c) => c.allgatherv(new Float64Array(9), [9, 9], undefined, { algorithm: 'shared-memory' })))).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
    const plain = (await job(2, 0)).comms;
    expect(await outcomes(plain.map((c) => c.allgather(c.rank, { algorithm: 'shared-memory' })))).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
    // A message algorithm named on every rank: messages, the same values.
    const named = (await job(2)).comms;
    expect(await Promise.all(named.map((c) => c.allgather(`r${c.rank}`, { algorithm: 'bruck' })))).toEqual([['r0', 'r1'], ['r0', 'r1']]);
  });

  it('scatter, scatterv and alltoall: each rank’s part from the root’s cell or every cell, without messages when it fits; a scatter too large goes by messages', async () => {
    const { comms } = await job(4);
    await Promise.all(comms.map((c) => c.barrier()));
    const before = comms.map(collectiveFramesSent);
    const small = (r: number) => [r + 0.5, `v${r}`, -0, { r }][r];
    for (let root = 0; root < 4; root++) {
      const got = await Promise.all(comms.map((c) => c.scatter(c.rank === root ? [0, 1, 2, 3].map(small) : undefined, root)));
      expect(got).toEqual([0, 1, 2, 3].map(small));
      expect(Object.is(got[2], -0)).toBe(true);
      // 64-byte cells: 2 + 0 + 3 + 1 doubles = 48 bytes.
      const counts = [2, 0, 3, 1];
      const send = Float64Array.from({ length: 6 }, (_, i) => 10 * root + i);
      const recvs = counts.map((n) => new Float64Array(n));
      await Promise.all(comms.map((c, r) => c.scatterv(c.rank === root ? send : undefined, counts, recvs[r], root)));
      expect(recvs.map((x) => Array.from(x))).toEqual([[0, 1], [], [2, 3, 4], [5]].map((xs) => xs.map((i) => 10 * root + i)));
    }
    // 4 ranks × 2 int32 = 32 bytes a rank: every member's whole array fits its cell.
    const swapped = await Promise.all(comms.map((c) => c.alltoall(Int32Array.from({ length: 8 }, (_, i) => 100 * c.rank + i))));
    for (const [r, a] of swapped.entries()) expect(Array.from(a)).toEqual([0, 1, 2, 3].flatMap((m) => [100 * m + 2 * r, 100 * m + 2 * r + 1]));
    expect(comms.map(collectiveFramesSent)).toEqual(before);
    // Four 30-character strings do not fit 60 bytes together: the root's cell says so, messages follow.
    const long = (r: number) => `${r}`.padEnd(30, '=');
    expect(await Promise.all(comms.map((c) => c.scatter(c.rank === 1 ? [0, 1, 2, 3].map(long) : undefined, 1)))).toEqual([0, 1, 2, 3].map(long));
    expect(collectiveFramesSent(comms[1])).toBeGreaterThan(before[1]);
    // The root gets its own value as it was when it called, as the others get theirs.
    const barrier = comms[0].barrier();
    const values = ['a', 'b', 'c', 'd'];
    const rootGot = comms[0].scatter(values, 0);
    values.fill('changed');
    await Promise.all(comms.slice(1).map((c) => c.barrier()));
    await barrier;
    expect(await Promise.all([rootGot, ...comms.slice(1).map((c) => c.scatter(undefined, 0))])).toEqual(['a', 'b', 'c', 'd']);
    // Arrays too large for a cell take messages, as a named message algorithm does.
    const big = await Promise.all(comms.map((c) => c.alltoall(Float64Array.from({ length: 12 }, (_, i) => c.rank * 12 + i))));
    for (const [r, a] of big.entries()) expect(Array.from(a)).toEqual([0, 1, 2, 3].flatMap((m) => [0, 1, 2].map((k) => m * 12 + 3 * r + k)));
  });

  it('a rank whose VMCOMM_COLL_ALLTOALL makes it use messages: INVALID_ARGUMENT everywhere, not a hang', async () => {
    const boots = createLocalJob(2);
    const factory = memory({ cellBytes: 64 });
    const comms = track(await Promise.all(boots.map((b, r) => initWithBootstrap(b, { backends: [factory], only: ['memory'], env: r === 0 ? { VMCOMM_COLL_ALLTOALL: 'pairwise' } : {} }))));
    expect(await outcomes(comms.map((c) => c.alltoall(Int32Array.of(1, 2), { timeout: 5_000 })))).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
  });

  it('scan and exscan of numbers and typed arrays, with predefined and function ops: each rank folds the ranks up to it in rank order, without messages', async () => {
    const { comms } = await job(4);
    await Promise.all(comms.map((c) => c.barrier()));
    const before = comms.map(collectiveFramesSent);
    const terms = [1e16, 1, -1e16, 1];
    // Left to right in rank order: 1e16, 1e16 (+1 is lost), 0, 1.
    const prefix = [1e16, 1e16, 0, 1];
    expect(await Promise.all(comms.map((c) => c.scan(terms[c.rank], Op.SUM)))).toEqual(prefix);
    expect(await Promise.all(comms.map((c) => c.exscan(terms[c.rank], Op.SUM)))).toEqual([undefined, ...prefix.slice(0, 3)]);
    const arrays = await Promise.all(comms.map((c) => c.scan(Float64Array.of(terms[c.rank], c.rank), Op.SUM)));
    expect(arrays.map((a) => Array.from(a))).toEqual(prefix.map((p, r) => [p, (r * (r + 1)) / 2]));
    const ands = await Promise.all(comms.map((c) => c.exscan(Int8Array.of(-1 ^ (1 << c.rank)), Op.BAND)));
    expect(ands.map((a) => (a === undefined ? undefined : a[0]))).toEqual([undefined, -2, -4, -8]);
    const exArrays = await Promise.all(comms.map((c) => c.exscan(Float64Array.of(terms[c.rank], c.rank), Op.SUM)));
    expect(exArrays.map((a) => (a === undefined ? undefined : Array.from(a)))).toEqual([undefined, [1e16, 0], [1e16, 1], [0, 3]]);
    const affine = defineOp((a: Float64Array, b: Float64Array) => a.map((x, i) => 2 * x + b[i]));
    const folded = await Promise.all(comms.map((c) => c.scan(Float64Array.of(c.rank + 1), affine)));
    // 1; 2·1 + 2 = 4; 2·4 + 3 = 11; 2·11 + 4 = 26
    expect(folded.map((f) => f[0])).toEqual([1, 4, 11, 26]);
    const exFolded = await Promise.all(comms.map((c) => c.exscan(Float64Array.of(c.rank + 1), affine)));
    expect(exFolded.map((f) => (f === undefined ? undefined : f[0]))).toEqual([undefined, 1, 4, 11]);
    expect(comms.map(collectiveFramesSent)).toEqual(before);
  });

  it('a reduce root whose VMCOMM_COLL_REDUCE makes it wait for messages: INVALID_ARGUMENT everywhere, not a hang', async () => {
    const boots = createLocalJob(3);
    const factory = memory({ cellBytes: 64 });
    const comms = track(await Promise.all(boots.map((b, r) => initWithBootstrap(b, { backends: [factory], only: ['memory'], env: r === 0 ? { VMCOMM_COLL_REDUCE: 'binomial' } : {} }))));
    expect(await outcomes(comms.map((c) => c.reduce(c.rank, Op.SUM, 0, { timeout: 5_000 })))).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
  });

  it('a function op that does not commute is applied in rank order', async () => {
    const { comms } = await job(4);
    const affine = defineOp((a: Float64Array, b: Float64Array) => a.map((x, i) => 2 * x + b[i]));
    const got = await Promise.all(comms.map((c) => c.allreduce(Float64Array.of(c.rank + 1, 10 * c.rank), affine)));
    // 2·(2·(2·x0 + x1) + x2) + x3
    const want = [[1, 0], [2, 10], [3, 20], [4, 30]].reduce((a, b) => a.map((x, i) => 2 * x + b[i]));
    for (const g of got) expect(Array.from(g)).toEqual(want);
  });

  it('barrier: nobody leaves before the last rank arrived (a late rank is waited for asleep, then wakes the others)', async () => {
    const { comms } = await job(3);
    let lateArrived = false;
    const early = comms.slice(0, 2).map((c) => c.barrier().then(() => lateArrived));
    await sleep(30);
    lateArrived = true;
    await comms[2].barrier();
    expect(await Promise.all(early)).toEqual([true, true]);
  });

  it('calls started together on one communicator run in order, and beside another communicator’s', async () => {
    const { comms } = await job(3);
    const twins = await Promise.all(comms.map((c) => c.dup()));
    const got = await Promise.all(
      comms.map((c, r) => Promise.all([...Array.from({ length: 20 }, (_, i) => c.allreduce(i * 10 + r, Op.SUM)), twins[r].allreduce(r, Op.MAX), c.barrier(), twins[r].allreduce(Int8Array.of(1), Op.SUM)])),
    );
    for (const g of got) {
      expect(g.slice(0, 20)).toEqual(Array.from({ length: 20 }, (_, i) => 30 * i + 3));
      expect(g[20]).toBe(2);
      expect(Array.from(g[22] as Int8Array)).toEqual([3]);
    }
  });

  it('a late rank: the others sleep in the wait loop and complete when it publishes', async () => {
    const { comms } = await job(4);
    const early = comms.slice(1).map((c) => c.allreduce(c.rank, Op.SUM));
    await sleep(40);
    const last = comms[0].allreduce(0, Op.SUM);
    expect(await Promise.all([last, ...early])).toEqual([6, 6, 6, 6]);
  });

  it('ranks that pass different counts: INVALID_ARGUMENT on every rank, then REVOKED', async () => {
    const { comms } = await job(3);
    const got = await outcomes(comms.map((c) => c.allreduce(new Float64Array(c.rank === 1 ? 2 : 1), Op.SUM)));
    expect(got).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
    expect(await outcomes(comms.map((c) => c.barrier()))).toEqual(['REVOKED', 'REVOKED', 'REVOKED']);
  });

  for (const kind of ['a number', 'a typed array'] as const) {
    it(`reduce of ${kind}: ranks that agreed on the root, then one names another: INVALID_ARGUMENT on every rank`, async () => {
      const { comms } = await job(3);
      const value = (c: Communicator) => (kind === 'a number' ? c.rank : Float64Array.of(c.rank));
      // Calls alike before: each rank keeps the decisions (and hash) of its last reduce.
      for (let i = 0; i < 2; i++) await Promise.all(comms.map((c) => c.reduce(value(c), Op.SUM, 0)));
      const got = await outcomes(comms.map((c) => c.reduce(value(c), Op.SUM, c.rank === 2 ? 1 : 0, { timeout: 5_000 })));
      expect(got).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
    });
  }

  it('a rank in another collective that only receives (its presence word tells): INVALID_ARGUMENT, not a hang', async () => {
    const { comms } = await job(2);
    const got = await outcomes([comms[0].allreduce(1, Op.SUM), comms[1].bcast(undefined, 0, { algorithm: 'binomial' })]);
    expect(got).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
  });

  it('ranks that name different algorithms: INVALID_ARGUMENT, not a hang', async () => {
    const { comms } = await job(2);
    const got = await outcomes([comms[0].barrier({ algorithm: 'shared-memory' }), comms[1].barrier({ algorithm: 'dissemination' })]);
    expect(got).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
  });

  it('a member lost while the others wait: REVOKED on every survivor', async () => {
    const { comms, boots } = await job(4);
    const calls = comms.slice(0, 3).map((c) => c.allreduce(c.rank, Op.SUM));
    await sleep(10);
    reportLocalPeerLost(boots, 3, 'killed by SIGKILL');
    expect(await outcomes(calls)).toEqual(['REVOKED', 'REVOKED', 'REVOKED']);
  });

  it('a rank that never calls: TIMEOUT where it expired, the communicator revoked for all', async () => {
    const { comms } = await job(3);
    const waiting = await outcomes([comms[0].allreduce(1, Op.SUM, { timeout: 50 }), comms[1].allreduce(1, Op.SUM, { timeout: 2_000 })]);
    expect(waiting[0]).toBe('TIMEOUT');
    expect(['TIMEOUT', 'REVOKED']).toContain(waiting[1]);
    await expect(comms[2].allreduce(1, Op.SUM)).rejects.toMatchObject({ code: 'REVOKED' });
  });

  it('revoke() while the others wait: REVOKED everywhere; calls queued behind the wait fail too', async () => {
    const { comms } = await job(3);
    const waiting = comms.slice(0, 2).map((c) => Promise.allSettled([c.allreduce(1, Op.SUM), c.allreduce(2, Op.SUM)]));
    await sleep(10);
    comms[2].revoke('stop');
    for (const w of await Promise.all(waiting)) expect(w.map((s) => s.status === 'rejected' && (s.reason as { code: string }).code)).toEqual(['REVOKED', 'REVOKED']);
  });

  it('a communicator freed while its shared call waits: the call still fails when a member is lost, and when the world ends', async () => {
    const { comms, boots } = await job(3);
    const dups = await Promise.all(comms.map((c) => c.dup()));
    // Rank 0 waits in a shared allreduce nobody else joins, then frees the communicator (the call is
    // started, so it is not cancelled); the loss of rank 2 must still reach it.
    const waiting = dups[0].allreduce(1, Op.SUM);
    await dups[0].free();
    await sleep(10);
    reportLocalPeerLost(boots, 2, 'test');
    await expect(waiting).rejects.toMatchObject({ code: 'REVOKED' });
    // The same with the world ending instead: a freed communicator's waiting call fails at finalize.
    const two = (await job(2)).comms;
    const pairs = await Promise.all(two.map((c) => c.dup()));
    const late = pairs[0].allreduce(1, Op.SUM);
    await pairs[0].free();
    await Promise.all(two.map((c) => c.finalize()));
    expect(await outcomes([late])).toEqual(['FINALIZED']);
  });

  it('the algorithm is chosen from the table: too large for a cell, or named where there are no cells', async () => {
    const { comms } = await job(2, 16);
    const before = comms.map(collectiveFramesSent);
    // 3 doubles do not fit 16 bytes: recursive doubling (messages).
    const got = await Promise.all(comms.map((c) => c.allreduce(Float64Array.of(1, 2, 3), Op.SUM)));
    for (const g of got) expect(Array.from(g)).toEqual([2, 4, 6]);
    expect(comms.every((c, r) => collectiveFramesSent(c) > before[r])).toBe(true);
    const refused = await outcomes(comms.map((c) => c.allreduce(Float64Array.of(1, 2, 3), Op.SUM, { algorithm: 'shared-memory' })));
    expect(refused).toEqual(['INVALID_ARGUMENT', 'INVALID_ARGUMENT']);
    await Promise.all(comms.map((c) => c.finalize()));
    const plain = (await job(2, 0)).comms;
    await expect(Promise.all(plain.map((c) => c.barrier({ algorithm: 'shared-memory' })))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('shared-memory') });
  });

  it('a communicator of some ranks uses cells of its own; one whose pairs use different transports has none', async () => {
    const { comms } = await job(4);
    const halves = await Promise.all(comms.map((c) => c.split(c.rank % 2, c.rank)));
    const got = await Promise.all(halves.map((h, r) => h!.allreduce(r, Op.SUM)));
    expect(got).toEqual([2, 4, 2, 4]);
    const boots = createLocalJob(3);
    // Rank 2 reaches the others only through a second transport: no cells for the world.
    const a = memory({ cellBytes: 64, reaches: (s, p) => s !== 2 && p !== 2 });
    const b = memory({ name: 'other', priority: 10 });
    const mixed = track(await Promise.all(boots.map((bt) => initWithBootstrap(bt, { backends: [a, b], only: ['memory', 'other'] }))));
    expect(await Promise.all(mixed.map((c) => c.allreduce(1, Op.SUM)))).toEqual([3, 3, 3]);
    expect(a.instances.every((t) => t.cellsGiven === 0)).toBe(true);
  });
});
