// The ivshmem transport by hand (no core): cards, probes in both directions, ring reservation and
// the fall-back when a region is full, frames both ways, finalize, dead and departed peers,
// corruption, revocation, and start() without a usable region.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { hostname } from 'node:os';
import { writeFileSync } from 'node:fs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { BackendComponents, LocalityCard } from '../../../lib/backend.js';
import { emptyHeader, encodeHeader, FRAME_HEADER_BYTES } from '../../../lib/protocol.js';
import { describeRegionFile, formatRegionFile, openRegionFile, setRegionFileRevoked } from '../admin.js';
import { heartbeatMembers, heartbeatStats } from '../heartbeat.js';
import { jobKey, nonceKey } from '../ids.js';
import { ivshmem, type IvshmemTransport } from '../index.js';
import { IvshmemRegion, type RegionMember } from '../region.js';
import { addon, handJob, recordingSink, regionFile, removeRegionFiles, select, until, type HandJob } from './pair.js';
import { pattern, same } from '../../../tests/helpers/bytes.js';
import { ensureIvshmemDist, ROOT } from './dist.js';

// Short enough for tests, long enough that a loaded host (2 cores, many processes) does not starve a
// heartbeat thread for that long.
const FAST = { heartbeatMs: 25, peerTimeoutMs: 1500 } as const;

function frame(payload: Uint8Array): Uint8Array {
  return encodeHeader({ ...emptyHeader(), payloadBytes: payload.byteLength, messageBytes: payload.byteLength }, new Uint8Array(FRAME_HEADER_BYTES));
}

const jobs: HandJob[] = [];
afterEach(async () => {
  await Promise.all(jobs.splice(0).flatMap((j) => j.transports.map((t) => t.stop())));
});
afterAll(removeRegionFiles);

describe.skipIf(addon === undefined)('ivshmem transport', () => {
  it('publishes UUID, slot and generation per region; proves both directions; moves frames both ways; finalize frees everything', async () => {
    const file = regionFile();
    const job = await handJob(2, () => ({ regions: [file] }));
    jobs.push(job);
    const uuid = IvshmemRegion.open(openRegionFile(file).region).uuid;
    for (const f of job.fields) {
      expect(f).toEqual({ regions: [{ uuid, slot: expect.any(Number), generation: expect.any(Number) }] });
    }
    expect(await select(job)).toEqual(new Set(['0-1']));
    const [a, b] = job.transports;
    // Each side reserved its own outbound ring in probe(): two live rings.
    expect(describeRegionFile(file).rings.map((r) => r.state)).toEqual(['live', 'live']);
    const big = pattern(200_000, 7); // streams through the 64 KiB ring
    const ab = await a.connect(1);
    const ba = await b.connect(0);
    let done = 0;
    ab.send(frame(big), big, () => done++);
    ba.send(frame(new Uint8Array([1, 2, 3])), new Uint8Array([1, 2, 3]), () => done++);
    await until(() => job.sinks[1].frames.length === 1 && job.sinks[0].frames.length === 1 && done === 2);
    expect(same(job.sinks[1].frames[0].data, big)).toBe(true);
    expect([...job.sinks[0].frames[0].data]).toEqual([1, 2, 3]);
    await Promise.all([ab.close(), ba.close()]);
    await a.stop();
    // b still holds a's ring (left for b to drain) until b stops.
    expect(describeRegionFile(file).members).toHaveLength(1);
    await b.stop();
    const d = describeRegionFile(file);
    expect(d.members).toEqual([]);
    expect(d.rings).toEqual([]);
    expect(job.sinks.flatMap((s) => s.losses)).toEqual([]);
    expect(heartbeatMembers()).toBe(0);
  });

  it('a reader that gives the ring up while both run: its sender, which sends nothing more, learns it from its sweep', async () => {
    const file = regionFile();
    const job = await handJob(2, () => ({ regions: [file] }));
    jobs.push(job);
    expect(await select(job)).toEqual(new Set(['0-1']));
    const [a, b] = job.transports;
    const ab = await a.connect(1);
    ab.send(frame(new Uint8Array([1, 2, 3])), new Uint8Array([1, 2, 3]));
    await until(() => job.sinks[1].frames.length === 1);
    b.abandonFrame(0, new Error('given up in a test'));
    await until(() => job.sinks[0].losses.length > 0, 5_000, 'the sender to report its reader lost');
    expect(job.sinks[0].losses).toEqual([{ peer: 1, error: expect.objectContaining({ code: 'PEER_LOST', message: expect.stringContaining("stopped reading this rank's ring") }) }]);
  });

  it('refuses a card whose slot does not hold that peer, another job, another region, garbage, and itself', async () => {
    const file = regionFile();
    const other = regionFile();
    const job = await handJob(3, (rank) => ({ regions: [rank === 2 ? other : file] }));
    jobs.push(job);
    const a = job.transports[0];
    const card1 = job.card(1);
    const fields1 = card1.backends.ivshmem as { regions: { uuid: string; slot: number; generation: number }[] };
    const r = fields1.regions[0];
    const forged = (regions: unknown): LocalityCard => ({ ...card1, backends: { ivshmem: { regions } as never } });
    expect(a.probe(job.card(0))).toBe(false); // itself
    expect(a.probe(job.card(2))).toBe(false); // no region in common
    expect(a.probe(forged([{ ...r, slot: (r.slot + 1) % 64 }]))).toBe(false); // a slot that is not rank 1's
    expect(a.probe(forged([{ ...r, generation: r.generation + 1 }]))).toBe(false);
    expect(a.probe({ ...card1, rank: 2 })).toBe(false); // rank 1's slot claimed by "rank 2"
    expect(a.probe({ ...card1, processNonce: randomBytes(16).toString('hex') })).toBe(false); // another process
    for (const junk of [null, 'x', [{ uuid: 'nope', slot: 0, generation: 0 }], [{ ...r, slot: -1 }], [{ ...r, slot: 1e9 }], new Array(100).fill(r)]) expect(a.probe(forged(junk))).toBe(false);
    // The same peer from another job's transport: its slot holds another job id.
    const stranger = await handJob(2, () => ({ regions: [file] }));
    jobs.push(stranger);
    expect(a.probe({ ...stranger.card(1), rank: 1 })).toBe(false);
    expect(a.probe(card1)).toBe(true);
    expect(a.reserved).toEqual(new Map([[1, 0]]));
    expect(describeRegionFile(file).rings).toHaveLength(1); // nothing reserved by the refused probes
  });

  it('a region too full for every pair: a side that cannot reserve says no, those pairs fall back on both ends, the others work', async () => {
    // 4 ranks want 12 rings; the region has 5 blocks.
    const file = regionFile(1 << 20, { maxBlocks: 5 });
    const job = await handJob(4, () => ({ regions: [file] }));
    jobs.push(job);
    const chosen = await select(job);
    expect(chosen.size).toBeGreaterThan(0);
    expect(chosen.size).toBeLessThan(6);
    // Exactly the chosen pairs' rings stay reserved: two per pair, the rest released by addPeers.
    expect(describeRegionFile(file).rings).toHaveLength(2 * chosen.size);
    for (let a = 0; a < 4; a++) {
      for (let b = 0; b < 4; b++) {
        if (a === b) continue;
        const pair = `${Math.min(a, b)}-${Math.max(a, b)}`;
        expect(job.transports[a].reserved.has(b)).toBe(chosen.has(pair));
      }
    }
    // Every chosen pair moves frames both ways.
    for (const pair of chosen) {
      const [x, y] = pair.split('-').map(Number);
      (await job.transports[x].connect(y)).send(frame(new Uint8Array([x])), new Uint8Array([x]));
      (await job.transports[y].connect(x)).send(frame(new Uint8Array([y])), new Uint8Array([y]));
    }
    await until(() => job.sinks.reduce((n, s) => n + s.frames.length, 0) === 2 * chosen.size);
    await Promise.all(job.transports.map((t) => t.stop()));
    expect(describeRegionFile(file).rings).toEqual([]);
  });

  it('a transport chosen for no pair leaves its regions at addPeers([])', async () => {
    const file = regionFile();
    const job = await handJob(2, () => ({ regions: [file] }));
    jobs.push(job);
    expect(job.transports[0].probe(job.card(1))).toBe(true);
    expect(job.transports[1].probe(job.card(0))).toBe(true);
    // Both reserved, then the pair went to a transport of higher priority.
    job.transports[0].addPeers([]);
    expect(describeRegionFile(file).members).toHaveLength(1); // rank 1 only
    expect(job.transports[0].regions[0].joined).toBe(false);
    // Rank 0's ring waits for rank 1 to let go of its side (it reads what is left), which it does at
    // its own addPeers, together with its own reservation.
    job.transports[1].addPeers([]);
    const d = describeRegionFile(file);
    expect(d.rings).toEqual([]);
    expect(d.members).toEqual([]);
  });

  it('two regions: a pair uses the first both list in UUID order (the same at both ends), whatever order each rank attached them in', async () => {
    const files = [regionFile(), regionFile()];
    const uuids = files.map((f) => IvshmemRegion.open(openRegionFile(f).region).uuid);
    const [first, second] = uuids[0] < uuids[1] ? [files[0], files[1]] : [files[1], files[0]];
    const job = await handJob(3, (rank) => ({ regions: rank === 0 ? [second, first] : rank === 1 ? [first, second] : [second] }));
    jobs.push(job);
    expect(await select(job)).toEqual(new Set(['0-1', '0-2', '1-2']));
    expect(job.transports[0].reserved).toEqual(new Map([[1, 1], [2, 0]])); // region indices in rank 0's order
    expect(job.transports[1].reserved).toEqual(new Map([[0, 0], [2, 1]]));
    expect(describeRegionFile(first).rings).toHaveLength(2);
    expect(describeRegionFile(second).rings).toHaveLength(4);
    for (const [from, to] of [[0, 2], [2, 1], [1, 0]]) (await job.transports[from].connect(to)).send(frame(new Uint8Array([from])), new Uint8Array([from]));
    await until(() => job.sinks.every((s) => s.frames.length === 1));
    expect(job.sinks.map((s) => s.frames[0].peer)).toEqual([1, 2, 0]);
  });

  it('heartbeats come from another thread: they keep moving while the main thread is blocked, so a stalled main thread does not look dead', async () => {
    const file = regionFile();
    const job = await handJob(2, () => ({ regions: [file], ...FAST }));
    jobs.push(job);
    await select(job);
    const region = IvshmemRegion.open(openRegionFile(file).region);
    const slot = job.transports[1].regions[0].slot;
    await until(() => heartbeatStats().ready > 0, 10_000, () => `the heartbeat thread (${JSON.stringify(heartbeatStats())})`);
    const before = region.members.heartbeat(slot);
    const end = Date.now() + 1.5 * FAST.peerTimeoutMs;
    while (Date.now() < end); // a long computation (or a GC pause) on the main thread, past the timeout
    const after = region.members.heartbeat(slot);
    expect(after - before).toBeGreaterThanOrEqual(3); // ~60 at 25 ms; a loaded host gives threads less
    await new Promise((r) => setTimeout(r, FAST.peerTimeoutMs / 2));
    expect(job.sinks.flatMap((s) => s.losses)).toEqual([]);
  });

  describe('a peer that is gone', () => {
    /** Rank 0 as a transport; rank 1 a bare region member the test controls (it never heartbeats). */
    async function withPuppet(file: string): Promise<{ t: IvshmemTransport; sink: ReturnType<typeof recordingSink>; puppet: RegionMember; region: IvshmemRegion }> {
      const jobId = `puppet-${randomBytes(4).toString('hex')}`;
      const nonces = [randomBytes(16).toString('hex'), randomBytes(16).toString('hex')];
      const sink = recordingSink();
      const components: BackendComponents = { rank: 0, size: 2, jobId, jobSecret: new Uint8Array(32), processNonce: nonces[0], address: '127.0.0.1', sink };
      const t = ivshmem({ regions: [file], ...FAST })(components) as IvshmemTransport;
      const fields = (await t.start()) as { regions: { uuid: string; slot: number; generation: number }[] };
      const region = IvshmemRegion.open(openRegionFile(file).region);
      const puppet = region.join({ job: jobKey(jobId), nonce: nonceKey(nonces[1]), rank: 1 })!;
      const card: LocalityCard = {
        rank: 1,
        processNonce: nonces[1],
        hostname: hostname(),
        pid: process.pid,
        address: '127.0.0.1',
        backends: { ivshmem: { regions: [{ uuid: region.uuid, slot: puppet.ref.slot, generation: puppet.ref.generation }] } },
        priorities: { ivshmem: 40 },
      };
      expect(t.probe(card)).toBe(true);
      expect(puppet.openRingTo(fields.regions[0])).toBeDefined();
      t.addPeers([1]);
      jobs.push({ transports: [t], sinks: [sink], fields: [fields], card: () => card });
      return { t, sink, puppet, region };
    }

    it('a heartbeat that stops: PEER_LOST within the timeout, its slot reclaimed, the rings freed', async () => {
      const file = regionFile();
      const { sink, region, puppet } = await withPuppet(file);
      const started = performance.now();
      await until(() => sink.losses.length > 0, 10_000, 'the loss');
      const waited = performance.now() - started;
      expect(waited).toBeGreaterThanOrEqual(FAST.peerTimeoutMs * 0.9);
      expect(sink.losses[0].peer).toBe(1);
      expect(sink.losses[0].error).toMatchObject({ code: 'PEER_LOST', message: expect.stringMatching(/heartbeat .* has not moved/) });
      expect(region.members.holds(puppet.ref)).toBe(false);
      expect(describeRegionFile(file).rings).toEqual([]);
    });

    it('a loop of poll() that never yields (no timer runs there) finds a heartbeat that stopped too', async () => {
      const { sink, t } = await withPuppet(regionFile());
      const deadline = performance.now() + 10_000;
      while (sink.losses.length === 0 && performance.now() < deadline) t.poll();
      expect(sink.losses[0]).toMatchObject({ peer: 1, error: { code: 'PEER_LOST', message: expect.stringMatching(/heartbeat .* has not moved/) } });
    });

    it('a peer whose slot is freed while its ring is live ended without finalizing: PEER_LOST at once', async () => {
      const file = regionFile();
      const { sink, region, puppet } = await withPuppet(file);
      region.members.reclaim(puppet.ref.slot, Atomics.load(region.header.meta, (region.layout.slotTableOffset + puppet.ref.slot * 512) >> 2));
      await until(() => sink.losses.length > 0, 2_000, 'the loss');
      expect(sink.losses[0].error).toMatchObject({ code: 'PEER_LOST', message: expect.stringMatching(/without finalizing/) });
    });

    it('a peer that finalized is not reported', async () => {
      const file = regionFile();
      const { sink, puppet } = await withPuppet(file);
      puppet.finalize();
      await new Promise((r) => setTimeout(r, 1.5 * FAST.peerTimeoutMs));
      expect(sink.losses).toEqual([]);
    });

    it('garbage in the ring from a peer: CORRUPT on that channel, nothing thrown', async () => {
      const file = regionFile();
      const { sink, region, puppet, t } = await withPuppet(file);
      const ring = region.rings.find(puppet.ref, region.members.list().find((s) => s.member?.rank === 0)!.member!)!;
      // Head claims more than the ring holds.
      Atomics.store(new Int32Array(ring.region.sab, ring.region.byteOffset, 128), 32, 1 << 30);
      t.poll();
      await until(() => sink.losses.length > 0, 2_000, 'the loss');
      expect(sink.losses[0]).toMatchObject({ peer: 1, error: { code: 'CORRUPT' } });
      expect(t.poll()).toBe(0);
    });
  });

  it('a revoked region: its members leave it and their pairs are reported lost; restored, ranks join again', async () => {
    const file = regionFile();
    const job = await handJob(2, () => ({ regions: [file], ...FAST }));
    jobs.push(job);
    await select(job);
    setRegionFileRevoked(file, true);
    await until(() => job.sinks.every((s) => s.losses.length > 0), 3_000, 'both losses');
    for (const s of job.sinks) expect(s.losses[0].error).toMatchObject({ code: 'PEER_LOST', message: expect.stringMatching(/revoked/) });
    await until(() => describeRegionFile(file).members.length === 0, 3_000, 'members to leave');
    expect(describeRegionFile(file).rings).toEqual([]);
    const refused = await handJob(2, () => ({ regions: [file] }));
    expect(refused.fields).toEqual([undefined, undefined]);
    expect(refused.transports[0].unavailableReason).toMatch(/revoked/);
    setRegionFileRevoked(file, false);
    const again = await handJob(2, () => ({ regions: [file] }));
    jobs.push(again);
    expect(await select(again)).toEqual(new Set(['0-1']));
  });

  it('a process that exits without finalizing frees its slot from its exit hook: its peers report it at once', async () => {
    const file = regionFile();
    const job = await handJob(2, () => ({ regions: [file], ...FAST }));
    jobs.push(job);
    await select(job);
    job.transports[1].gone(); // what the exit hook does
    await until(() => job.sinks[0].losses.length > 0, 2_000, 'the loss');
    expect(job.sinks[0].losses[0]).toMatchObject({ peer: 1, error: { code: 'PEER_LOST', message: expect.stringMatching(/without finalizing/) } });
    expect(describeRegionFile(file).members).toHaveLength(1);
  });

  it("this rank's own slot reclaimed by another member: its heartbeat thread notices, and its pairs are lost without a write to the rings", async () => {
    const file = regionFile();
    const job = await handJob(2, () => ({ regions: [file], ...FAST }));
    jobs.push(job);
    await select(job);
    const region = IvshmemRegion.open(openRegionFile(file).region);
    const { slot } = job.transports[0].regions[0];
    region.members.reclaim(slot, region.members.read(slot).control | 0);
    await until(() => job.sinks[0].losses.length > 0 && job.sinks[1].losses.length > 0, 3_000, 'both losses');
    expect(job.sinks[0].losses[0]).toMatchObject({ peer: 1, error: { code: 'PEER_LOST', message: expect.stringMatching(/membership .* was reclaimed/) } });
    expect(job.sinks[1].losses[0]).toMatchObject({ peer: 0, error: { code: 'PEER_LOST' } });
    expect(job.transports[0].regions[0].joined).toBe(false);
  });

  it('a region re-formatted under its members: CORRUPT for their pairs', async () => {
    const file = regionFile();
    const job = await handJob(2, () => ({ regions: [file], ...FAST }));
    jobs.push(job);
    await select(job);
    formatRegionFile(file, 1 << 20, { force: true });
    await until(() => job.sinks.every((s) => s.losses.length > 0), 3_000, 'both losses');
    for (const s of job.sinks) expect(s.losses[0].error).toMatchObject({ code: 'CORRUPT', message: expect.stringMatching(/re-formatted or overwritten/) });
  });

  it('a program that ends without finalize exits by itself (the heartbeat thread holds nothing), and its exit hook frees its slot', async () => {
    ensureIvshmemDist();
    const file = regionFile();
    const child = spawnSync(process.execPath, ['--import', path.join(ROOT, 'dist/lib/launch/ts-register.js'), 'backends/ivshmem/test/fixtures/exits.ts', file], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    expect(child.stderr).toBe('');
    expect(child.signal).toBeNull();
    expect(child.status).toBe(0);
    expect(child.stdout).toMatch(/^slots \d+ \d+\n$/);
    expect(describeRegionFile(file).members).toEqual([]);
  }, 200_000);

  it('start() without a usable region says why', async () => {
    const unformatted = regionFile();
    writeFileSync(unformatted, new Uint8Array(1 << 20));
    const saved = process.env.VMCOMM_IVSHMEM;
    try {
      delete process.env.VMCOMM_IVSHMEM;
      const none = await handJob(2, () => ({}));
      // This machine has no ivshmem device (the PCI scan finds none) unless it is a guest with one.
      if (none.fields[0] === undefined) expect(none.transports[0].unavailableReason).toMatch(/no ivshmem region|no usable ivshmem region/);
      else jobs.push(none);
      process.env.VMCOMM_IVSHMEM = ` ${unformatted} , `;
      const bad = await handJob(2, () => ({}));
      expect(bad.fields[0]).toBeUndefined();
      expect(bad.transports[0].unavailableReason).toMatch(/not formatted/);
      const missing = await handJob(2, () => ({ regions: ['/nonexistent/region'] }));
      expect(missing.transports[0].unavailableReason).toMatch(/\/nonexistent\/region.*ENOENT/);
      const alone = await handJob(1, () => ({ regions: [regionFile()] }));
      expect(alone.transports[0].unavailableReason).toMatch(/world of one/);
    } finally {
      if (saved === undefined) delete process.env.VMCOMM_IVSHMEM;
      else process.env.VMCOMM_IVSHMEM = saved;
    }
  });
});
