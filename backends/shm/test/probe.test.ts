// Proof of a shared OS (DESIGN section 4): a peer passes shm's probe only if the inbox file its card
// names, opened in this rank's own shm directory, holds the nonce its card carries. Ranks with
// different shm directories stand in for ranks with different /dev/shm mounts (other VMs, containers).
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CardFields, FrameSink, LocalityCard } from '../../../lib/backend.js';
import { shm } from '../index.js';
import { addon, finalizeAll, shmFiles, startJob } from './helpers.js';

const sink: FrameSink = { begin: () => undefined, commit: () => {}, lost: () => {} };
const components = (rank: number, size = 2) => ({ rank, size, jobId: 'probetest', jobSecret: new Uint8Array(32), processNonce: 'p', address: '127.0.0.1', sink });
const card = (rank: number, fields: CardFields): LocalityCard => ({ rank, processNonce: 'p', hostname: hostname(), pid: process.pid, address: '127.0.0.1', backends: { shm: fields }, priorities: { shm: 60 } });

describe.skipIf(addon === undefined)('shm probe', () => {
  const dirs: string[] = [];
  beforeAll(() => {
    dirs.push(mkdtempSync('/dev/shm/vmcomm-test-a-'), mkdtempSync('/dev/shm/vmcomm-test-b-'));
  });
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('fails for a peer whose token is in another shm directory: the pair uses tcp, both ways', async () => {
    const job = await startJob(2, (rank) => ({ directory: dirs[rank] }), { only: ['shm', 'tcp'] });
    try {
      expect(job.comms[0].transportOf(1)).toBe('tcp');
      expect(job.comms[1].transportOf(0)).toBe('tcp');
      await job.comms[0].send('over tcp', 1, 1);
      expect(await job.comms[1].recv(0, 1)).toBe('over tcp');
      // shm was chosen for no pair: each rank released its inbox (its token) as soon as selection ended.
      expect(shmFiles(dirs[0])).toEqual([]);
      expect(shmFiles(dirs[1])).toEqual([]);
    } finally {
      await finalizeAll(job);
    }
    expect(shmFiles(dirs[0])).toEqual([]);
    expect(shmFiles(dirs[1])).toEqual([]);
  });

  it('succeeds when both see the same directory', async () => {
    const job = await startJob(2, { directory: dirs[0] }, { only: ['shm', 'tcp'] });
    try {
      expect(job.comms[0].transportOf(1)).toBe('shm');
      expect(job.comms[1].transportOf(0)).toBe('shm');
    } finally {
      await finalizeAll(job);
    }
  });

  it('rejects a card whose nonce, rank, job or fields do not match the file', async () => {
    const factory = shm();
    const [a, b] = [0, 1].map((rank) => factory(components(rank)));
    const [fa, fb] = (await Promise.all([a.start(), b.start()])) as CardFields[];
    try {
      expect(await a.probe(card(1, fb))).toBe(true);
      expect(await b.probe(card(0, fa))).toBe(true);
      expect(await a.probe(card(1, { ...fb, nonce: '0'.repeat(32) }))).toBe(false);
      expect(await a.probe(card(0, fb))).toBe(false); // the file says rank 1
      expect(await a.probe(card(1, { ...fb, name: String(fb.name).replace('probetest', 'otherjob') }))).toBe(false);
      expect(await a.probe(card(1, { ...fb, slots: 3 }))).toBe(false);
      expect(await a.probe(card(1, { ...fb, name: '../../etc/passwd' }))).toBe(false);
      expect(await a.probe(card(1, {}))).toBe(false);
      expect(await a.probe(card(0, fa))).toBe(false); // itself
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('is unavailable, with a reason, in a world of one and where the directory is missing', async () => {
    const alone = shm()(components(0, 1));
    expect(await alone.start()).toBeUndefined();
    expect(alone.unavailableReason).toMatch(/world of one/);
    const nowhere = shm({ directory: '/dev/shm/vmcomm-test-missing-dir' })(components(0));
    expect(await nowhere.start()).toBeUndefined();
    expect(nowhere.unavailableReason).toMatch(/not usable/);
    await Promise.all([alone.stop(), nowhere.stop()]);
  });
});
