// Property-based fuzzing of the shm transport's file headers (backends/shm/layout.ts) and of what a
// rank does with them: random bytes in an inbox file's header or inbox at probe time, in a ring file's
// header or ring at attach time. Expected: the header checks return false or throw
// VmcommError('CORRUPT') — never anything else; probe() answers false (the pair falls back to tcp)
// instead of throwing; a corrupt ring file makes its reader report that peer lost with CORRUPT, the
// process survives, and the files are still cleaned up.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackendComponents, CardFields, FrameSink, LocalityCard } from '../../lib/backend.js';
import { isVmcommError } from '../../lib/errors.js';
import { parseShmFileName, shmRingName } from '../../lib/launch/shm-files.js';
import { inboxBytes } from '../../lib/ring/inbox.js';
import { RING_HEADER_BYTES, ringRegionBytes } from '../../lib/ring/spsc-ring.js';
import { decodeHeader, emptyHeader, encodeHeader, FRAME_HEADER_BYTES, FrameKind } from '../../lib/protocol.js';
import { tryLoadNative } from '../../backends/native/native.js';
import { shm } from '../../backends/shm/index.js';
import { checkInboxHeader, FILE_HEADER_BYTES, inboxFileBytes, NONCE_BYTES, RingFileControl, writeInboxHeader } from '../../backends/shm/layout.js';
import type { ShmTransport } from '../../backends/shm/shm-transport.js';
import { expectCode, guardProcess, runFuzz } from './fuzz.js';

guardProcess('shm-headers');

const addon = tryLoadNative().addon;

/** Bytes to write somewhere: a byte at an offset, or a 32-bit word (sometimes plausible) at a word offset. */
const scribble = (maxByte: number) =>
  fc.oneof(
    fc.record({ byte: fc.nat({ max: maxByte - 1 }), value: fc.nat({ max: 255 }) }),
    fc.record({
      word: fc.nat({ max: (maxByte >> 2) - 1 }),
      value: fc.oneof(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.constantFrom(0, 1, 2, 16, 4096, 0x4953_4d56, 0x5253_4d56, 0x4752_4d56)),
    }),
  );
type Scribble = { byte: number; value: number } | { word: number; value: number };

function apply(sab: SharedArrayBuffer, offset: number, s: Scribble): void {
  if ('byte' in s) new Uint8Array(sab)[offset + s.byte] = s.value;
  else Atomics.store(new Int32Array(sab, offset), s.word, s.value);
}

describe('fuzz: shm headers (pure checks)', () => {
  it('checkInboxHeader: random writes into a valid header give true/false or CORRUPT', async () => {
    const nonce = Uint8Array.from({ length: NONCE_BYTES }, (_, i) => i * 7 + 1);
    await runFuzz(
      'shm: inbox file header',
      fc.property(fc.array(scribble(FILE_HEADER_BYTES), { minLength: 1, maxLength: 6 }), fc.nat({ max: 3 }), (writes, rank) => {
        const sab = new SharedArrayBuffer(FILE_HEADER_BYTES + inboxBytes(4));
        writeInboxHeader(sab, 1, 4, nonce);
        for (const w of writes) apply(sab, 0, w);
        try {
          checkInboxHeader(sab, rank, 4, nonce);
        } catch (e) {
          expectCode(e, 'checkInboxHeader', 'CORRUPT');
        }
      }),
      { numRuns: 6_000, timeLimitMs: 1_000 },
    );
  });

  it('RingFileControl: random writes into a ring file header give CORRUPT at check, and a typed outcome for single copy', async () => {
    await runFuzz(
      'shm: ring file header',
      fc.property(fc.array(scribble(FILE_HEADER_BYTES), { minLength: 1, maxLength: 6 }), fc.integer({ min: -3, max: 1000 }), (writes, token) => {
        const sab = new SharedArrayBuffer(FILE_HEADER_BYTES + ringRegionBytes(4096));
        const control = new RingFileControl(sab);
        control.init(1, 0, 4096);
        const intact = [...new Uint8Array(sab, 0, 20)].join();
        for (const w of writes) apply(sab, 0, w);
        let corrupt = false;
        try {
          control.check(1, 0, 4096);
        } catch (e) {
          expectCode(e, 'RingFileControl.check', 'CORRUPT');
          corrupt = true;
        }
        // The checked words (magic, version, ranks, size) decide: changed → CORRUPT, intact → accepted.
        if (corrupt === ([...new Uint8Array(sab, 0, 20)].join() === intact)) throw new Error(`check ${corrupt ? 'refused intact' : 'accepted changed'} header words`);
        try {
          const outcome = control.singleCopy.outcome(token);
          if (outcome !== 0 && outcome !== 1 && outcome !== 2) throw new Error(`singleCopy.outcome returned ${outcome}`);
        } catch (e) {
          expectCode(e, 'singleCopy.outcome', 'CORRUPT');
        }
      }),
      { numRuns: 6_000, timeLimitMs: 1_000 },
    );
  });
});

describe.skipIf(addon === undefined)('fuzz: shm files (real transports, real files)', () => {
  let directory: string;
  const sink = (): FrameSink & { frames: number[]; losses: Error[] } => {
    const s = {
      frames: [] as number[],
      losses: [] as Error[],
      // As the core does: a header that fails validation is CORRUPT (the transport then drops the ring).
      begin: (_peer: number, h: Uint8Array) => new Uint8Array(Math.min(64, decodeHeader(h, emptyHeader()).payloadBytes)),
      commit: (peer: number) => void s.frames.push(peer),
      lost: (_peer: number, error: Error) => void s.losses.push(error),
    };
    return s;
  };
  const components = (rank: number, jobId: string, s: FrameSink): BackendComponents => ({ rank, size: 2, jobId, jobSecret: new Uint8Array(32), processNonce: 'p', address: '127.0.0.1', sink: s });
  const card = (rank: number, fields: CardFields): LocalityCard => ({ rank, processNonce: 'p', hostname: hostname(), pid: process.pid, address: '127.0.0.1', backends: { shm: fields }, priorities: { shm: 60 } });
  let job = 0;

  beforeAll(() => {
    directory = mkdtempSync('/dev/shm/vmcomm-fuzz-');
  });
  afterAll(() => {
    // Every case's files were removed by the transports' stop(): nothing may be left over.
    const left = readdirSync(directory);
    rmSync(directory, { recursive: true, force: true });
    expect(left).toEqual([]);
  });

  it('probe answers false (never throws) for a peer inbox file whose header or inbox holds garbage', async () => {
    const jobId = `fuzzprobe${job++}`;
    const [a, b] = [0, 1].map((rank) => shm({ directory })(components(rank, jobId, sink())) as ShmTransport);
    const [fa] = (await Promise.all([a.start(), b.start()])) as CardFields[];
    const bytes = inboxFileBytes(fa.slots as number);
    const file = addon!.openSharedFile(path.join(directory, fa.name as string), bytes);
    const pristine = new Uint8Array(bytes);
    pristine.set(new Uint8Array(file));
    let refused = 0;
    try {
      expect(b.probe(card(0, fa))).toBe(true);
      await runFuzz(
        'shm: probe of a scribbled inbox file',
        fc.property(fc.array(fc.oneof(scribble(FILE_HEADER_BYTES), scribble(256).map((s) => ({ ...s, inbox: true }))), { minLength: 1, maxLength: 4 }), (writes) => {
          new Uint8Array(file).set(pristine);
          for (const w of writes) apply(file, 'inbox' in w ? FILE_HEADER_BYTES : 0, w);
          let answer: boolean;
          try {
            answer = b.probe(card(0, fa));
          } catch (e) {
            throw new Error(`probe threw ${(e as Error).name}: ${(e as Error).message}`, { cause: e });
          }
          if (typeof answer !== 'boolean') throw new Error(`probe answered ${String(answer)}`);
          const unchanged = Buffer.compare(new Uint8Array(file), pristine) === 0;
          if (unchanged && !answer) throw new Error('probe refused an intact inbox file');
          if (!answer) refused++;
        }),
        { numRuns: 4_000, timeLimitMs: 1_000 },
      );
      expect(refused).toBeGreaterThan(10);
      new Uint8Array(file).set(pristine);
      expect(b.probe(card(0, fa))).toBe(true);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('a ring file scribbled before its reader attaches: the reader reports that peer lost with CORRUPT (or reads it intact)', async () => {
    // Aim at what attach and the first poll read: the file header, the ring's layout words, head and tail.
    const target = fc.oneof(
      scribble(20).map((s) => ({ at: 0, s })),
      scribble(12).map((s) => ({ at: FILE_HEADER_BYTES, s })),
      fc.record({ word: fc.constantFrom(32, 64), value: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) }).map((s) => ({ at: FILE_HEADER_BYTES, s: s as Scribble })),
      fc.record({ byte: fc.nat({ max: FRAME_HEADER_BYTES - 1 }), value: fc.nat({ max: 255 }) }).map((s) => ({ at: FILE_HEADER_BYTES + RING_HEADER_BYTES, s: s as Scribble })),
    );
    const seen = { corrupt: 0, intact: 0 };
    await runFuzz(
      'shm: attach of a scribbled ring file',
      fc.asyncProperty(fc.array(target, { minLength: 1, maxLength: 3 }), async (writes) => {
        const jobId = `fuzzring${job++}`;
        const sinks = [sink(), sink()];
        const [a, b] = [0, 1].map((rank) => shm({ directory })(components(rank, jobId, sinks[rank])) as ShmTransport);
        try {
          const [fa, fb] = (await Promise.all([a.start(), b.start()])) as CardFields[];
          if (!a.probe(card(1, fb)) || !b.probe(card(0, fa))) throw new Error('probe failed on intact files');
          b.addPeers([0]);
          const channel = await b.connect(0);
          const header = encodeHeader({ ...emptyHeader(), kind: FrameKind.EAGER, payloadBytes: 8, messageBytes: 8 }, new Uint8Array(FRAME_HEADER_BYTES));
          channel.send(header, new Uint8Array(8), undefined);
          const ringPath = path.join(directory, shmRingName(parseShmFileName(fb.name as string)!.base, 0));
          const file = addon!.openSharedFile(ringPath, FILE_HEADER_BYTES + ringRegionBytes(fb.ringBytes as number));
          const before = Uint8Array.from(new Uint8Array(file, 0, FILE_HEADER_BYTES + RING_HEADER_BYTES + FRAME_HEADER_BYTES));
          for (const { at, s } of writes) apply(file, at, s);
          const changed = Buffer.compare(new Uint8Array(file, 0, before.byteLength), before) !== 0;
          a.addPeers([1]);
          for (let i = 0; i < 4; i++) a.poll();
          const [got] = sinks;
          for (const e of got.losses) if (!isVmcommError(e, 'CORRUPT')) throw new Error(`lost with ${e.name}: ${e.message}`, { cause: e });
          if (!changed && (got.losses.length > 0 || got.frames.length !== 1)) throw new Error('an intact ring did not deliver its frame');
          // Garbage that stays plausible (a smaller head: nothing to read yet) is no error either.
          if (got.losses.length > 0) seen.corrupt++;
          if (got.frames.length > 0) seen.intact++;
        } finally {
          await Promise.all([a.stop(), b.stop()]);
        }
      }),
      { numRuns: 300, timeLimitMs: 2_000 },
    );
    expect(seen.corrupt).toBeGreaterThan(3);
    expect(seen.intact).toBeGreaterThan(0);
  });
});

